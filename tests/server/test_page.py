"""The page at `/` in a real headless Chromium (Debian's), driven by Playwright: upload, drop and
paste a query, read the results, play one from its moment."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from frameseek.query import QueryError, load_image
from frameseek.video import format_time
from tests.conftest import ARTIFACTS, BBB, SAMPLES
from tests.server.conftest import Server
from tests.server.test_api import outside_query

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
QUERY = SAMPLES / "query.jpg"
SCREENSHOT = ARTIFACTS / "serve-page.png"


def _require_browser() -> None:
    """Skip where the browser is not installed; in CI (which installs it) that is a failure."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "playwright is missing (pip install -e '.[test]')"
    if reason and os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server: Server) -> Iterator[object]:
    page = browser.new_page(viewport={"width": 1200, "height": 820})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url)
    yield page
    page.close()
    assert not errors, errors


def expected_first(server: Server) -> dict:
    with server.client() as client, QUERY.open("rb") as handle:
        return client.post("/api/search", files={"image": handle}).json()["results"][0]


def test_upload_shows_results_and_plays_the_moment(page, server: Server) -> None:
    expected = expected_first(server)
    page.set_input_files("#file-input", str(QUERY))
    page.wait_for_selector(".result")

    first = page.locator(".result").first
    assert first.locator(".name").text_content() == BBB.name
    time_text = first.locator(".time").text_content()
    assert time_text == format_time(expected["time"])
    assert re.fullmatch(r"00:3[345]\.\d", time_text)  # the query is the bunny at 33.458 s
    assert re.fullmatch(r"\d+ ms", page.locator("#took").text_content())
    assert re.fullmatch(r" \(decode \d+ · embed \d+ · search \d+ · refine \d+ ms\)",
                        page.locator("#stages").text_content())
    assert page.locator(".result").count() == 24
    assert page.locator("#no-match").count() == 0

    first.click()
    page.wait_for_function(
        "t => { const v = document.querySelector('#player');"
        " return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - t) < 1; }",
        arg=expected["time"], timeout=60_000,
    )
    current = page.evaluate("() => { const v = document.querySelector('#player'); v.pause();"
                            " return v.currentTime; }")
    assert abs(current - expected["time"]) < 1.0
    assert page.locator("#player").get_attribute("src") == expected["video_url"]
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


def test_an_image_from_no_indexed_video_says_no_match(page, tmp_path: Path) -> None:
    page.set_input_files("#file-input", str(outside_query(tmp_path)))
    page.wait_for_selector(".result")
    assert page.locator("#no-match").text_content().startswith(
        "No match: this image is from none of the indexed videos")
    assert page.locator(".result").count() == 24  # the nearest key frames all the same


def _dispatch_with_file(page, script: str) -> None:
    """Run `script` with `transfer`, a DataTransfer holding samples/query.jpg, as a user's drop
    or paste would carry it."""
    page.evaluate(
        "([data, script]) => {"
        " const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));"
        " const transfer = new DataTransfer();"
        " transfer.items.add(new File([bytes], 'query.jpg', {type: 'image/jpeg'}));"
        " new Function('transfer', script)(transfer); }",
        [base64.b64encode(QUERY.read_bytes()).decode(), script],
    )


@pytest.mark.parametrize("script", [
    "window.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, cancelable: true}))",
    "document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: transfer,"
    " cancelable: true}))",
], ids=["drop", "paste"])
def test_dropped_or_pasted_image_is_searched(page, script: str) -> None:
    _dispatch_with_file(page, script)
    page.wait_for_selector(".result")
    assert page.locator(".result .name").first.text_content() == BBB.name


def test_a_bad_upload_shows_the_server_message(page) -> None:
    upload = b"not an image"
    page.set_input_files("#file-input", files=[
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": upload}])
    page.wait_for_selector(".status.error")
    with pytest.raises(QueryError) as refused:
        load_image(upload)
    assert page.locator("#status").text_content() == str(refused.value)
    assert page.locator(".result").count() == 0
