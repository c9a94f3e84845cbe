"""The scaled topology for real: two daphne processes (nodes A and B) behind HAProxy with the generated config
(ops.topology), on the test database and the test run's Redis channel layer.

1. A nurse's console WebSocket on node A receives `case.queued` for a case enqueued by signed IVR webhooks sent
   to node B: nothing a node needs lives in another node's memory.
2. `manage.py drain --node A`: A's /readyz turns 503, HAProxy takes it out of rotation, the console on A is told
   to reconnect and closed with 4012, A exits 0; a console reconnecting through the proxy lands on B and gets
   the next case's event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client

from careline import drain
from ops import topology
from tests.conftest import NORTH_NUMBER
from tests.fixtures.fhir_server import free_port
from tests.ivr.phone import Phone
from tests.twilio import sign
from triage.models import Case

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The scaled topology is PostgreSQL + Redis (`make up-scaled`): separate daphne processes share the database
    # and the channel layer; the SQLite run (`make test-embedded`) has no shared server to point them at.
    pytest.mark.skipif(
        os.environ.get("DATABASE_URL", "postgres").startswith("sqlite"), reason="the scaled topology needs PostgreSQL"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class HttpPhoneClient:
    """What tests.ivr.phone.Phone expects of a Django test client, over real HTTP to one node."""

    def __init__(self, base: str) -> None:
        self.base = base

    def post(self, path: str, params: dict[str, str], HTTP_X_TWILIO_SIGNATURE: str = "") -> Any:  # noqa: N803
        return httpx.post(
            self.base + path, data=params, headers={"X-Twilio-Signature": HTTP_X_TWILIO_SIGNATURE}, timeout=30
        )


def node_env(**extra: str) -> dict[str, str]:
    """The environment of a live daphne node on this test run's database, channel-layer and cache prefixes,
    with its drain watcher polling every 0.2 s; `extra` adds or overrides variables."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "careline.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "CARELINE_TEST_CHANNEL_PREFIX": str(settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]),  # type: ignore[index]
        "CARELINE_TEST_CACHE_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "DRAIN_WATCHER": "true",
        "DRAIN_POLL_SECONDS": "0.2",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def start_node(*, port: int, node_id: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`daphne careline.asgi:application` on 127.0.0.1:`port` as node `node_id`, output to `log`."""
    return subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "careline.asgi:application"],
        cwd=ROOT,
        env={**env, "CARELINE_NODE_ID": node_id},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def stop_nodes(processes: dict[str, subprocess.Popen[bytes]], *, node_ids: Any) -> None:
    """SIGTERM every process still running (SIGKILL after 10 s), reap the ones already dead, and cancel the
    drain marks of `node_ids` in Redis (a drain test leaves one behind)."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for node_id in node_ids:
        drain.drain_cancel(node=node_id)


def start_proxy(config: str, *, ports: dict[str, int], log_dir: Path) -> subprocess.Popen[bytes]:
    """Wait until every node (`ports` but "proxy") answers `/readyz` 200, then start HAProxy with `config` and
    wait until it forwards `/readyz`. In that order: HAProxy marks a node DOWN at its first check if the node
    is not listening yet, and takes `rise` more checks to bring it back (a page loaded meanwhile gets 503)."""
    for name, port in ports.items():
        if name != "proxy":
            url = f"http://127.0.0.1:{port}/readyz"
            wait_until(lambda url=url: httpx.get(url).status_code == 200, 60, f"node {name}")
    cfg = log_dir / "haproxy.cfg"
    cfg.write_text(config)
    proxy = subprocess.Popen(
        ["haproxy", "-db", "-f", str(cfg)], stdout=(log_dir / "haproxy.log").open("wb"), stderr=subprocess.STDOUT
    )
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{ports['proxy']}/readyz").status_code == 200, 15, "proxy")
    return proxy


@pytest.fixture
def nodes(personas: Any) -> Iterator[dict[str, Any]]:
    """Nodes A and B (daphne processes) and HAProxy in front of them; everything stopped afterwards."""
    env = node_env()
    ports = {"a": free_port(), "b": free_port(), "proxy": free_port()}
    ids = {n: f"node-{n}-{uuid.uuid4().hex[:8]}" for n in ("a", "b")}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    log_dir = Path(settings.VAR_DIR) / "test-topology"
    log_dir.mkdir(exist_ok=True)
    try:
        for name in ("a", "b"):
            processes[name] = start_node(port=ports[name], node_id=ids[name], env=env, log=log_dir / f"{name}.log")
        processes["proxy"] = start_proxy(
            topology.haproxy_config(
                bind_port=ports["proxy"],
                nodes=[topology.Node("a", ports["a"]), topology.Node("b", ports["b"])],
                check_interval_ms=500,
            ),
            ports=ports,
            log_dir=log_dir,
        )
        yield {"ports": ports, "processes": processes, "ids": ids}
    finally:
        stop_nodes(processes, node_ids=ids.values())


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def call_to_nurse(base: str) -> None:
    """A caller from an unknown number presses 0 at the language menu: a case is queued (signed webhooks)."""
    phone = Phone(HttpPhoneClient(base), from_number="+15550009999", to_number=NORTH_NUMBER)
    phone.dial()
    phone.press("0")
    phone.enqueue()


async def next_event(ws: Any, timeout: float = 15) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=timeout))
        if message["event"] != "pong":
            return dict(message)


