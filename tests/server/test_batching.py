"""Concurrent searches share CNN forwards, a bad image among them fails alone, and a search
past those the server admits at once answers 503 with Retry-After: on a real server whose
batching window is long enough that requests sent together are surely waiting together."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import BBB, SAMPLES
from tests.server.conftest import Server, running_server

QUERY = (SAMPLES / "query.jpg").read_bytes()
QUERY_TIME = 33.458  # samples/query.jpg is this moment of the bunny clip
# Far longer than decoding a few small JPEGs takes, even on a loaded machine: the requests sent
# together all reach the batcher within one window.
WINDOW_MS = 3000
MAX_SEARCHES = 4


@pytest.fixture(scope="module")
def batching_server(sample_index: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("batching") / "server.log"
    with running_server(sample_index, log, "--batch-window-ms", str(WINDOW_MS),
                        "--max-searches", str(MAX_SEARCHES), "--rate-limit", "0") as running:
        yield running


def post(server: Server, image: bytes) -> httpx.Response:
    with server.client() as client:
        return client.post("/api/search", params={"top": 3},
                           files={"image": ("query.jpg", image, "image/jpeg")})


def post_together(server: Server, images: list[bytes]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        return list(pool.map(lambda image: post(server, image), images))


def post_together_in_order(server: Server, images: list[bytes]) -> list[httpx.Response]:
    """The responses in the order they came back."""
    arrived: list[httpx.Response] = []
    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        for image in images:
            pool.submit(post, server, image).add_done_callback(
                lambda future: arrived.append(future.result()))
    return arrived


def server_stats(server: Server) -> dict:
    with server.client() as client:
        return client.get("/api/stats").json()["server"]


def assert_finds_the_query(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    first = response.json()["results"][0]
    assert Path(first["video"]).name == BBB.name
    assert abs(first["time"] - QUERY_TIME) < 1.0


def test_concurrent_searches_share_a_forward_and_a_bad_image_fails_alone(
        batching_server: Server) -> None:
    good = MAX_SEARCHES - 1
    before = server_stats(batching_server)["batching"]
    responses = post_together(batching_server, [QUERY] * good + [b"not an image"])
    for response in responses[:good]:
        assert_finds_the_query(response)
    assert responses[-1].status_code == 415
    after = server_stats(batching_server)["batching"]
    assert after["queries"] - before["queries"] == good
    assert after["batches"] - before["batches"] < good
    assert after["largest"] >= 2
    assert after["window_ms"] == WINDOW_MS
    batching_server.assert_alive()


def test_searches_past_those_admitted_answer_503_with_retry_after(
        batching_server: Server) -> None:
    """The 503s come back at once: before the admitted searches, which wait out the window."""
    before = server_stats(batching_server)["admission"]
    responses = post_together_in_order(batching_server, [QUERY] * (2 * MAX_SEARCHES))
    statuses = [r.status_code for r in responses]
    assert statuses == sorted(statuses, reverse=True), statuses  # every 503 before any 200
    busy = [r for r in responses if r.status_code == 503]
    assert busy, [r.status_code for r in responses]
    for response in busy:
        assert int(response.headers["retry-after"]) >= 1
        assert "busy" in response.json()["detail"]
    answered = [r for r in responses if r.status_code != 503]
    assert 1 <= len(answered) <= MAX_SEARCHES
    for response in answered:
        assert_finds_the_query(response)
    after = server_stats(batching_server)["admission"]
    assert after["refused"] - before["refused"] == len(busy)
    assert after["in_progress"] == 0
    assert after["max_searches"] == MAX_SEARCHES
    batching_server.assert_alive()


def test_a_search_its_client_gave_up_on_leaves_the_next_ones_answered(
        batching_server: Server) -> None:
    """The client leaves while its query waits in the window; the batcher goes on serving."""
    with (httpx.Client(base_url=batching_server.url, timeout=0.5) as impatient,
          pytest.raises(httpx.TimeoutException)):
        impatient.post("/api/search", files={"image": ("query.jpg", QUERY, "image/jpeg")})
    assert_finds_the_query(post(batching_server, QUERY))
    batching_server.assert_alive()
