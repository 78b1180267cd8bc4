"""The HTTP API of a real `frameseek serve` over the real sample index."""

from __future__ import annotations

import io
import shutil
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from frameseek.index import Index
from frameseek.server.app import OTHER_VIDEO_MEDIA_TYPE, VIDEO_MEDIA_TYPES
from frameseek.video import VIDEO_EXTENSIONS, iter_frames
from tests.conftest import BBB, BIKES, SAMPLES
from tests.server.conftest import Server, running_server
from tests.test_video import write_video

QUERY = SAMPLES / "query.jpg"
CARPHONE = Path(__file__).parents[1] / "data" / "carphone.mp4"
QUERY_TIME = 33.458  # samples/query.jpg is this moment of the bunny clip


def search(server: Server, image: Path = QUERY, **params: int) -> dict:
    with server.client() as client, image.open("rb") as handle:
        response = client.post("/api/search", files={"image": (image.name, handle, "image/jpeg")},
                               params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_search_finds_the_moment_a_still_comes_from(server: Server) -> None:
    answer = search(server)
    first = answer["results"][0]
    assert Path(first["video"]).name == BBB.name
    assert abs(first["time"] - QUERY_TIME) < 1.0
    assert answer["took_ms"] > 0
    stages = answer["stages_ms"]
    assert set(stages) == {"decode", "embed", "search", "refine", "moments"}
    assert all(ms >= 0 for ms in stages.values())
    assert sum(stages.values()) <= answer["took_ms"] + 0.5  # each rounded to 0.1 ms
    assert answer["match"] is True and answer["similarity"] >= answer["threshold"]
    assert len(answer["results"]) == 12  # the default `top`
    assert set(first) == {"video", "time", "frame", "distance", "thumbnail_url", "video_url",
                          "keyframe_time", "keyframe_frame", "segment", "refined"}
    (video,) = answer["videos"]  # the bunny clip, with the moment the still shows
    assert Path(video["video"]).name == BBB.name and video["appearances"] >= 1
    assert any(abs(m["time"] - QUERY_TIME) < 1.0 for m in video["moments"])
    assert video["duration"] == pytest.approx(60.0, abs=1.0) and "?sig=" in video["video_url"]


def clip_search(server: Server, clip: Path) -> tuple[int, dict]:
    with server.client() as client, clip.open("rb") as handle:
        response = client.post("/api/search/clip",
                               files={"clip": (clip.name, handle, "video/mp4")})
    return response.status_code, response.json()


def test_a_clip_upload_answers_where_it_was_cut_from(server: Server, tmp_path: Path) -> None:
    status, answer = clip_search(server, bunny_clip(tmp_path))
    assert status == 200, answer
    assert answer["match"] is True and answer["samples"] == 8
    best = answer["segments"][0]
    assert Path(best["video"]).name == BBB.name and abs(best["start"] - 25.0) < 1.0
    assert best["video_url"] and best["duration"] == pytest.approx(60.0, abs=1.0)


@pytest.mark.parametrize("content, status", [(b"", 422), (b"\x00not a video" * 64, 422),
                                             (None, 413)], ids=["empty", "garbage", "too long"])
def test_a_clip_that_cannot_be_a_query_is_a_4xx_in_one_line(
        server: Server, tmp_path: Path, content: bytes | None, status: int) -> None:
    clip = tmp_path / "clip.mp4"
    if content is None:  # 125 s of tiny frames: over the 120 s a clip query takes
        frames = [np.full((48, 64, 3), (i * 2) % 256, np.uint8) for i in range(125)]
        write_video(clip, "mpeg4", frames, list(range(125)), Fraction(1, 1), Fraction(1))
    else:
        clip.write_bytes(content)
    answered, body = clip_search(server, clip)
    assert answered == status, body
    assert "\n" not in body["detail"] and str(tmp_path) not in body["detail"]


def bunny_clip(directory: Path) -> Path:
    """25-29 s of the bunny clip at half size and 12 fps, re-encoded."""
    frames = [np.asarray(Image.fromarray(f.rgb()).resize((320, 180)))
              for f in iter_frames(BBB) if 25 <= f.time < 29][::2]
    path = directory / "bunny.mp4"
    write_video(path, "mpeg4", frames, list(range(len(frames))), Fraction(1, 12), Fraction(12),
                {"b": "1000000"})
    return path


def test_an_image_from_no_indexed_video_is_no_match(server: Server, tmp_path: Path) -> None:
    query = outside_query(tmp_path)
    answer = search(server, query)
    assert answer["match"] is False and answer["similarity"] < answer["threshold"], answer
    assert len(answer["results"]) == 12  # the nearest key frames all the same


def outside_query(directory: Path) -> Path:
    """A frame of the carphone clip, which the sample index does not hold, as a JPEG."""
    frame = next(f for f in iter_frames(CARPHONE) if f.number == 60)
    path = directory / "carphone.jpg"
    Image.fromarray(frame.rgb()).save(path, quality=90)
    return path


def test_search_answers_in_the_order_of_the_cli(server: Server, sample_index: Path) -> None:
    with Index.open(sample_index) as index:
        expected = [m.to_json() for m in index.search(QUERY, top=8)]
    got = search(server, top=8)["results"]
    assert [(r["video"], r["frame"]) for r in got] == [(m["video"], m["frame"]) for m in expected]
    assert [r["distance"] for r in got] == pytest.approx([m["distance"] for m in expected],
                                                         abs=1e-3)


def test_result_links_lead_to_the_thumbnail_and_the_video(server: Server) -> None:
    first = search(server, top=1)["results"][0]
    with server.client() as client:
        thumbnail = client.get(first["thumbnail_url"])
        video = client.get(first["video_url"])
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumbnail.content)).format == "JPEG"
    assert video.status_code == 200
    assert video.content == BBB.read_bytes()


