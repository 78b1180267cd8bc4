"""The page at `/` in a real headless Chromium (Debian's), driven by Playwright: sign in with a
token, upload, drop and paste a query, read the results, play one from its moment (the player
and the thumbnails follow the answer's signed links, which carry no token)."""

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
from tests.server.conftest import PREFIX, Proxied, Server
from tests.server.test_api import bunny_clip, outside_query

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
def signed_out(browser, server: Server) -> Iterator[object]:
    """The page as a new tab opens it: asking for the server's token."""
    page = browser.new_page(viewport={"width": 1200, "height": 820})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url)
    yield page
    page.close()
    assert not errors, errors


def sign_in(page, token: str) -> None:
    page.wait_for_selector("#sign-in:not([hidden])")
    page.fill("#token-input", token)
    page.click("#sign-in button")


@pytest.fixture
def page(signed_out, server: Server) -> object:
    assert server.token
    sign_in(signed_out, server.token)
    signed_out.wait_for_function("() => document.querySelector('#stats').textContent")
    return signed_out


def test_the_page_asks_for_a_token_once_and_keeps_it_for_the_tab(signed_out,
                                                                 server: Server) -> None:
    assert server.token
    sign_in(signed_out, "not-the-token-of-this-server")
    signed_out.wait_for_function(
        "() => document.querySelector('#sign-in-status').textContent && "
        "!document.querySelector('#sign-in').hidden")
    assert signed_out.locator("#sign-in-status").text_content() == "the token is not valid"
    sign_in(signed_out, server.token)
    signed_out.wait_for_function("() => document.querySelector('#stats').textContent")
    assert signed_out.locator("#sign-in").is_hidden()
    assert re.fullmatch(r"2 videos · .* key frames", signed_out.locator("#stats").text_content())

    signed_out.reload()  # the same tab: the token is kept, the form stays hidden
    signed_out.wait_for_function("() => document.querySelector('#stats').textContent")
    assert signed_out.locator("#sign-in").is_hidden()
    signed_out.set_input_files("#file-input", str(QUERY))
    signed_out.wait_for_selector(".result")
    assert signed_out.locator(".result .name").first.text_content() == BBB.name


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
    assert re.fullmatch(r" \(decode \d+ · embed \d+ · search \d+ · refine \d+ · moments \d+ ms\)",
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
    # The same file; its signature may differ, the expiry having moved on since `expected`.
    src = page.locator("#player").get_attribute("src")
    assert src.partition("?")[0] == expected["video_url"].partition("?")[0]
    assert "?sig=" in src
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert page.evaluate("() => [...document.querySelectorAll('.result img')]"
                         ".every(i => i.naturalWidth > 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


def test_a_dropped_clip_shows_where_it_was_cut_from_and_plays_it(page,
                                                                   tmp_path: Path) -> None:
    _dispatch_with_file(page, "window.dispatchEvent(new DragEvent('drop', "
                        "{dataTransfer: transfer, cancelable: true}))", bunny_clip(tmp_path),
                        "video/mp4")
    page.wait_for_selector(".video-card")
    assert page.locator("#summary").text_content().startswith("A clip of ")
    card = page.locator(".video-card").first
    assert BBB.name in card.locator(".video-name").text_content()
    card.locator(".mark").first.click()
    page.wait_for_function(
        "() => { const v = document.querySelector('#player');"
        " return v.readyState >= 1 && !v.seeking && Math.abs(v.currentTime - 25) < 1.5; }",
        timeout=60_000)


def test_the_moments_of_a_video_are_marks_on_its_timeline(page) -> None:
    page.set_input_files("#file-input", str(QUERY))
    page.wait_for_selector(".video-card .mark")
    card = page.locator(".video-card").first
    assert BBB.name in card.locator(".video-name").text_content()
    assert "appearance" in card.locator(".video-name").text_content()
    times = [float(mark.get_attribute("data-time")) for mark in card.locator(".mark").all()]
    assert times == sorted(times)  # the shot before the query's shows its picture too
    assert min(abs(time - 33.458) for time in times) < 1.0


def test_an_image_from_no_indexed_video_says_no_match(page, tmp_path: Path) -> None:
    page.set_input_files("#file-input", str(outside_query(tmp_path)))
    page.wait_for_selector(".result")
    assert page.locator("#no-match").text_content().startswith(
        "No match: this image is from none of the indexed videos")
    assert page.locator(".result").count() == 24  # the nearest key frames all the same


def _dispatch_with_file(page, script: str, file: Path = QUERY, kind: str = "image/jpeg"
                       ) -> None:
    """Run `script` with `transfer`, a DataTransfer holding `file`, as a user's drop or paste
    would carry it."""
    page.evaluate(
        "([data, script, name, kind]) => {"
        " const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));"
        " const transfer = new DataTransfer();"
        " transfer.items.add(new File([bytes], name, {type: kind}));"
        " new Function('transfer', script)(transfer); }",
        [base64.b64encode(file.read_bytes()).decode(), script, file.name, kind],
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


def test_the_page_works_behind_a_reverse_proxy_under_a_prefix(browser, proxied: Proxied) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 820})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(proxied.url + "/")
    assert proxied.server.token
    sign_in(page, proxied.server.token)
    page.set_input_files("#file-input", str(QUERY))
    page.wait_for_selector(".result")
    page.locator(".result").first.click()
    page.wait_for_function("() => document.querySelector('#player').readyState >= 1",
                           timeout=60_000)
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    assert page.evaluate("() => [...document.querySelectorAll('.result img')]"
                         ".every(i => i.naturalWidth > 0)")
    assert page.locator("#player").get_attribute("src").startswith(f"{PREFIX}/api/videos/")
    # Everything the page fetched went through the proxy, under the prefix.
    fetched = [url for url in requested if url.startswith("http")]  # not data: nor blob:
    assert fetched and all(url.startswith(proxied.url + "/") for url in fetched), fetched
    page.close()
    assert not errors, errors
