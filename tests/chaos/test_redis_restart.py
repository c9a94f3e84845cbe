"""Fault injection: Redis restarted (SHUTDOWN NOSAVE, then started again) 3 times while cases are enqueued and
200 consoles are connected (issue 7; `make chaos` runs 200, the default suite a smaller 60: see "Scale").

The test starts its own `redis-server` on a free port (no persistence: every restart loses all keys, the
channel layer's groups included) and one live daphne process whose channel layer, cache (drain flag, SLI
counters), Celery broker and WebSocket rate limiter all point at it. Tasks are *not* run eagerly in that
process (`CELERY_TASK_ALWAYS_EAGER=false`): every `.delay()` goes to the broker, as in production.

- **Consoles** (`ConsoleClient`) do what `static/console/console.js` does: one WebSocket to `/ws/console/`
  with a real OTP-verified staff session; on every (re)connect and on every event they re-fetch the queue
  partial (`GET /console/queue/`, what htmx does on `careline:resync`; a trigger while a request is in flight
  is queued, htmx's default "queue last"), plus htmx's `every 30s`; a `{"type": "ping"}` every 20 s; on
  close, reconnect after `min(15 s, base * 2**attempt) * U(0.75, 1.25)` (base 250 ms after a 4000/4012/4013
  close, 500 ms otherwise), close 4401 = signed out (the test fails).
- **Cases**: calls from distinct numbers press 0 at the language menu (signed Twilio webhooks to the live
  daphne): each call's second webhook enqueues a case and queues its SMS confirmation in the outbox, whose
  send task is published to the broker after commit.
- **Redis** is shut down 3 times, a few seconds apart, for `CARELINE_CHAOS_OUTAGE_SECONDS` each; the stream of
  calls ends during the last outage, so what enqueued then reaches the consoles only through their resync on
  reconnect (no event follows it).

Asserted: every call has exactly one case in PostgreSQL (0 lost, 0 duplicated) and one queued SMS in the
outbox; every webhook answered 2xx, during the outages too (a broker outage is logged, not raised:
`careline.celery`); `/readyz` answered 503 (not 500) while Redis was down and 200 after; daphne is alive;
every console reconnected after each restart; each console's queue view, from its resync after the last
restart, equals the open cases of its clinic in PostgreSQL. The reconnect times after each restart (p50, max)
are printed (bench/RESULTS.md, "Fault injection").

Scale (env): `CARELINE_CHAOS_CONSOLES` (default 60 in the suite, the smaller scale the issue allows in CI;
`make chaos` sets 200), spread over nurses of one clinic, at most
`CONSOLES_PER_NURSE` each: the per-user WebSocket rate limit (`WS_RATE_BURST` 30, `WS_RATE_PER_SECOND` 2)
is for one person's few tabs, and 20 tabs' heartbeats (1 per 20 s each) stay well inside it. Calls one per
`CARELINE_CHAOS_CALL_INTERVAL_SECONDS` (default 2): every case makes all 200 consoles re-fetch the queue
from the one daphne process, and on the shared 2-CPU machine that, not Redis, is what bounds the run.

Daphne runs with `--websocket_connect_timeout 30` (`DAPHNE_ARGS`; its default is 5 s; the Procfile and
`ops.topology` use 30 s too): with 200 consoles re-fetching on one loaded process, a reconnect herd's
handshakes waited longer than 5 s, daphne dropped them and the retries never converged (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import websockets
from django.conf import settings
from django.db import connection
from django.test import Client

from clinics.services import staff_create
from ivr.models import CallLeg, OutboundMessage
from tests.conftest import NORTH_NUMBER, PASSWORD, otp_device_for
from tests.fixtures.fhir_server import free_port
from tests.ivr.phone import Phone
from tests.ops.test_topology import wait_until
from triage.models import Case
from triage.selectors import queue_list

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.chaos,
    pytest.mark.skipif(
        os.environ.get("DATABASE_URL", "postgres").startswith("sqlite"), reason="a live daphne needs PostgreSQL"
    ),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
    pytest.mark.timeout(420),
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# 200 at full scale (`make chaos`): on the shared 2-CPU machine a 200-console herd's reconnects took up to
# 111 s after a restart and the run failed now and then on the 120 s bound, so the default suite runs 60.
CONSOLES = int(os.environ.get("CARELINE_CHAOS_CONSOLES", "60"))
RESTARTS = int(os.environ.get("CARELINE_CHAOS_RESTARTS", "3"))
OUTAGE_SECONDS = float(os.environ.get("CARELINE_CHAOS_OUTAGE_SECONDS", "2.5"))
BETWEEN_SECONDS = float(os.environ.get("CARELINE_CHAOS_BETWEEN_SECONDS", "4"))
CALL_INTERVAL_SECONDS = float(os.environ.get("CARELINE_CHAOS_CALL_INTERVAL_SECONDS", "2"))
CONSOLES_PER_NURSE = 20
DAPHNE_ARGS = ["--websocket_connect_timeout", "30"]
RECONNECT_TIMEOUT = 120.0  # s: 200 handshakes and 200 queue renders on a loaded 2-CPU machine

# console.js
BACKOFF_START = 0.5
REDIRECT_DELAY = 0.25
BACKOFF_MAX = 15.0
HEARTBEAT = 20.0
HTMX_POLL = 30.0
SERVER_RESTART_CODES = {1012, 1013, 4012, 4013}
SESSION_ENDED = 4401
CASE_ROW = re.compile(r'data-case-id="(\d+)"')


class RedisServer:
    """A redis-server of this test's own on `port` (no RDB, no AOF: a restart starts empty)."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        """Start the server and wait until it answers PING (raises AssertionError after 20 s)."""
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.workdir), "--daemonize", "no"],
            stdout=(self.workdir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: redis.Redis.from_url(self.url).ping(), 20, "redis to answer PING")

    def shutdown_nosave(self) -> None:
        """SHUTDOWN NOSAVE and wait for the process to exit."""
        with contextlib.suppress(redis.ConnectionError):  # the server closes the connection as it exits
            redis.Redis.from_url(self.url).shutdown(nosave=True)
        assert self.process is not None
        self.process.wait(timeout=20)

    def stop(self) -> None:
        """Stop the server if it runs (cleanup)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def chaos_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_node(personas: Any, chaos_redis: RedisServer, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """One daphne process on the test database with everything Redis-backed on `chaos_redis`."""
    port = free_port()
    layer: Any = settings.CHANNEL_LAYERS["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "careline.settings.test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "REDIS_URL": chaos_redis.url,  # channel layer, cache (drain flag, SLIs), Celery broker, WS rate limiter
        "CARELINE_TEST_CHANNEL_PREFIX": layer["CONFIG"]["prefix"],
        "CARELINE_TEST_CACHE_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "CELERY_TASK_ALWAYS_EAGER": "false",  # `.delay()` publishes to the broker, as in production
        # A Twilio account: every case's SMS confirmation is queued in the outbox and its send task published
        # to the broker after commit (no worker runs: nothing reaches Twilio).
        "CARELINE_TEST_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "DRAIN_WATCHER": "true",
        "CARELINE_NODE_ID": f"chaos-{port}",
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path / "daphne.log"
    process = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), *DAPHNE_ARGS, "careline.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200, 60, "daphne /readyz")
        yield {"port": port, "base": base, "process": process, "log": log}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def session_cookie(user: Any) -> str:
    """A real session cookie of `user`, signed in with the second factor (tests.conftest)."""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


class ConsoleClient:
    """One console page (static/console/console.js + htmx's queue partial), see the module docstring."""

    def __init__(self, number: int, base: str, cookie: str, http: httpx.AsyncClient) -> None:
        self.number, self.base, self.cookie, self.http = number, base, cookie, http
        self.ws_url = base.replace("http://", "ws://") + "/ws/console/"
        self.opens: list[float] = []  # time.monotonic() of each successful handshake
        self.closes: Counter[int] = Counter()  # close codes seen (1006: no close frame / refused handshake)
        self.view: set[int] | None = None  # case ids in the queue table as last fetched
        self.view_fetched_after = 0.0  # start time of the fetch that produced `view`
        self.fetch_errors = 0
        self.fetches = 0
        self.fetch_seconds: list[float] = []
        self.reconnect_reasons: Counter[str] = Counter()  # {"event": "reconnect"} notices received
        self.signed_out = False
        self._fetching = False
        self._pending = False

    def resync(self) -> None:
        """`careline:resync`: re-fetch the queue partial; one in flight, the last trigger queued (htmx)."""
        if self._fetching:
            self._pending = True
            return
        self._fetching = True
        asyncio.get_running_loop().create_task(self._fetch())

    async def _fetch(self) -> None:
        try:
            while True:
                self._pending = False
                started = time.monotonic()
                self.fetches += 1
                try:
                    response = await self.http.get(
                        self.base + "/console/queue/", headers={"Cookie": self.cookie, "HX-Request": "true"}
                    )
                    self.fetch_seconds.append(time.monotonic() - started)
                    if response.status_code == 200:  # htmx swaps only a 2xx answer
                        self.view = {int(pk) for pk in CASE_ROW.findall(response.text)}
                        self.view_fetched_after = started
                    else:
                        self.fetch_errors += 1
                except httpx.HTTPError:
                    self.fetch_errors += 1
                if not self._pending:
                    return
        finally:
            self._fetching = False

    async def _poll(self) -> None:
        while True:  # hx-trigger "every 30s"
            await asyncio.sleep(HTMX_POLL)
            self.resync()

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set (console.js `connectFeed`)."""
        attempt = 0
        poll = asyncio.get_running_loop().create_task(self._poll())
        try:
            while not stop.is_set():
                code = 1006
                try:
                    async with websockets.connect(
                        self.ws_url,
                        additional_headers={"Cookie": self.cookie},
                        origin=self.base,  # type: ignore[arg-type]
                        open_timeout=60,
                        ping_interval=None,  # browsers answer pings, they send none
                    ) as ws:
                        attempt = 0
                        self.opens.append(time.monotonic())
                        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(ws))
                        self.resync()  # onOpen -> careline:resync
                        try:
                            code = await self._receive(ws, stop)
                        finally:
                            heartbeat.cancel()
                except websockets.ConnectionClosed as closed:
                    code = closed.rcvd.code if closed.rcvd is not None else 1006
                except (OSError, TimeoutError, websockets.InvalidHandshake):
                    code = 1006  # the browser sees a failed handshake as close 1006
                if stop.is_set():
                    return
                self.closes[code] += 1
                if code == SESSION_ENDED:
                    self.signed_out = True
                    return
                redirected = code in SERVER_RESTART_CODES or code == 4000
                base = REDIRECT_DELAY if redirected else BACKOFF_START
                delay = min(BACKOFF_MAX, base * 2**attempt) * (0.75 + random.random() * 0.5)
                attempt += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            poll.cancel()

    async def _heartbeat(self, ws: Any) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            await ws.send(json.dumps({"type": "ping"}))

    async def _receive(self, ws: Any, stop: asyncio.Event) -> int:
        stopping = asyncio.get_running_loop().create_task(stop.wait())
        try:
            while True:
                receiving = asyncio.get_running_loop().create_task(ws.recv())
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    receiving.cancel()
                    return 1000
                try:
                    data = json.loads(receiving.result())
                except websockets.ConnectionClosed as closed:
                    return closed.rcvd.code if closed.rcvd is not None else 1006
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("event") == "reconnect":
                    self.reconnect_reasons[str((data.get("payload") or {}).get("reason"))] += 1
                    await ws.close(4000, "reconnect")
                    return 4000
                if isinstance(data, dict) and isinstance(data.get("event"), str) and data["event"] != "pong":
                    self.resync()
        finally:
            stopping.cancel()


class CallStream:
    """Calls to the live node, one after another, each pressing 0 (to a nurse) at the language menu."""

    def __init__(self, base: str, windows: list[tuple[float, float]]) -> None:
        self.base = base
        self.windows = windows  # (down, up) monotonic times of the Redis outages
        self.stop = threading.Event()
        self.enqueued: list[tuple[str, float]] = []  # (call sid, monotonic time answered)
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.slowest = 0.0
        self._number = 0

    def _post(self, path: str, params: dict[str, str], HTTP_X_TWILIO_SIGNATURE: str = "") -> Any:  # noqa: N803
        started = time.monotonic()
        response = httpx.post(
            self.base + path, data=params, headers={"X-Twilio-Signature": HTTP_X_TWILIO_SIGNATURE}, timeout=60
        )
        self.slowest = max(self.slowest, time.monotonic() - started)
        self.statuses[response.status_code] += 1
        return response

    post = _post  # what tests.ivr.phone.Phone calls on its "client"

    def run(self) -> None:
        while not self.stop.is_set():
            self._number += 1
            phone = Phone(self, from_number=f"+1555077{self._number:04d}", to_number=NORTH_NUMBER)
            try:
                phone.dial()
                phone.press("0")
                phone.enqueue()  # the answer holds <Enqueue>: the case is queued
                self.enqueued.append((phone.call_sid, time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - recorded and asserted on by the test
                self.failures.append(f"call {self._number}: {type(exc).__name__}: {exc}"[:160])
            time.sleep(CALL_INTERVAL_SECONDS)

    def during_outage(self) -> int:
        return sum(1 for _, at in self.enqueued if any(down <= at <= up for down, up in self.windows))


def _nurses(north: Any, count: int) -> list[Any]:
    users = []
    for i in range(count):
        user = staff_create(clinic=north, role="nurse", username=f"chaos-nurse-{i}", password=PASSWORD).user
        otp_device_for(user)
        users.append(user)
    return users


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def test_redis_restarted_three_times_loses_no_case_and_every_console_resyncs(
    personas: Any, chaos_redis: RedisServer, live_node: dict[str, Any]
) -> None:
    base, process = live_node["base"], live_node["process"]
    nurses = _nurses(personas.north, max(2, math.ceil(CONSOLES / CONSOLES_PER_NURSE)))
    cookies = [session_cookie(user) for user in nurses]
    windows: list[tuple[float, float]] = []
    stream = CallStream(base, windows)
    readyz_down: list[tuple[int, str]] = []
    reconnects: list[list[float]] = []
    started = time.monotonic()

    def expected_queue() -> set[int]:
        return set(queue_list(clinic=personas.north).values_list("pk", flat=True))

    async def scenario() -> list[ConsoleClient]:
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            consoles = [ConsoleClient(i, base, cookies[i % len(cookies)], http) for i in range(CONSOLES)]
            tasks = []
            for console in consoles:
                tasks.append(asyncio.create_task(console.run(stop)))
                await asyncio.sleep(0.05)  # pages opened over ten seconds (20/s), not in one instant

            def fetch_p(q: float) -> float:
                return _pct([d for c in consoles for d in c.fetch_seconds] or [0.0], q)

            async def all_live_since(moment: float, what: str) -> None:
                deadline = time.monotonic() + RECONNECT_TIMEOUT
                while time.monotonic() < deadline:
                    if all(c.opens and c.opens[-1] >= moment for c in consoles):
                        return
                    await asyncio.sleep(0.1)
                behind = [c.number for c in consoles if not (c.opens and c.opens[-1] >= moment)]
                raise AssertionError(
                    f"{len(behind)} consoles not reconnected {what}: {behind[:20]}; opens "
                    f"{sum(len(c.opens) for c in consoles)}, closes {sum((c.closes for c in consoles), Counter())}, "
                    f"fetches {sum(c.fetches for c in consoles)} (p50 {fetch_p(0.5):.2f} s, max {fetch_p(1):.2f} s), "
                    f"crashed {sum(t.done() for t in tasks)}"
                )

            await all_live_since(0, "at start")
            calls = asyncio.create_task(asyncio.to_thread(stream.run))
            try:
                for restart in range(RESTARTS):
                    await asyncio.sleep(BETWEEN_SECONDS)
                    down = time.monotonic()
                    await asyncio.to_thread(chaos_redis.shutdown_nosave)
                    async with httpx.AsyncClient(timeout=30) as probe:
                        ready = await probe.get(base + "/readyz")
                        readyz_down.append((ready.status_code, ready.text))
                    await asyncio.sleep(max(0.0, down + OUTAGE_SECONDS - time.monotonic()))
                    if restart == RESTARTS - 1:
                        # The stream ends during the last outage: what it enqueued then is announced to no
                        # console; only their resync on reconnect shows it.
                        stream.stop.set()
                        await calls
                    await asyncio.to_thread(chaos_redis.start)
                    up = time.monotonic()
                    windows.append((down, up))
                    await all_live_since(up, f"after restart {restart + 1}")
                    reconnects.append([next(t for t in c.opens if t >= up) - up for c in consoles])
            finally:
                stream.stop.set()
                await calls

            last_up = windows[-1][1]
            deadline = time.monotonic() + RECONNECT_TIMEOUT
            while time.monotonic() < deadline and not all(c.view_fetched_after >= c.opens[-1] for c in consoles):
                await asyncio.sleep(0.1)
            assert all(c.opens[-1] >= last_up for c in consoles)
            stop.set()
            await asyncio.gather(*tasks)
            return consoles

    consoles = asyncio.run(scenario())
    duration = time.monotonic() - started

    # PostgreSQL is the source of truth: one case per call that was told it is queued, none extra.
    sids = [sid for sid, _ in stream.enqueued]
    legs = CallLeg.objects.filter(call_sid__in=sids)
    case_of = dict(legs.values_list("call_sid", "case_id"))
    assert not stream.failures, stream.failures[:5]
    assert len(set(sids)) == len(sids) > 0
    assert legs.count() == len(sids), "a call leg lost or duplicated"
    assert None not in case_of.values() and len(set(case_of.values())) == len(sids), "a call without its case"
    assert Case.objects.filter(clinic=personas.north).count() == len(sids), "a case lost or duplicated"
    assert Case.objects.filter(pk__in=case_of.values(), state="queued").count() == len(sids)
    assert stream.during_outage() > 0, "no case was enqueued while Redis was down"
    assert set(stream.statuses) <= {200, 204}, stream.statuses
    # Each case's SMS confirmation is in the outbox (its sweep sends it), also when its send task could not be
    # published because the broker (the same Redis) was down, which did happen:
    assert OutboundMessage.objects.filter(case_id__in=case_of.values(), state="queued").count() == len(sids)
    assert "not published: broker unreachable" in live_node["log"].read_text()

    # Readiness tells the proxy the truth while Redis is down (503, not a crash), and recovers.
    assert len(readyz_down) == RESTARTS
    for status, text in readyz_down:
        assert status == 503, text
        checks = json.loads(text)["checks"]
        assert checks["database"]["ok"] and not checks["channel_layer"]["ok"] and not checks["draining"]["ok"], text
    wait_until(lambda: httpx.get(base + "/readyz", timeout=30).status_code == 200, 60, "/readyz 200 with Redis back")
    assert process.poll() is None, "daphne died"

    # Every console reconnected after every restart and shows, from its resync, what PostgreSQL holds.
    expected = expected_queue()
    assert expected == set(case_of.values())
    assert not any(c.signed_out for c in consoles)
    wrong = [c.number for c in consoles if c.view != expected]
    assert not wrong, f"{len(wrong)} consoles show another queue than PostgreSQL, e.g. {wrong[:10]}"

    for i, times in enumerate(reconnects, start=1):
        print(
            f"restart {i}: outage {windows[i - 1][1] - windows[i - 1][0]:.1f} s, {len(times)} consoles reconnected "
            f"after start: p50 {statistics.median(times):.2f} s, p99 {_pct(times, 0.99):.2f} s, "
            f"max {max(times):.2f} s"
        )
    closes = sum((c.closes for c in consoles), Counter())
    reasons = sum((c.reconnect_reasons for c in consoles), Counter())
    fetches = [d for c in consoles for d in c.fetch_seconds]
    print(
        f"{len(sids)} cases ({stream.during_outage()} while Redis was down), webhooks {dict(stream.statuses)}, "
        f"slowest webhook {stream.slowest:.2f} s; {CONSOLES} consoles of {len(nurses)} nurses; close codes "
        f"{dict(closes)}; told to reconnect {dict(reasons)}; "
        f"queue fetches {sum(c.fetches for c in consoles)} (p50 {_pct(fetches, 0.5):.2f} s, max {max(fetches):.2f} s, "
        f"errors {sum(c.fetch_errors for c in consoles)}); duration {duration:.0f} s"
    )


def test_the_websocket_rate_limiter_fails_open_while_redis_is_down(chaos_redis: RedisServer, settings: Any) -> None:
    """careline.ws.take_token: with its Redis down a console's message is allowed (and logged), not a consumer
    crash; with Redis back the bucket limits again (an empty bucket refuses)."""
    from careline.ws import take_token

    settings.REDIS_URL = chaos_redis.url
    settings.WS_RATE_BURST, settings.WS_RATE_PER_SECOND = 3, 0.001

    async def burst() -> list[bool]:
        return [await take_token(424242) for _ in range(5)]

    chaos_redis.shutdown_nosave()
    assert asyncio.run(burst()) == [True] * 5  # fails open: nothing to count with
    chaos_redis.start()
    assert asyncio.run(burst()) == [True, True, True, False, False]