@pytest.mark.parametrize("top", [0, -1, 201, "many"])
def test_top_out_of_range_is_refused(server: Server, top: object) -> None:
    with server.client() as client:
        response = client.post("/api/search", params={"top": top},
                               files={"image": ("query.jpg", QUERY.read_bytes())})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "top"]


def test_top_sets_how_many_results(server: Server) -> None:
    assert len(search(server, top=3)["results"]) == 3


def test_videos_lists_each_indexed_video(server: Server) -> None:
    with server.client() as client:
        videos = {v["name"]: v for v in client.get("/api/videos").json()["videos"]}
    assert set(videos) == {BBB.name, BIKES.name}
    bunny = videos[BBB.name]
    assert bunny["duration"] == pytest.approx(60.0, abs=0.1)
    assert bunny["frames"] == 1440
    assert 0 < bunny["keyframes"] < bunny["frames"]
    assert bunny["compression_ratio"] == pytest.approx(1 - bunny["keyframes"] / bunny["frames"],
                                                       abs=1e-4)
    assert videos[BIKES.name]["duration"] == pytest.approx(10.0, abs=0.1)


def test_stats_and_health(server: Server) -> None:
    with server.client() as client:
        stats = client.get("/api/stats").json()
        health = client.get("/healthz").json()
    assert stats["videos"] == 2
    assert stats["keyframes"] == health["keyframes"] > 0
    assert stats["server"]["max_upload_bytes"] == 2 * 2**20
    assert health["status"] == "ok"
    # Built and queried in one process: the same back end, named with its precision and CPU.
    assert stats["inference"] == [stats["backend"]["name"]]
    assert set(stats["backend"]) == {"name", "precision", "device", "cpu"}


