"""Every kind of bad request gets a 4xx with a readable message, is logged, and the server lives on.

The session server runs with `--max-upload-mb 2 --max-pixels 4000000` (see conftest)."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator

import pytest
from PIL import Image

from frameseek.query import QueryError, load_image
from tests.conftest import SAMPLES
from tests.server.conftest import MAX_PIXELS, MAX_UPLOAD_MB, Server

MEGABYTE = 1 << 20


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def decompression_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side² pixels (400 million by default) that compresses to ~50 KB."""
    rows = b"\0" * ((side // 8 + 1) * side)  # each row: filter byte 0, then side/8 zero bytes
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(rows, 9)) + png_chunk(b"IEND", b""))


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def post_image(server: Server, data: bytes, name: str = "query.jpg",
               content_type: str = "image/jpeg") -> tuple[int, dict]:
    with server.client() as client:
        response = client.post("/api/search", files={"image": (name, data, content_type)})
    return response.status_code, response.json()


QUERY = (SAMPLES / "query.jpg").read_bytes()

BAD_IMAGES = {
    # name: (upload, expected status)
    "text": (b"just some words, not an image\n", 415),
    "empty": (b"", 422),
    "truncated jpeg": (QUERY[: len(QUERY) // 3], 422),
    "jpeg header then noise": (QUERY[:200] + bytes(range(256)) * 20, 422),
    "over the pixel limit": (png(2500, 2000), 422),
    "decompression bomb": (decompression_bomb(), 422),
}


def core_message(upload: bytes) -> str:
    """What frameseek.query says of this upload: the server must pass it on as it is."""
    with pytest.raises(QueryError) as refused:
        load_image(upload, MAX_PIXELS)
    return str(refused.value)


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_bad_image_is_refused_with_a_message(server: Server, kind: str) -> None:
    upload, status = BAD_IMAGES[kind]
    got, body = post_image(server, upload)
    assert got == status, body
    assert body["detail"] == core_message(upload)
    assert f"search refused: {body['detail']}" in server.log_text()
    server.assert_alive()


def test_a_pixel_limit_image_below_the_limit_is_searched(server: Server) -> None:
    """The limit is the limit: an image just under it is searched, not refused."""
    status, body = post_image(server, png(2000, 2000), "flat.png", "image/png")
    assert status == 200, body
    assert MAX_PIXELS == 2000 * 2000


def test_upload_over_the_limit_by_content_length_is_413(server: Server) -> None:
    status, body = post_image(server, b"\0" * (MAX_UPLOAD_MB * MEGABYTE + 1))
    assert status == 413
    assert body["detail"] == f"upload is larger than the limit of {MAX_UPLOAD_MB} MB"
    server.assert_alive()


def test_upload_over_the_limit_without_content_length_is_413(server: Server) -> None:
    """A chunked upload announces no size: the server counts bytes as they arrive."""
    def chunks() -> Iterator[bytes]:
        yield b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n"
        for _ in range(MAX_UPLOAD_MB * 4 + 1):
            yield b"\xff" * (MEGABYTE // 4)
        yield b"\r\n--x--\r\n"

    with server.client() as client:
        response = client.post("/api/search", content=chunks(),
                               headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert "upload over" in server.log_text()
    server.assert_alive()


def test_an_upload_just_under_the_limit_is_read(server: Server) -> None:
    """Padding after the JPEG's end is ignored by decoders: a search that only passes if the
    server read the whole 2 MB body."""
    padding = MAX_UPLOAD_MB * MEGABYTE - len(QUERY) - 1024
    status, body = post_image(server, QUERY + b"\0" * padding)
    assert status == 200, body


@pytest.mark.parametrize(("files", "data"), [
    ({"picture": ("query.jpg", QUERY)}, None),  # wrong field name
    (None, {"image": "a string, not a file"}),
])
def test_search_without_an_image_file_is_422(server: Server, files: dict | None,
                                             data: dict | None) -> None:
    with server.client() as client:
        response = client.post("/api/search", files=files, data=data)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "image"]
    server.assert_alive()


TRAVERSALS = [
    "/api/videos/../../../../etc/passwd",
    "/api/videos/..%2F..%2F..%2F..%2Fetc%2Fpasswd/file",
    "/api/videos/%2e%2e%2f%2e%2e%2fetc%2fpasswd/file",
    "/api/videos/..%252F..%252Fetc%252Fpasswd/file",
    "/api/videos/%2Fetc%2Fpasswd/file",
    "/api/videos//etc/passwd/file",
    "/api/videos/1%2F..%2F..%2Fframeseek.sqlite/file",
    "/api/videos/1%00/file",
    "/api/videos/999999/file",
    "/api/videos/-1/file",
    "/api/thumbnails/..%2F..%2Fetc%2Fpasswd",
    "/api/thumbnails/99999999999999999999999999",
    "/api/thumbnails/1e3",
    "/static/../app.py",
    "/static/..%2Fapp.py",
    "/static/%2e%2e/%2e%2e/pyproject.toml",
    "/static//etc/passwd",
    "/../../etc/passwd",
    "/frameseek.sqlite",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_paths_leaving_the_indexed_files_are_404(server: Server, target: str) -> None:
    status, body = server.raw_get(target)
    assert status == 404, body[:200]
    assert b"root:" not in body and b"SQLite" not in body and b"import" not in body
    server.assert_alive()
