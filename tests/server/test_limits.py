"""The limits on searches (frameseek/server/limits.py): how many the server admits at once, the
per-client rate's bucket arithmetic, then real servers under a bounded burst of searches on
loopback, clients told apart by their token, or by their address where the server takes no
token. A real server refusing searches past those it admits: tests/server/test_batching.py."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from frameseek.server.limits import SWEEP_AT, Admission, RateLimiter
from tests.conftest import SAMPLES
from tests.server.conftest import Server, bearer, running_server

QUERY = (SAMPLES / "query.jpg").read_bytes()
TOKENS = ["limits-token-alice-0123456", "limits-token-bob-01234567"]
# One search refilled every two minutes: longer than these tests, so each client gets its burst
# and no more, however slow the machine.
PER_MINUTE = 0.5
BURST = 2


def test_admission_refuses_past_its_capacity_until_a_search_ends() -> None:
    admission = Admission(capacity=2)
    assert [admission.admit() for _ in range(3)] == [True, True, False]
    assert (admission.in_progress, admission.refused) == (2, 1)
    admission.release()
    assert admission.admit()
    assert not admission.admit()
    assert (admission.in_progress, admission.refused) == (2, 2)


def test_a_client_gets_its_burst_then_waits_for_the_refill() -> None:
    limiter = RateLimiter(per_minute=60, burst=3)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", now=0.0) == pytest.approx(1.0)
    assert limiter.take("a", now=0.25) == pytest.approx(0.75)  # a refusal costs nothing
    assert limiter.take("a", now=1.0) == 0.0
    assert limiter.take("b", now=1.0) == 0.0  # every client has its own bucket
    assert [limiter.take("a", now=100.0) for _ in range(4)][-1] > 0  # refilled to the burst only


def test_forgetting_idle_clients_changes_no_answer() -> None:
    limiter = RateLimiter(per_minute=60, burst=1)
    assert limiter.take("busy", now=0.0) == 0.0
    for number in range(SWEEP_AT):
        limiter.take(f"idle {number}", now=-10.0)  # long refilled by t=0
    assert limiter.take("newcomer", now=0.5) == 0.0  # sweeps the idle ones
    assert limiter.take("busy", now=0.5) == pytest.approx(0.5)  # still remembered, still empty


def post(server: Server, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=120, headers=headers) as client:
        return client.post("/api/search", params={"top": 1},
                           files={"image": ("query.jpg", QUERY, "image/jpeg")})


def post_together(server: Server, count: int, headers: dict[str, str] | None = None
                  ) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: post(server, headers), range(count)))


def assert_over_the_limit(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["detail"] == "too many searches from this client: retry later"


@pytest.fixture(scope="module")
def limited(sample_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("limits") / "server.log"
    with running_server(sample_index, log, "--rate-limit", str(PER_MINUTE), "--rate-burst",
                        str(BURST), token=",".join(TOKENS)) as server:
        yield server


def test_each_token_gets_its_own_burst_then_429(limited: Server) -> None:
    alice, bob = (bearer(token) for token in TOKENS)
    responses = post_together(limited, 3 * BURST, alice)
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * BURST + [429] * (2 * BURST), statuses
    for response in responses:
        if response.status_code == 429:
            assert_over_the_limit(response)
    assert post(limited, bob).status_code == 200  # another client: not limited by the first
    with limited.client(TOKENS[1]) as client:
        stats = client.get("/api/stats").json()["server"]
    assert stats["rate_limit"] == {"per_minute": PER_MINUTE, "burst": BURST}
    assert stats["rejected"] >= 2 * BURST
    limited.assert_alive()


def test_without_tokens_clients_are_told_apart_by_address(sample_index: Path,
                                                          tmp_path: Path) -> None:
    """uvicorn takes X-Forwarded-For from a proxy on loopback: the address of the client behind
    it, which is what the limit counts by."""
    with running_server(sample_index, tmp_path / "server.log", "--rate-limit", str(PER_MINUTE),
                        "--rate-burst", "1") as server:
        first = {"X-Forwarded-For": "192.0.2.1"}
        assert post(server, first).status_code == 200
        assert_over_the_limit(post(server, first))
        assert post(server, {"X-Forwarded-For": "192.0.2.2"}).status_code == 200
        server.assert_alive()
