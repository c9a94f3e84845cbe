"""Fan-out: one queue change delivered to N connected consoles, vs a bare `group_send` to N no-op consumers.

Usage: `.venv/bin/python bench/fanout.py [--consoles 1000] [--events 20] [--port 26080]`

Project: a live daphne (`careline.asgi:application`, bound to 127.0.0.1:--port) on the Redis channel layer
(`REDIS_URL`, default redis://127.0.0.1:6379/0, under a prefix of its own so nothing else on that Redis sees
it); N WebSocket clients (the `websockets` library, in this process) open `/ws/console/` with session cookies
of 50 nurses of one clinic, exactly as browsers do. Each event is `clinics.events.publish(clinic, "case.queued",
...)` called here (this process plays the web worker that committed the change); the figure for one event
is the delay from the call until each console has received the JSON frame (p50 and p99 over the N consoles
and all events, and the p99 of "last console served"), and the deliveries lost (a console whose socket
closed, e.g. its consumer crashed, counts as lost for every later event; any loss fails the run). One more
event before them warms up and is not counted.

Floor: in this process, N channels on the same channel layer (same Redis, same prefix scheme) joined to one
group, each with a task blocked in `layer.receive(channel)` (a no-op consumer: no Channels consumer class,
no JSON, no WebSocket); one `layer.group_send`; the delay until each receive returns.

Goal (issue 7): project p99 <= 3 x floor p99. Writes `fanout` into bench/figures.json. The scratch database
is `careline_bench_fanout` (dropped and created per run).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/careline_bench_fanout")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"careline-bench-fanout-{os.getpid()}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings.base")
os.environ.setdefault("CARELINE_DEMO", "false")
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(40))
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "bench:" + base64.b64encode(secrets.token_bytes(32)).decode())

from benchdb import fresh_database  # noqa: E402
from figures import record  # noqa: E402

fresh_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

import websockets  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django_otp import DEVICE_ID_SESSION_KEY  # noqa: E402
from django_otp.plugins.otp_totp.models import TOTPDevice  # noqa: E402

from clinics import events  # noqa: E402
from clinics.services import clinic_create, staff_create  # noqa: E402

GOAL = 3.0  # project p99 <= 3 x floor p99
NURSES = 50


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def cookies(count: int) -> tuple[int, list[str]]:
    clinic = clinic_create(slug="bench", name="Bench", twilio_number="+15550109999", on_call_number="+15550109998")
    result = []
    for i in range(count):
        user = staff_create(clinic=clinic, role="nurse", username=f"bench-nurse-{i}", password="bench-password").user
        client = Client()
        client.force_login(user)
        # Consoles need an OTP-verified session (careline.ws): mark it as `/accounts/otp/` does after a correct
        # code from the nurse's confirmed TOTP device (a random bench-only key).
        device = TOTPDevice.objects.create(user=user, name="bench", key=secrets.token_hex(20), confirmed=True)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
        result.append(f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}")
    return clinic.pk, result


async def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"daphne did not listen on {port}")


async def project(consoles: int, n_events: int, port: int, clinic_id: int, session_cookies: list[str]) -> dict:
    url = f"ws://127.0.0.1:{port}/ws/console/"
    origin = f"http://127.0.0.1:{port}"
    sockets = []
    semaphore = asyncio.Semaphore(20)

    async def open_one(i: int) -> None:
        async with semaphore:
            for attempt in range(3):  # a console reconnects when a handshake fails, as the console JS does
                try:
                    ws = await websockets.connect(
                        url,
                        origin=origin,
                        additional_headers={"Cookie": session_cookies[i % len(session_cookies)]},
                        open_timeout=60,
                        max_queue=None,
                    )
                except (OSError, websockets.exceptions.InvalidMessage, TimeoutError):
                    if attempt == 2:
                        raise
                    await asyncio.sleep(1)
                else:
                    sockets.append(ws)
                    return

    started = time.perf_counter()
    await asyncio.gather(*(open_one(i) for i in range(consoles)))
    print(f"  {len(sockets)} consoles connected in {time.perf_counter() - started:.1f} s")
    # The consumer joins its group before accepting the handshake, so every open socket is subscribed.
    delays: list[float] = []
    lasts: list[float] = []
    lost = 0  # deliveries that never arrived: the console's socket closed (e.g. its consumer crashed)
    for n in range(n_events + 1):
        marker = 10_000_000 + n

        async def receive(ws, marker=marker) -> float | None:
            try:
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
                    if message["payload"].get("case_id") == marker:
                        return time.perf_counter()
            except (websockets.exceptions.ConnectionClosed, TimeoutError):
                return None  # counted as lost below

        live = [ws for ws in sockets if ws.state is websockets.protocol.State.OPEN]
        waiters = [asyncio.create_task(receive(ws)) for ws in live]
        await asyncio.sleep(0.05)
        sent = time.perf_counter()
        await asyncio.to_thread(events.publish, clinic_id, "case.queued", {"case_id": marker, "acuity": 3})
        arrivals = await asyncio.gather(*waiters)
        lost += len(sockets) - len([t for t in arrivals if t is not None])
        these = [(t - sent) * 1000 for t in arrivals if t is not None]
        if n > 0:  # the first event warms up connections and code paths: not measured
            delays.extend(these)
            lasts.append(max(these))
        await asyncio.sleep(0.2)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "p50_ms": statistics.median(delays),
        "p99_ms": percentile(delays, 99),
        "last_p99_ms": percentile(lasts, 99),
        "deliveries": len(delays),
        "lost": lost,
    }


async def floor(consumers: int, n_events: int) -> dict:
    layer = get_channel_layer()
    group = f"bench-floor-{os.getpid()}"
    channels = [await layer.new_channel() for _ in range(consumers)]
    for channel in channels:
        await layer.group_add(group, channel)
    delays: list[float] = []
    lasts: list[float] = []
    for n in range(n_events + 1):

        async def receive(channel: str) -> float:
            await layer.receive(channel)
            return time.perf_counter()

        waiters = [asyncio.create_task(receive(c)) for c in channels]
        await asyncio.sleep(0.05)
        sent = time.perf_counter()
        await layer.group_send(group, {"type": "console.event", "event": "case.queued", "payload": {"case_id": n}})
        arrivals = await asyncio.gather(*waiters)
        these = [(t - sent) * 1000 for t in arrivals]
        if n > 0:  # the first event warms up connections and code paths: not measured
            delays.extend(these)
            lasts.append(max(these))
        await asyncio.sleep(0.2)
    for channel in channels:
        await layer.group_discard(group, channel)
    return {
        "p50_ms": statistics.median(delays),
        "p99_ms": percentile(delays, 99),
        "last_p99_ms": percentile(lasts, 99),
        "deliveries": len(delays),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--consoles", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--port", type=int, default=26080)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    clinic_id, session_cookies = cookies(NURSES)
    log_path = Path(tempfile.gettempdir()) / f"careline-bench-fanout-daphne-{os.getpid()}.log"
    daphne_log = open(log_path, "wb")  # noqa: SIM115 - closed after daphne exits; never a pipe (it would fill)
    print(f"  daphne log: {log_path}")
    daphne = subprocess.Popen(
        # Daphne drops a WebSocket not accepted within 5 s by default; 1,000 handshakes on 2 busy CPUs take longer.
        [
            sys.executable,
            "-m",
            "daphne",
            "--websocket_connect_timeout",
            "120",
            "-b",
            "127.0.0.1",
            "-p",
            str(args.port),
            "careline.asgi:application",
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=daphne_log,
        start_new_session=True,
    )
    try:
        asyncio.run(wait_port(args.port))
        floor_figures = asyncio.run(floor(args.consoles, args.events))
        project_figures = asyncio.run(project(args.consoles, args.events, args.port, clinic_id, session_cookies))
    finally:
        os.killpg(daphne.pid, signal.SIGTERM)
        try:
            daphne.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(daphne.pid, signal.SIGKILL)
        daphne_log.close()
    ratio = project_figures["p99_ms"] / floor_figures["p99_ms"]
    ok = ratio <= GOAL and project_figures["lost"] == 0
    print(f"{args.consoles} consoles, {args.events} events, Redis channel layer at {os.environ['REDIS_URL']}")
    for label, figures in (
        ("floor   (bare group_send, no-op)", floor_figures),
        ("project (daphne + console)", project_figures),
    ):
        print(
            f"{label}: p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
            f"last console p99 {figures['last_p99_ms']:7.1f} ms  ({figures['deliveries']} deliveries,"
            f" {figures.get('lost', 0)} lost)"
        )
    print(f"ratio p99 project/floor: {ratio:.2f} (goal <= {GOAL}): {'PASS' if ok else 'FAIL'}")
    record(
        "fanout",
        {
            "consoles": args.consoles,
            "events": args.events,
            "floor_p50_ms": round(floor_figures["p50_ms"], 1),
            "floor_p99_ms": round(floor_figures["p99_ms"], 1),
            "project_p50_ms": round(project_figures["p50_ms"], 1),
            "project_p99_ms": round(project_figures["p99_ms"], 1),
            "project_last_console_p99_ms": round(project_figures["last_p99_ms"], 1),
            "project_lost_deliveries": project_figures["lost"],
            "ratio_p99": round(ratio, 3),
            "goal_ratio_max": GOAL,
            "pass": ok,
        },
    )


if __name__ == "__main__":
    main()
