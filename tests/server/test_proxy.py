"""Behind a reverse proxy that serves frameseek under a path prefix (`--root-path`): the page,
its files, the API and every link in its answers work through the proxy."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx

from tests.conftest import BBB, SAMPLES
from tests.server.conftest import PREFIX, TOKEN, Proxied, bearer

QUERY = (SAMPLES / "query.jpg").read_bytes()


def test_the_page_and_what_it_refers_to_load_under_the_prefix(proxied: Proxied) -> None:
    page_url = proxied.url + "/"
    page = httpx.get(page_url, timeout=60)
    assert page.status_code == 200 and 'id="file-input"' in page.text
    references = re.findall(r'(?:href|src)="([^"#:]+)"', page.text)
    assert {"static/style.css", "static/app.js"} <= set(references)
    script = ""
    for reference in references:  # resolved as the browser resolves them, against the page
        url = urljoin(page_url, reference)
        assert url.startswith(proxied.url + "/static/"), url
        response = httpx.get(url, timeout=60)
        assert response.status_code == 200, url
        script += response.text if url.endswith(".js") else ""
    # The script's API calls are relative too, so they stay under the prefix.
    calls = set(re.findall(r'["`](api/[a-z/]+)', script))
    assert calls == {"api/search", "api/search/clip", "api/stats"}
    for call in calls:
        response = httpx.get(urljoin(page_url, call), headers=bearer(TOKEN), timeout=60)
        assert response.status_code in (200, 405), call  # the searches are POST only


def test_the_links_in_answers_lead_through_the_proxy(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.url, timeout=120, headers=bearer(TOKEN)) as client:
        answer = client.post("/api/search", params={"top": 2},
                             files={"image": ("query.jpg", QUERY, "image/jpeg")}).json()
        videos = client.get("/api/videos").json()["videos"]
    first = answer["results"][0]
    assert first["thumbnail_url"].startswith(f"{PREFIX}/api/thumbnails/")
    assert first["video_url"].startswith(f"{PREFIX}/api/videos/")
    assert all(v["video_url"].startswith(f"{PREFIX}/api/videos/") for v in videos)
    # Followed as the page's <img> and <video> follow them: from the proxy's origin, no token.
    with httpx.Client(base_url=proxied.origin, timeout=120) as browser:
        thumbnail = browser.get(first["thumbnail_url"])
        assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg"
        video = browser.get(first["video_url"], headers={"Range": "bytes=100-199"})
        assert video.status_code == 206
        assert video.content == BBB.read_bytes()[100:200]


def test_the_api_description_names_the_prefix(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.url, timeout=60, headers=bearer(TOKEN)) as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs").text
    assert spec["servers"] == [{"url": PREFIX}]
    assert f"{PREFIX}/openapi.json" in docs
