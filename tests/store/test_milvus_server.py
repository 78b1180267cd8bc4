"""A real Milvus server (the standalone one the `milvus` package embeds, 2.3.5) with
authentication on, against the embedded store: the sample index gives the same top 12; float16
vectors, which that release does not search right, and wrong credentials are each one line,
exit 1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from frameseek.cli import main
from frameseek.index import Index
from frameseek.store.uri import TOKEN_VARIABLE
from tests.store.test_milvus import assert_same_top_12, copy_into

milvus = pytest.importorskip("milvus", reason="the milvus server wheel is x86-64 Linux only")

TOKEN = "root:Milvus"  # the server's first user, as a fresh Milvus with authentication has it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """milvus://127.0.0.1:PORT (a free port: other test runs may hold 19530)."""
    instance = milvus.MilvusServer()
    instance.set_base_dir(str(tmp_path_factory.mktemp("milvus-server")))
    instance.config.set("authorization_enabled", True)
    instance.start()
    try:
        yield f"milvus://127.0.0.1:{instance.listen_port}"
    finally:
        instance.stop()


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, TOKEN)


def test_the_sample_index_gives_the_embedded_top_12(server: str, token: None,
                                                    sample_index: Path) -> None:
    uri = f"{server}/samples"
    with Index.open(sample_index) as embedded, copy_into(uri, embedded) as copied:
        assert copied.store.vector_type.name == "FLOAT_VECTOR"  # the 2.3 server's
    assert_same_top_12(uri, sample_index)


def test_wrong_credentials_are_one_line(server: str, monkeypatch: pytest.MonkeyPatch,
                                        capfd: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(TOKEN_VARIABLE, "root:wrong")
    assert main(["info", "--store", f"{server}/samples"]) == 1
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"frameseek: {server}/samples: ")
    assert os.environ[TOKEN_VARIABLE] not in line  # the secret stays out of the message


def test_float16_on_a_2_3_server_is_one_line(server: str, token: None,
                                             capfd: pytest.CaptureFixture) -> None:
    uri = f"{server}/half?vectors=float16"
    assert main(["index", "missing.mp4", "--store", uri]) == 1
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"frameseek: {uri}: Milvus v2.3.5")  # "v2.3.5-lite", as it says
    assert line.endswith("has no dependable float16 vectors (FLOAT16_VECTOR, from 2.4 on); "
                         "use vectors=float32")
