"""The pre-call test end to end, over a live daphne (the echo peer lives in the server's event loop):
an aiortc client gets its own video back through `POST /precall/offer/`; the per-process cap answers 503
with Retry-After and the time limit frees the slot; and in Chromium (fake camera and microphone) a nurse on
`/console/precall/` sees her video returned with a round-trip time and a verdict."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from contactcenter import precall
from contactcenter.precall import precall_token
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, sign_in
from tests.e2e.test_console import snapshot
from tests.e2e.test_csp import LISTENER as CSP_LISTENER
from tests.rtc_peer import HEIGHT, LUMA, WIDTH, echo_client, plane_mean

pytestmark = pytest.mark.e2e

# TESTING.md: fake devices, and loopback candidates (without the flag Chromium gathers none on 127.0.0.1).
MEDIA_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def _echo_server(request: pytest.FixtureRequest, settings: Any, max_seconds: float) -> str:
    """A live daphne whose echo allows one session of `max_seconds` (settings are fixed when it forks)."""
    settings.PRECALL_MAX_SESSIONS = 1
    settings.PRECALL_MAX_SECONDS = max_seconds
    precall.configure_host_addresses()  # this process's client peers offer 127.0.0.1 too
    return str(request.getfixturevalue("live_server_url"))


@pytest.fixture
def echo_server(request: pytest.FixtureRequest, settings: Any) -> str:
    return _echo_server(request, settings, max_seconds=30.0)


@pytest.fixture
def short_echo_server(request: pytest.FixtureRequest, settings: Any) -> str:
    return _echo_server(request, settings, max_seconds=6.0)


def poster(base_url: str, token: str, statuses: list[int] | None = None):
    async def post(sdp: str) -> dict:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            response = await http.post(
                "/precall/offer/", json={"type": "offer", "sdp": sdp}, headers={"X-Precall-Token": token}
            )
        if statuses is not None:
            statuses.append(response.status_code)
        response.raise_for_status()
        return dict(response.json())

    return post


def test_aiortc_client_gets_its_own_video_back_and_hangs_up(echo_server: str) -> None:
    token = precall_token(f"visit:{uuid.uuid4()}")

    async def scenario() -> None:
        run, client = await echo_client(poster(echo_server, token), frames=10, keep_open=True)
        frame = run.frames[-1]
        assert (frame.width, frame.height) == (WIDTH, HEIGHT)
        assert abs(plane_mean(frame, 0) - LUMA) < 12  # our own picture, not just a connection
        async with httpx.AsyncClient(base_url=echo_server) as http:
            assert (await http.post(run.answer["hangup_url"])).status_code == 204
            await asyncio.wait_for(run.ended.wait(), timeout=20)  # the server closed its peer
            assert (await http.post(run.answer["hangup_url"])).status_code == 404
        await client.close()

    asyncio.run(scenario())


def test_cap_answers_503_and_the_time_limit_frees_the_slot(short_echo_server: str) -> None:
    echo_server = short_echo_server
    token = precall_token(f"visit:{uuid.uuid4()}")

    async def scenario() -> None:
        first, client = await echo_client(poster(echo_server, token), keep_open=True)
        assert first.answer["max_seconds"] == 6.0

        async with httpx.AsyncClient(base_url=echo_server) as http:
            busy = await http.post(
                "/precall/offer/", json={"type": "offer", "sdp": "v=0\r\n"}, headers={"X-Precall-Token": token}
            )
        assert busy.status_code == 503
        assert 1 <= int(busy.headers["Retry-After"]) <= 7

        # The server ends the session at its time limit (the client never hangs up) ...
        await asyncio.wait_for(first.ended.wait(), timeout=30)
        await client.close()
        # ... and its slot is free again: a new test connects and gets frames.
        again, _ = await echo_client(poster(echo_server, token), frames=3)
        assert again.frames

    asyncio.run(scenario())


@pytest.fixture
def media_page(live_server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Chromium with a fake camera and microphone (started after the server fork)."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *MEDIA_ARGS]
        )
        context = browser.new_context(base_url=live_server_url)
        page = context.new_page()
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def test_nurse_sees_her_video_returned_with_rtt_and_a_verdict(personas: Any, media_page: Any) -> None:
    page = media_page
    page.add_init_script(CSP_LISTENER)
    sign_in(page, personas.alice)
    page.locator("#precall-link").click()
    expect(page).to_have_url(re.compile(r"/console/precall/$"))
    root = page.locator("#precall")
    expect(root).to_have_attribute("data-state", "idle")

    page.locator("[data-precall-role=start]").click()
    # Measuring: the video coming back from the server is decoded and playing.
    expect(root).to_have_attribute("data-state", "measuring", timeout=30_000)
    page.wait_for_function(
        """() => {
            const root = document.getElementById("precall");
            const video = root.querySelector("[data-precall-role=returned]");
            return Number(root.dataset.framesDecoded || 0) > 0
                && video.videoWidth > 0 && !video.paused && video.currentTime > 0;
        }""",
        timeout=30_000,
    )
    expect(page.locator("[data-precall-role=rtt]")).to_have_text(re.compile(r"^\d+ ms$"), timeout=30_000)
    expect(page.locator("[data-precall-role=loss]")).to_have_text(re.compile(r"^\d+\.\d %"))
    # The fake microphone's tone is picked up and the echoed audio comes back.
    expect(page.locator("[data-precall-role=mic]")).to_have_text("Sound detected, your audio comes back")
    snapshot(page, "precall-measuring")

    expect(root).to_have_attribute("data-state", "done", timeout=30_000)
    verdict = page.locator("[data-precall-role=verdict]")
    expect(verdict).to_be_visible()
    snapshot(page, "precall-done")
    # On loopback the verdict is good unless the machine is too loaded to keep 10 fps; never "failed".
    expect(root).to_have_attribute("data-verdict", re.compile(r"^(good|poor)$"))
    assert int(root.get_attribute("data-frames-decoded") or 0) > 0
    assert 0 <= int(root.get_attribute("data-rtt-ms") or -1) < 1000
    assert page.evaluate("() => window.__csp") == []  # the module and its stylesheet need no CSP exception


def test_blocked_camera_shows_permission_help_and_fails(personas: Any, live_server_url: str, monkeypatch) -> None:
    """The browser refuses the camera (no fake-UI auto-accept, no permission granted): NotAllowedError ->
    the help text tells the user how to allow it, the verdict is failed, no offer is sent."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    offers: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, "--use-fake-device-for-media-stream"]
        )
        context = browser.new_context(base_url=live_server_url)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("request", lambda request: offers.append(request.url) if "/precall/offer/" in request.url else None)
        try:
            sign_in(page, personas.alice)
            page.goto("/console/precall/")
            page.locator("[data-precall-role=start]").click()
            root = page.locator("#precall")
            expect(root).to_have_attribute("data-verdict", "failed")
            expect(page.locator("[data-precall-role=help]")).to_contain_text("blocked the camera or microphone")
            expect(page.locator("[data-precall-role=help]")).to_contain_text("Allow")
            expect(page.locator("[data-precall-role=start]")).to_be_enabled()
        finally:
            context.close()
            browser.close()
    assert offers == []