def test_console_on_node_a_sees_a_case_enqueued_through_node_b_and_drain_moves_it(personas, nodes):
    ports, ids = nodes["ports"], nodes["ids"]
    # Twilio signs PUBLIC_BASE_URL + path: the same signed request verifies on every node behind the proxy.
    params = {"CallSid": "CA" + "2" * 32, "From": "+15550009999", "To": NORTH_NUMBER}
    signature = sign("/ivr/voice/", params)
    for port in (ports["a"], ports["b"], ports["proxy"]):
        response = httpx.post(
            f"http://127.0.0.1:{port}/ivr/voice/", data=params, headers={"X-Twilio-Signature": signature}, timeout=30
        )
        assert response.status_code == 200, response.text
    cookie = session_cookie(personas.alice)
    headers = {"Cookie": cookie}

    async def scenario() -> None:
        url_a = f"ws://127.0.0.1:{ports['a']}/ws/console/"
        async with websockets.connect(url_a, additional_headers=headers, origin=f"http://127.0.0.1:{ports['a']}") as ws:
            await asyncio.to_thread(call_to_nurse, f"http://127.0.0.1:{ports['b']}")
            event = await next_event(ws)
            case = await asyncio.to_thread(Case.objects.get)
            assert event == {"event": "case.queued", "payload": {"case_id": case.pk, "acuity": case.acuity}}

            # Drain node A (what a load balancer's scale-in hook runs).
            await asyncio.to_thread(call_command, "drain", "--node", ids["a"], "--timeout", "30")
            assert await next_event(ws) == {"event": "reconnect", "payload": {"reason": "draining"}}
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4012

        await asyncio.to_thread(wait_until, lambda: nodes["processes"]["a"].poll() is not None, 20, "node A to exit")
        assert nodes["processes"]["a"].returncode == 0

        # Through the proxy the console lands on B and keeps receiving events.
        proxy = f"ws://127.0.0.1:{ports['proxy']}/ws/console/"
        async with websockets.connect(
            proxy, additional_headers=headers, origin=f"http://127.0.0.1:{ports['proxy']}"
        ) as ws:
            await asyncio.to_thread(call_to_nurse, f"http://127.0.0.1:{ports['proxy']}")
            event = await next_event(ws)
            assert event["event"] == "case.queued"
        assert httpx.get(f"http://127.0.0.1:{ports['b']}/readyz", timeout=30).json()["node"] == ids["b"]

    asyncio.run(scenario())


@pytest.mark.e2e
def test_a_browser_console_follows_a_drain_to_the_other_node(personas, nodes, monkeypatch):
    """Chromium's console, through the proxy, is on one node; draining that node makes the page reconnect
    (console.js: the `reconnect` event, then close codes 4012/4013 retried soon) to the other node, where it is
    live again and shows the next case."""
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API keeps a loop on this thread
    ports, ids = nodes["ports"], nodes["ids"]
    base = f"http://127.0.0.1:{ports['proxy']}"
    name, value = session_cookie(personas.alice).split("=", 1)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=base)
            context.add_cookies([{"name": name, "value": value, "url": base}])
            page = context.new_page()
            page.set_default_timeout(20_000)
            page.goto("/console/")
            expect(page.locator("#ws-status")).to_have_attribute("data-state", "live", timeout=20_000)

            # Which node holds the page's socket: each node's watcher publishes its open sessions.
            def holder() -> str | None:
                for node_name in ("a", "b"):
                    sessions = drain.open_sessions(ids[node_name])
                    if sessions and sessions["close"] == 1:
                        return node_name
                return None

            wait_until(lambda: holder() is not None, 15, "the console's node")
            held = holder()
            other = "b" if held == "a" else "a"
            call_command("drain", "--node", ids[held], "--timeout", "30")
            wait_until(lambda: nodes["processes"][held].poll() is not None, 20, f"node {held} to exit")
            assert nodes["processes"][held].returncode == 0

            expect(page.locator("#ws-status")).to_have_attribute("data-state", "live", timeout=20_000)
            wait_until(
                lambda: (drain.open_sessions(ids[other]) or {}).get("close") == 1, 15, "the socket on the other node"
            )
            call_to_nurse(base)
            case = Case.objects.get()
            expect(page.locator(f'#queue-table tr[data-case-id="{case.pk}"]')).to_be_visible(timeout=20_000)
        finally:
            browser.close()
