"""A live daphne serving `careline.asgi` on the test database, and a headless Chromium (TESTING.md).

The server runs in a forked process (`daphne.testing.DaphneProcess`, as `ChannelsLiveServerTestCase` does),
so it inherits this process's settings as they are at fork time: the test database, the per-run Redis
channel-layer prefix (so events published here reach its consumers), CELERY_TASK_ALWAYS_EAGER, and the
FHIR server URL set by the `fhir` fixture. Static files are served from the finders
(`ASGIStaticFilesHandler`), no collectstatic needed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def _server_child_setup() -> None:
    """Runs in the forked server process before it serves: drop state whose threads did not survive the fork.

    asgiref's process-wide single-thread executor (used by `database_sync_to_async` outside a request
    context, e.g. in consumers and the session middleware) keeps a dead worker thread if this process used
    it before forking (the async consumer tests do): every DB call of the WebSocket handshake would then
    wait forever. Channel layers are rebuilt for the child's own event loop.
    """
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import SyncToAsync
    from channels.layers import channel_layers
    from channels.testing.live import set_database_connection

    SyncToAsync.single_thread_executor = ThreadPoolExecutor(max_workers=1)
    channel_layers.backends = {}
    set_database_connection()


@pytest.fixture
def live_server_url(transactional_db: None, fhir: Any) -> Iterator[str]:
    """Base URL (http://127.0.0.1:PORT) of a daphne process serving the app on the test database."""
    from channels.testing.live import make_application
    from daphne.testing import DaphneProcess
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    process = DaphneProcess(
        "127.0.0.1",
        partial(make_application, static_wrapper=ASGIStaticFilesHandler),
        setup=_server_child_setup,
    )
    process.start()
    if not process.ready.wait(timeout=30):
        process.terminate()
        raise RuntimeError("daphne did not start within 30 s")
    try:
        yield f"http://127.0.0.1:{process.port.value}"
    finally:
        process.terminate()
        process.join(timeout=10)


@pytest.fixture
def browser_page(live_server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A Playwright page in headless Chromium. Started after the server fork, so the flag below stays here."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are still sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=live_server_url)
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def complete_otp_step(page: Any, user: Any) -> None:
    """After the password step: the page asks for the verification code; type the user's current code
    (`tests.conftest.current_totp`, the persona's TEST-ONLY TOTP device) and continue."""
    from playwright.sync_api import expect

    from tests.conftest import current_totp

    expect(page).to_have_url(re.compile(r"/accounts/otp/"))
    page.get_by_label("Verification code", exact=True).fill(current_totp(user))
    page.locator("#verify").click()


def sign_in(page: Any, user: Any, password: str | None = None) -> None:
    """Sign `user` in through the real pages: /accounts/login/ (username, password), then the TOTP step."""
    from tests.conftest import PASSWORD

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(password or PASSWORD)
    page.locator("#sign-in").click()
    complete_otp_step(page, user)


def trace_page(page: Any, role: str) -> None:
    """Print what a page does that a failed browser test needs to be read: console lines, page errors, its
    WebSocket opens and closes, failed requests and HTTP errors, each with a monotonic time (s). pytest shows
    the output only when the test fails."""
    import time

    def say(what: str) -> None:
        print(f"[{time.monotonic():.2f} {role}] {what}", flush=True)

    def on_websocket(ws: Any) -> None:
        say(f"ws open {ws.url}")
        if "/ws/visit/" in ws.url:  # the visit's signaling, message by message (no PHI in tests' visits)
            ws.on("framesent", lambda payload: say(f"ws > {str(payload)[:160]}"))
            ws.on("framereceived", lambda payload: say(f"ws < {str(payload)[:160]}"))
        ws.on("close", lambda _ws: say(f"ws closed {ws.url}"))
        ws.on("socketerror", lambda error: say(f"ws error {ws.url}: {error}"))

    def on_response(response: Any) -> None:
        if response.status >= 400:
            say(f"HTTP {response.status} {response.request.method} {response.url}")

    page.on("console", lambda message: say(f"console.{message.type}: {message.text}"))
    page.on("pageerror", lambda error: say(f"page error: {error}"))
    page.on("websocket", on_websocket)
    page.on("requestfailed", lambda request: say(f"request failed {request.method} {request.url}: {request.failure}"))
    page.on("response", on_response)
    # The visit's own HTTP calls (ICE configuration, history), start and end: a call that never ends shows.
    visit_api = re.compile(r"/visit/[0-9a-f-]{36}/(ice|history|messages)")
    page.on("request", lambda request: visit_api.search(request.url) and say(f"> {request.method} {request.url}"))
    page.on("requestfinished", lambda request: visit_api.search(request.url) and say(f"< {request.url}"))
    page.on("load", lambda p: say(f"load {p.url}"))
