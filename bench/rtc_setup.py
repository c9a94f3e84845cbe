"""Pre-call echo setup under load: N parallel aiortc clients against the echo on a live daphne, vs a floor.

Each client times one setup: offer created (ICE candidates gathered) -> answer received -> ICE + DTLS
connected -> first video frame returned. The figure: N clients at once against `POST /precall/offer/` on a
daphne process started here (`careline.asgi`, the real view, token authorization, the per-process echo
registry). The floor: the same N setups at once, aiortc to aiortc inside this one process, the echo peer
answered by a function call (no HTTP, no Django, no second process). Rounds alternate floor and server;
each round's clients run in a fresh process (so no round inherits another's threads or sockets), after
one untimed warm-up setup; daphne stays up for all rounds, as in production. Samples are pooled. Prints
p50 / p95 / max of each phase and of the whole setup, and the ratios.

Usage: `.venv/bin/python bench/rtc_setup.py [--clients 50] [--rounds 3] [--port 0]`. Loopback only
(`RTC_HOST_ADDRESSES=127.0.0.1`); port 0 picks a free port in 24000-24999. Needs nothing but the venv: the
daphne it starts uses the embedded defaults (SQLite, in-memory channel layer, local-memory cache), because
a token-authorized offer touches neither the database nor Redis.

Caveat when reading the ratio: the floor runs both ends of all N connections in one process (one core at
most), while the server run splits them over two processes (the bench clients and daphne), so on an idle
multi-core machine the server run can come close to, or beat, the floor; what the ratio shows is the cost
of HTTP + Django + token check + the daphne hop, not of a second CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER_ENV = {
    "DJANGO_SETTINGS_MODULE": "careline.settings.base",
    "RTC_HOST_ADDRESSES": "127.0.0.1",
    "PRECALL_MAX_SESSIONS": "1000",
    "PRECALL_MAX_SECONDS": "120",
    "PRECALL_RATE_LIMIT": "1000",
    "LOG_LEVEL": "WARNING",
}
for _name, _value in SERVER_ENV.items():
    os.environ.setdefault(_name, _value)
for _name in ("DATABASE_URL", "REDIS_URL"):
    os.environ.pop(_name, None)  # the server needs neither (see the module docstring)

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402

from contactcenter.precall import configure_host_addresses, precall_token  # noqa: E402
from tests.rtc_peer import EchoRun, PostOffer, close_peers, echo_client, echo_in_process  # noqa: E402

PHASES = ("offer_ready", "answered", "connected", "first_frame")


def free_port(start: int = 24000, end: int = 24999) -> int:
    """A free TCP port on 127.0.0.1 in this branch's range (rtc: 24000-24999)."""
    for port in range(start, end + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 24000-24999")


def start_daphne(port: int) -> subprocess.Popen[bytes]:
    """daphne serving careline.asgi on 127.0.0.1:port; returns once it accepts connections."""
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "careline.asgi:application"],
        cwd=ROOT,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("daphne did not start within 60 s")


def server_poster(http: httpx.AsyncClient, hangups: list[str]) -> PostOffer:
    async def post(sdp: str) -> dict:
        token = precall_token(f"bench:{uuid.uuid4()}")
        response = await http.post(
            "/precall/offer/", json={"type": "offer", "sdp": sdp}, headers={"X-Precall-Token": token}
        )
        response.raise_for_status()
        answer = dict(response.json())
        hangups.append(answer["hangup_url"])
        return answer

    return post


async def one_round(clients: int, post: PostOffer) -> tuple[list[EchoRun], int]:
    results = await asyncio.gather(
        *(echo_client(post, frames=1, timeout=60) for _ in range(clients)), return_exceptions=True
    )
    runs = [r[0] for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures[:3]:
        print(f"  failure: {failure!r}")
    return runs, len(failures)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), pct(values, 0.95), max(values)


async def worker(kind: str, clients: int, url: str) -> None:
    """One round's client side, in a fresh process: print one line per setup (`kind` floor or server)."""
    configure_host_addresses()
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        hangups: list[str] = []
        post = echo_in_process() if kind == "floor" else server_poster(http, hangups)
        # Warm-up (untimed): codecs, and for the server its first Django request.
        await echo_client(post)
        runs, bad = await one_round(clients, post)
        await close_peers(post)
        for hangup in hangups:
            await http.post(hangup)
    for run in runs:
        print("RUN " + " ".join(f"{getattr(run, phase):.6f}" for phase in PHASES))
    print(f"FAILED {bad}")


def run_worker(kind: str, clients: int, url: str) -> tuple[list[list[float]], int]:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--clients", str(clients), "--url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    runs = [[float(x) for x in line.split()[1:]] for line in out.stdout.splitlines() if line.startswith("RUN ")]
    failed = [int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("FAILED ")]
    if out.returncode or not failed:
        print(out.stdout[-2000:], out.stderr[-2000:])
        return runs, clients - len(runs)
    return runs, failed[0]


def main(clients: int, rounds: int, port: int) -> int:
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    daphne = start_daphne(port)
    samples: dict[str, list[list[float]]] = {"floor": [], "server": []}
    failed = {"floor": 0, "server": 0}
    try:
        for number in range(1, rounds + 1):
            for kind in ("floor", "server"):
                runs, bad = run_worker(kind, clients, url)
                samples[kind] += runs
                failed[kind] += bad
            p50 = {k: statistics.median(r[-1] for r in v[-clients:]) * 1000 for k, v in samples.items() if v}
            floor_p50, server_p50 = p50.get("floor", 0), p50.get("server", 0)
            print(f"round {number}: first frame p50 floor {floor_p50:.0f} ms, server {server_p50:.0f} ms")
    finally:
        daphne.terminate()
        daphne.wait(timeout=10)
    if not samples["floor"] or not samples["server"]:
        print("no samples")
        return 1

    print(f"\n{clients} parallel setups x {rounds} rounds (ms from the start of each setup; cumulative phases)")
    head = f"{'floor p50':>10}{'p95':>8}{'max':>8}{'server p50':>12}{'p95':>8}{'max':>8}"
    print(f"{'phase':<14}{head}{'ratio p50':>11}{'p95':>7}{'max':>7}")
    for index, phase in enumerate(PHASES):
        f = summary([r[index] * 1000 for r in samples["floor"]])
        s = summary([r[index] * 1000 for r in samples["server"]])
        print(
            f"{phase:<14}{f[0]:>10.0f}{f[1]:>8.0f}{f[2]:>8.0f}{s[0]:>12.0f}{s[1]:>8.0f}{s[2]:>8.0f}"
            f"{s[0] / f[0]:>11.2f}{s[1] / f[1]:>7.2f}{s[2] / f[2]:>7.2f}"
        )
    print(f"failures: floor {failed['floor']}, server {failed['server']}")
    return 1 if any(failed.values()) else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--worker", choices=["floor", "server"], help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.clients, args.url))
        sys.exit(0)
    sys.exit(main(args.clients, args.rounds, args.port))
