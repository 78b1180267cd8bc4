"""The server keeps to its OpenAPI description: Schemathesis, a third-party fuzzer, runs with all
its checks against a real server that needs a token, over the sample index, and finds nothing.

Every operation is tested: status codes, media types, headers and bodies against the description,
valid requests accepted and invalid ones refused, the token enforced (it retries each call
without it and with a wrong one), methods that are not allowed refused with `Allow`. Its valid
uploads are real pictures (tests/server/contract_hooks.py). The number of examples is bounded,
and the seed fixed, so that the run is short and the same each time; for a longer one:
`schemathesis run URL/openapi.json -H "Authorization: Bearer TOKEN" --checks all -n 200`
with `SCHEMATHESIS_HOOKS=tests.server.contract_hooks` (docs/server.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.server.conftest import Server, running_server

TOKEN = "contract-token-0123456789"
MAX_EXAMPLES = 15
SEED = 20
RUN_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def contract_server(sample_index: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Server]:
    # A rate limit high enough that the fuzzer's searches reach the CNN, still there (and
    # described) so that its 429 is part of the contract tested.
    log = tmp_path_factory.mktemp("contract") / "server.log"
    with running_server(sample_index, log, "--rate-limit", "6000", "--rate-burst", "200",
                        token=TOKEN) as server:
        yield server


def test_schemathesis_finds_nothing_with_all_checks(contract_server: Server,
                                                    tmp_path: Path) -> None:
    schemathesis = shutil.which("schemathesis")
    assert schemathesis, "schemathesis is missing: pip install -r requirements/lock-test.txt"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.server.contract_hooks",
           "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    run = subprocess.run(
        [schemathesis, "run", f"{contract_server.url}/openapi.json",
         "--header", f"Authorization: Bearer {TOKEN}", "--checks", "all",
         "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--no-color",
         "--request-timeout", "120"],
        # Run elsewhere: it keeps its example database in .schemathesis/ where it runs.
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "No issues found" in report, report
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert selected, report
    assert selected[1] == selected[2] == selected[3], report  # every operation, none skipped
    # Its valid uploads were searched, not refused: the CNN saw them.
    answered = contract_server.log_text().count("results in")
    assert answered >= MAX_EXAMPLES, answered
    assert TOKEN not in contract_server.log_text()
    contract_server.assert_alive()