def test_openapi_describes_the_api(server: Server) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    body = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["encoding"]["image"]["contentType"] == "image/*"
    statuses = {(method, path): set(operation["responses"])
                for path, operations in spec["paths"].items()
                for method, operation in operations.items()}
    # The session server needs a token and has no rate limit: 401 everywhere but /healthz.
    assert statuses == {
        ("post", "/api/search"): {"200", "400", "401", "413", "415", "422", "503"},
        ("post", "/api/search/clip"): {"200", "400", "401", "413", "422", "503"},
        ("get", "/api/videos"): {"200", "401"},
        ("get", "/api/stats"): {"200", "401"},
        ("get", "/healthz"): {"200"},
        ("get", "/api/thumbnails/{keyframe_id}"): {"200", "401", "404"},
        ("get", "/api/videos/{video_id}/file"): {"200", "206", "400", "401", "404", "416"},
        ("head", "/api/videos/{video_id}/file"): {"200", "206", "400", "401", "404", "416"},
    }
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_openapi_lists_the_type_of_every_video_file_served(server: Server) -> None:
    assert set(VIDEO_MEDIA_TYPES) == VIDEO_EXTENSIONS  # each suffix the indexer takes
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    answers = spec["paths"]["/api/videos/{video_id}/file"]["get"]["responses"]
    types = {*VIDEO_MEDIA_TYPES.values(), OTHER_VIDEO_MEDIA_TYPE}
    assert set(answers["200"]["content"]) == types
    assert set(answers["206"]["content"]) == types | {"multipart/byteranges"}


def test_page_and_its_files_are_served(server: Server) -> None:
    with server.client() as client:
        page = client.get("/")
        script = client.get("/static/app.js")
        style = client.get("/static/style.css")
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="file-input"' in page.text
    assert "api/search" in script.text
    assert style.status_code == 200


def _bunny_url(server: Server) -> str:
    with server.client() as client:
        videos = client.get("/api/videos").json()["videos"]
    return next(v["video_url"] for v in videos if v["name"] == BBB.name)


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=1000-1999", 1000, 2000),
    ("bytes=500000-", 500000, None),
    ("bytes=-700", -700, None),
])
def test_video_range_requests(server: Server, header: str, start: int, end: int | None) -> None:
    data = BBB.read_bytes()
    with server.client() as client:
        response = client.get(_bunny_url(server), headers={"Range": header})
    part = data[start:end]
    first = start % len(data)
    assert response.status_code == 206
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-range"] == f"bytes {first}-{first + len(part) - 1}/{len(data)}"
    assert response.content == part


def test_video_range_beyond_the_end_is_416(server: Server) -> None:
    size = BBB.stat().st_size
    with server.client() as client:
        response = client.get(_bunny_url(server), headers={"Range": f"bytes={size + 10}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


def test_video_head_tells_size_and_ranges(server: Server) -> None:
    with server.client() as client:
        response = client.head(_bunny_url(server))
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == BBB.stat().st_size
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "video/mp4"


def test_concurrent_searches_all_answer_alike(server: Server) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: search(server, top=5), range(4)))
    server.assert_alive()
    assert all(a["results"] == answers[0]["results"] for a in answers)


def test_server_follows_videos_added_and_removed_while_it_runs(tmp_path: Path) -> None:
    """Another process changes the index; the running server sees it without a restart, and stops
    serving a file that is no longer the one indexed (here: replaced by a symlink elsewhere)."""
    video = tmp_path / "videos" / BIKES.name
    video.parent.mkdir()
    shutil.copy(BIKES, video)
    directory = tmp_path / "index"
    Index.create(directory).close()

    with running_server(directory, tmp_path / "server.log") as server, server.client() as client:
        assert client.get("/api/videos").json()["videos"] == []
        assert search(server)["results"] == []

        with Index.open(directory) as index:
            index.add([video])
        (entry,) = client.get("/api/videos").json()["videos"]
        assert entry["video"] == str(video)
        assert {Path(r["video"]).name for r in search(server)["results"]} == {BIKES.name}
        assert client.get(entry["video_url"]).content == BIKES.read_bytes()

        video.unlink()
        video.symlink_to(QUERY)
        assert client.get(entry["video_url"]).status_code == 404

        with Index.open(directory) as index:
            assert index.remove(str(video))
        assert client.get("/api/videos").json()["videos"] == []
        assert search(server)["results"] == []
        server.assert_alive()
