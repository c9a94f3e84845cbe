"""Surge: 10x the normal arrival rate for 15 simulated minutes through the IVR of the scaled topology.

Usage: `.venv/bin/python bench/surge.py [--factor 10] [--normal-per-hour 18] [--surge 10] [--minutes 15]
[--nurses 4] [--seed 7]` (`make surge`; about 3-4 min).

Topology: what `make up-scaled` runs (`manage.py topology_config`, ops.topology: HAProxy in front of 2 daphne
nodes sharing the Redis channel layer, 2 Celery workers + beat, the MLLP listener, the demo FHIR server with
the demo patients), generated into a temporary directory on free ports and started here under honcho, on a
scratch database of its own (`careline_bench_surge`, dropped, migrated, `seed_demo`) and the first empty Redis
database of 10-15 (its channel layer, cache and Celery broker; flushed at the end). The demo EHR keeps its data
in the temporary directory (the Procfile's `run_demo_ehr` gets `--data-dir`). Everything is stopped at the end.

Normal arrival rate: the demo clinic's design load, the one `manage.py tune_priority` sizes a clinic for by
default: 4 nurses, 12 min mean handle time (`triage.selectors.DEFAULT_HANDLE_SECONDS`), offered load 0.90,
i.e. 0.90 x 4 x 60 / 12 = 18 calls/hour. The surge is 10x that (180 calls/hour, offered load 9: far past
capacity) for 15 simulated minutes: Poisson arrivals (seeded), ~45 callers, level mix of the nurse-line
scenario (12/30/36/20 % for levels 2-5, chosen by the answers to the abdominal-pain protocol).

Simulated time runs `--factor` times faster than real time (default 10: 15 simulated minutes in 90 real
seconds): arrival gaps, the caller's time per prompt (8 s simulated: listening and pressing keys), Twilio's
waitUrl re-requests while holding (every 30 s simulated), the caller's patience on hold (exponential, mean 10
simulated minutes, cut 10 real seconds after the last arrival; then they hang up: `<Enqueue action>`
QueueResult=hangup and the status callback) and the
nurses' handle time (12 simulated minutes) are all divided by it. Webhook latencies are real: the budget is 2 s
of real time (Twilio's answer budget does not shrink with the simulation).

Meanwhile `--nurses` nurses (API tokens obtained with password + TOTP through the proxy) each take the next
case (`POST /api/v1/cases/next/`), accept it, hold it for the handle time and record a disposition, until the
arrivals end. A supervisor signs in through the proxy with password and TOTP (the real pages) and fetches the
real dashboard (`/console/dashboard/`) every 2 s: queue discipline mode, offered load and the overload banner
("Overload: strict priority.") as rendered. The dashboard's estimate (`triage.selectors.queue_discipline`) is
last hour's arrivals x mean handle time / nurses holding cases; it passes the clinic's `overload_threshold`
(0.95) once ~19 cases have arrived with 4 nurses busy.

Checks (PASS only if all hold): every webhook answered 200/204 within 2 s (max and p99 printed); every caller
who reached `<Enqueue>` has exactly one case in PostgreSQL (its call leg's case, found by the waitUrl's case
uuid; 0 lost, 0 duplicated, and no other voice case); the dashboard showed accumulating priority before the
surge and the strict-priority banner from the first fetch after its own estimate passed the threshold to the
end of the surge. Writes `surge` into bench/figures.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
REDIS_BASE = os.environ.get("REDIS_BASE", "redis://127.0.0.1:6379")

from ivrcaller import live_bench_setup  # noqa: E402

REDIS_DB = live_bench_setup("surge", REDIS_BASE, LOG_FORMAT="json")

import logging  # noqa: E402

import httpx  # noqa: E402
import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from figures import record  # noqa: E402
from ivrcaller import Caller, percentile, stop_group  # noqa: E402

from clinics import db_scope  # noqa: E402
from clinics.models import Clinic  # noqa: E402
from clinics.services import staff_create  # noqa: E402
from ivr.models import CallLeg  # noqa: E402
from tests.conftest import current_totp  # noqa: E402
from tests.fixtures.fhir_server import free_port  # noqa: E402
from triage.models import Case  # noqa: E402
from triage.selectors import DEFAULT_HANDLE_SECONDS  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise

BUDGET_SECONDS = 2.0  # no webhook over 2 s (issue 7)
CLINIC_NUMBER = "+15550100100"  # the demo clinic (contactcenter seed_demo)
DEMO_PATIENTS = ROOT / "ehr" / "demo_data" / "patients"
# Answers to the abdominal-pain protocol (ab-shock, ab-severe, ab-right, ab-vomit) -> level, and the level mix
# of the nurse-line scenario (bench/nurse_line.py): 12/30/36/20 % for levels 2-5.
ANSWERS = {2: ("2", "1"), 3: ("2", "2", "1"), 4: ("2", "2", "2", "1"), 5: ("2", "2", "2", "2")}
MIX = {2: 12, 3: 30, 4: 36, 5: 20}
PROMPT_SECONDS = 8.0  # simulated time a caller spends on one prompt (listening, pressing keys)
WAIT_POLL_SECONDS = 30.0  # Twilio re-requests the waitUrl when the hold announcement ends
PATIENCE_SECONDS = 600.0  # mean time a caller holds before hanging up (exponential)
STRICT_BANNER = "Overload: strict priority."
# Real seconds after the last arrival at which callers still holding hang up (keeps the run within ~4 min).
HANG_UP_AFTER_SURGE_SECONDS = 10.0


def demo_identities() -> list[tuple[str, str]]:
    """(E.164 phone, MMDDYYYY birth date) of the demo patients: callers the EHR search identifies."""
    import json

    index = json.loads((DEMO_PATIENTS / "index.json").read_text())
    result = []
    for patient in index["patients"]:
        year, month, day = patient["birthDate"].split("-")
        result.append(("+1" + patient["phones"][0].replace("-", ""), f"{month}{day}{year}"))
    return result


def arrivals(rate_per_hour: float, minutes: float, rng: random.Random) -> list[float]:
    """Poisson arrival times (simulated seconds from 0) at `rate_per_hour` over `minutes`."""
    times, t = [], 0.0
    while True:
        t += rng.expovariate(rate_per_hour / 3600.0)
        if t >= minutes * 60:
            return times
        times.append(t)


def start_topology(workdir: Path, ports: dict[str, int], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`manage.py topology_config` into `workdir` (as scripts/up-scaled.sh does), the demo EHR's data moved into
    `workdir`, then honcho on the Procfile in its own process group (output to workdir/honcho.log)."""
    call_command(
        "topology_config",
        out=str(workdir),
        web_nodes=2,
        port=ports["proxy"],
        first_web_port=ports["web"],
        fhir_port=ports["fhir"],
        mllp_port=ports["mllp"],
        stdout=open(os.devnull, "w"),  # noqa: SIM115
    )
    procfile = workdir / "Procfile"
    text = procfile.read_text()
    ehr = f"run_demo_ehr --port {ports['fhir']}"
    assert ehr in text, "ops.topology's Procfile no longer runs run_demo_ehr as expected"
    procfile.write_text(text.replace(ehr, f"{ehr} --data-dir {workdir / 'ehr'}"))
    log = open(workdir / "honcho.log", "wb")  # noqa: SIM115 - closed by the child's exit
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("honcho")), "--procfile", str(procfile), "--app-root", str(ROOT), "start"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def make_nurses(clinic: Clinic, count: int, password: str) -> list[str]:
    """`count` nurses of `clinic` enrolled in TOTP; their usernames."""
    names = []
    for i in range(count):
        member = staff_create(clinic=clinic, role="nurse", username=f"surge-nurse-{i + 1}", password=password)
        current_totp(member.user)  # creates the confirmed TOTP device
        names.append(member.user.get_username())
    return names


def totp_for(username: str) -> str:
    """The current TOTP code of `username` (its replay guard reset: several sign-ins in one 30 s step)."""
    from django.contrib.auth import get_user_model

    with db_scope.system_scope():
        return current_totp(get_user_model().objects.get(username=username))


async def api_token(client: httpx.AsyncClient, username: str, password: str) -> str:
    """A DRF token for `username` (password + TOTP) from `POST /api/v1/auth/token/`."""
    code = await asyncio.to_thread(totp_for, username)
    response = await client.post(
        "/api/v1/auth/token/", json={"username": username, "password": password, "otp_token": code}
    )
    response.raise_for_status()
    return str(response.json()["token"])


def _csrf(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    if not found:
        raise RuntimeError("no CSRF token in the sign-in page")
    return found.group(1)


async def supervisor_session(client: httpx.AsyncClient, username: str, password: str) -> None:
    """Sign `client` in as `username` the way a browser does: login form, then the TOTP step."""
    page = await client.get("/accounts/login/", params={"next": "/console/dashboard/"})
    response = await client.post(
        "/accounts/login/",
        data={
            "username": username,
            "password": password,
            "next": "/console/dashboard/",
            "csrfmiddlewaretoken": _csrf(page.text),
        },
    )
    if response.status_code != 302:
        raise RuntimeError(f"supervisor sign-in: HTTP {response.status_code}")
    # Signed in with the password only: the page asked for sends the session to the TOTP step.
    response = await client.get(response.headers["location"])
    if response.status_code != 302 or "/accounts/otp/" not in response.headers.get("location", ""):
        raise RuntimeError(f"supervisor sign-in: no TOTP step (HTTP {response.status_code})")
    page = await client.get(response.headers["location"])
    code = await asyncio.to_thread(totp_for, username)
    response = await client.post(
        "/accounts/otp/",
        data={"otp_token": code, "next": "/console/dashboard/", "csrfmiddlewaretoken": _csrf(page.text)},
    )
    if response.status_code != 302:
        raise RuntimeError(f"supervisor TOTP step: HTTP {response.status_code}")


def read_dashboard(html: str) -> dict[str, object]:
    """Mode, offered load and whether the strict-priority banner is on the rendered dashboard page."""
    mode = re.search(r'id="panel-discipline"[^>]*data-mode="([^"]+)"', html)
    load = re.search(r'id="offered-load">([^<]+)<', html)
    return {
        "mode": mode.group(1) if mode else "",
        "offered_load": float(load.group(1)) if load else math.nan,
        "banner": STRICT_BANNER in html,
    }


class Scenario:
    """The surge run's shared state: callers, dashboard samples, nurse actions, all stamped in real seconds."""

    def __init__(self, args: argparse.Namespace, base: str) -> None:
        self.args = args
        self.base = base
        self.t0 = 0.0
        self.callers: list[Caller] = []
        self.samples: list[tuple[float, int, dict[str, object]]] = []  # (t, cases arrived, dashboard)
        self.claims = 0
        self.closed = 0
        self.nurse_errors: list[str] = []
        self.arrivals_done = asyncio.Event()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def caller(self, client: httpx.AsyncClient, at: float, identity: tuple[str, str], level: int) -> None:
        factor = self.args.factor
        await asyncio.sleep(max(0.0, at / factor - self.now()))
        rng = random.Random(f"{self.args.seed}-{at}")
        patience = rng.expovariate(1 / PATIENCE_SECONDS) / factor
        caller = Caller(
            client=client,
            public_base=self.base,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            from_number=identity[0],
            to_number=CLINIC_NUMBER,
            dob=identity[1],
            answers=ANSWERS[level],
            think_time=PROMPT_SECONDS / factor,
            wait_interval=WAIT_POLL_SECONDS / factor,
            wait_polls=max(1, math.ceil(patience / (WAIT_POLL_SECONDS / factor))),
            hold_deadline=self.t0 + self.args.minutes * 60 / factor + HANG_UP_AFTER_SURGE_SECONDS,
        )
        self.callers.append(caller)
        await caller.call()

    async def nurse(self, client: httpx.AsyncClient, token: str, disposition: str) -> None:
        headers = {"Authorization": f"Token {token}"}
        handle = DEFAULT_HANDLE_SECONDS / self.args.factor
        while not self.arrivals_done.is_set():
            response = await client.post("/api/v1/cases/next/", headers=headers)
            if response.status_code == 204:
                await asyncio.sleep(1.0)
                continue
            if response.status_code != 200:
                self.nurse_errors.append(f"next: HTTP {response.status_code}")
                await asyncio.sleep(1.0)
                continue
            case_id = response.json()["id"]
            self.claims += 1
            accepted = await client.post(f"/api/v1/cases/{case_id}/accept/", headers=headers)
            if accepted.status_code != 200:
                self.nurse_errors.append(f"accept: HTTP {accepted.status_code}")
            try:
                await asyncio.wait_for(self.arrivals_done.wait(), timeout=handle)
                return  # the surge is over: the case stays with the nurse
            except TimeoutError:
                pass
            closed = await client.post(
                f"/api/v1/cases/{case_id}/disposition/",
                headers=headers,
                json={"disposition": disposition, "note": "surge bench"},
            )
            if closed.status_code == 200:
                self.closed += 1
            else:
                self.nurse_errors.append(f"disposition: HTTP {closed.status_code}")

    async def dashboard(self, client: httpx.AsyncClient, until: asyncio.Event) -> None:
        while True:
            response = await client.get("/console/dashboard/")
            if response.status_code != 200:
                raise RuntimeError(f"dashboard: HTTP {response.status_code}")
            arrived = await asyncio.to_thread(cases_arrived)
            self.samples.append((self.now(), arrived, read_dashboard(response.text)))
            if until.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), timeout=2.0)


def cases_arrived() -> int:
    """Cases of the demo clinic in PostgreSQL now (every state)."""
    with db_scope.system_scope():
        return Case.objects.filter(clinic__twilio_number=CLINIC_NUMBER).count()


async def run(args: argparse.Namespace, base: str, nurses: list[str], password: str) -> Scenario:
    scenario = Scenario(args, base)
    rng = random.Random(args.seed)
    times = arrivals(args.normal_per_hour * args.surge, args.minutes, rng)
    identities = demo_identities()
    levels = rng.choices(list(MIX), weights=list(MIX.values()), k=len(times))
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with (
        httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as phones,
        httpx.AsyncClient(base_url=base, timeout=30) as staff_api,
        httpx.AsyncClient(base_url=base, timeout=30) as browser,
    ):
        await supervisor_session(browser, "supervisor", os.environ.get("CARELINE_DEMO_PASSWORD", "careline-demo"))
        tokens = [await api_token(staff_api, name, password) for name in nurses]
        codes = (await staff_api.get("/api/v1/dispositions/", headers={"Authorization": f"Token {tokens[0]}"})).json()
        disposition = (codes["results"] if isinstance(codes, dict) else codes)[0]["code"]
        print(f"  {len(times)} callers over {args.minutes} simulated min; {len(nurses)} nurses; supervisor signed in")
        surge_over = asyncio.Event()
        scenario.t0 = time.monotonic()
        board = asyncio.create_task(scenario.dashboard(browser, surge_over))
        nurse_tasks = [asyncio.create_task(scenario.nurse(staff_api, t, disposition)) for t in tokens]
        callers = [
            asyncio.create_task(scenario.caller(phones, at, identities[i % len(identities)], levels[i]))
            for i, at in enumerate(times)
        ]
        await asyncio.sleep(args.minutes * 60 / args.factor)
        scenario.arrivals_done.set()
        await asyncio.sleep(2.5)  # one more dashboard fetch with the surge's last arrivals counted
        surge_over.set()
        await board
        await asyncio.gather(*nurse_tasks)
        await asyncio.gather(*callers)  # callers still holding hang up after their patience
    return scenario


def check_cases(callers: list[Caller]) -> dict[str, int]:
    """Lost / duplicated cases: each caller that reached `<Enqueue>` against PostgreSQL (module docstring)."""
    enqueued = [c for c in callers if c.outcome == "enqueued"]
    with db_scope.system_scope():
        legs = dict(
            CallLeg.objects.filter(call_sid__in=[c.call_sid for c in callers]).values_list("call_sid", "case_id")
        )
        by_uuid = {str(u): pk for u, pk in Case.objects.values_list("uuid", "pk")}
        voice_cases = Case.objects.filter(channel=Case.Channel.VOICE).count()
    found = [
        c for c in enqueued if by_uuid.get(c.case_uuid) is not None and by_uuid[c.case_uuid] == legs.get(c.call_sid)
    ]
    case_ids = [legs.get(c.call_sid) for c in found]
    transferred = sum(1 for c in callers if c.outcome == "transferred")
    return {
        "enqueued": len(enqueued),
        "lost": len(enqueued) - len(found),
        "duplicated": len(case_ids) - len(set(case_ids)),
        "voice_cases": voice_cases,
        "transferred": transferred,
        "other_cases": voice_cases - len(set(case_ids)) - transferred,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", type=float, default=10.0, help="simulated seconds per real second")
    parser.add_argument("--normal-per-hour", type=float, default=18.0, help="the demo clinic's normal arrivals")
    parser.add_argument("--surge", type=float, default=10.0, help="surge multiple of the normal rate")
    parser.add_argument("--minutes", type=float, default=15.0, help="simulated minutes of surge")
    parser.add_argument("--nurses", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    started = time.monotonic()
    call_command("migrate", verbosity=0)
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    password = secrets.token_urlsafe(12)
    with db_scope.system_scope():
        clinic = Clinic.objects.get(twilio_number=CLINIC_NUMBER)
        threshold = clinic.overload_threshold
        nurses = make_nurses(clinic, args.nurses, password)
    honcho: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(3):  # a free port picked here may be taken by another process before a node binds it
            ports = pick_ports()
            base = f"http://127.0.0.1:{ports['proxy']}"
            workdir = Path(tempfile.mkdtemp(prefix="careline-bench-surge-"))
            env = {
                **os.environ,
                "PUBLIC_BASE_URL": base,
                "FHIR_BASE_URL": f"http://127.0.0.1:{ports['fhir']}/fhir",
                "PYTHONUNBUFFERED": "1",
            }
            print(
                f"  scaled topology in {workdir}: proxy {base}, web {ports['web']}-{ports['web'] + 1}, "
                f"EHR {ports['fhir']}, MLLP {ports['mllp']}, Redis db {REDIS_DB}"
            )
            honcho = start_topology(workdir, ports, env)
            if asyncio.run(wait_ready(base, f"http://127.0.0.1:{ports['fhir']}/fhir", honcho, timeout=240)):
                break
            print(f"  a process of the topology exited while starting (see {workdir / 'honcho.log'}); again")
            stop_group(honcho)
        else:
            raise RuntimeError("the scaled topology did not start in 3 attempts")
        print(f"  topology ready after {time.monotonic() - started:.0f} s")
        scenario = asyncio.run(run(args, base, nurses, password))
    finally:
        if honcho is not None:
            stop_group(honcho)
        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # found empty at the start: ours alone

    callers = scenario.callers
    latencies = [seconds for c in callers for _, seconds in c.latencies]
    failed = [c.outcome for c in callers if c.outcome.startswith("failed")]
    over = sum(1 for s in latencies if s > BUDGET_SECONDS)
    cases = check_cases(callers)
    # Dashboard: accumulating before any arrival; strict from the first fetch after the estimate passed the
    # threshold (as the page itself printed it) to the end of the surge.
    samples = scenario.samples
    first = samples[0][2]
    shown = [i for i, (_, _, d) in enumerate(samples) if d["banner"]]
    strict_from = shown[0] if shown else None
    banner_ok = (
        not first["banner"]
        and first["mode"] == "accumulating"
        and strict_from is not None
        # once shown it stays to the end of the surge, and only with the page's own load at/above the threshold
        and all(
            bool(d["banner"]) and d["mode"] == "strict" and float(d["offered_load"]) >= threshold
            for _, _, d in samples[strict_from:]
        )
        # and never before the page's load reached the threshold
        and all(float(d["offered_load"]) < threshold and d["mode"] == "accumulating" for *_, d in samples[:strict_from])
    )
    max_ms = max(latencies) * 1000
    p99_ms = percentile(latencies, 99) * 1000
    ok = over == 0 and not failed and cases["lost"] == 0 and cases["duplicated"] == 0 and banner_ok
    elapsed = time.monotonic() - started
    print(
        f"surge: {args.normal_per_hour:g} calls/h normal x {args.surge:g} for {args.minutes:g} simulated min "
        f"(time x {args.factor:g}: {args.minutes * 60 / args.factor:.0f} real s), {len(callers)} callers, "
        f"{args.nurses} nurses, 2 daphne nodes behind HAProxy"
    )
    print(
        f"webhooks: {len(latencies)}, p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {p99_ms:.0f} ms, "
        f"max {max_ms:.0f} ms; over {BUDGET_SECONDS:g} s: {over}; failed calls: {len(failed)}"
        + (f" (first: {failed[0]})" if failed else "")
    )
    by_kind: dict[str, list[float]] = {}
    for c in callers:
        for kind, seconds in c.latencies:
            by_kind.setdefault(kind, []).append(seconds * 1000)
    print(
        "  per webhook p99 / max ms: "
        + ", ".join(f"{k} {percentile(v, 99):.0f}/{max(v):.0f}" for k, v in by_kind.items())
    )
    print(
        f"cases: {cases['enqueued']} callers reached <Enqueue>; lost {cases['lost']}, duplicated "
        f"{cases['duplicated']}; {cases['transferred']} transferred (red flag); voice cases in PostgreSQL "
        f"{cases['voice_cases']} ({cases['other_cases']} unaccounted for)"
    )
    print(f"nurses: {scenario.claims} claims, {scenario.closed} closed, errors {scenario.nurse_errors[:3]}")
    print("dashboard (real s, cases arrived, mode, offered load, banner):")
    for t, arrived, d in samples:
        banner = "BANNER" if d["banner"] else ""
        print(f"  {t:6.1f} s  {arrived:3d}  {d['mode']:<12} {float(d['offered_load']):5.2f}  {banner}")
    switch = samples[strict_from] if strict_from is not None else None
    print(
        "strict priority shown from "
        + (f"{switch[0]:.1f} s ({switch[1]} cases arrived)" if switch else "never")
        + f"; threshold {threshold}; banner check: {'PASS' if banner_ok else 'FAIL'}"
    )
    print(f"surge: {'PASS' if ok else 'FAIL'} ({elapsed:.0f} s in all, load average {os.getloadavg()[0]:.1f})")
    record(
        "surge",
        {
            "factor": args.factor,
            "normal_per_hour": args.normal_per_hour,
            "surge_multiple": args.surge,
            "simulated_minutes": args.minutes,
            "callers": len(callers),
            "nurses": args.nurses,
            "webhooks": len(latencies),
            "webhook_p99_ms": round(p99_ms, 1),
            "webhook_max_ms": round(max_ms, 1),
            "webhooks_over_budget": over,
            "budget_ms": BUDGET_SECONDS * 1000,
            "failed_calls": len(failed),
            "enqueued": cases["enqueued"],
            "cases_lost": cases["lost"],
            "cases_duplicated": cases["duplicated"],
            "strict_shown_at_s": round(switch[0], 1) if switch else None,
            "strict_shown_at_cases": switch[1] if switch else None,
            "dashboard_banner_ok": banner_ok,
            "pass": ok,
        },
    )


def pick_ports() -> dict[str, int]:
    """Free loopback ports for the proxy, the EHR, MLLP and two consecutive ones for the web nodes."""
    ports = {"proxy": free_port(), "fhir": free_port(), "mllp": free_port()}
    ports["web"] = next(p for p in (free_port() for _ in range(50)) if p + 1 not in ports.values() and _free(p + 1))
    return ports


async def wait_ready(base: str, fhir_base: str, honcho: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once the proxy answers `/readyz` 200 and the demo EHR holds every demo patient; False as soon as
    honcho exits (one of its processes died, e.g. a port taken meanwhile). RuntimeError after `timeout` s."""
    import json

    expected = len(json.loads((DEMO_PATIENTS / "index.json").read_text())["patients"])
    deadline = time.monotonic() + timeout
    ready = False
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if honcho.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                if not ready:
                    ready = (await client.get(f"{base}/readyz", timeout=5)).status_code == 200
                if ready:
                    response = await client.get(f"{fhir_base}/Patient", params={"_summary": "count"}, timeout=10)
                    if int(response.json()["total"]) >= expected:
                        return True
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the scaled topology was not ready in {timeout} s")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


if __name__ == "__main__":
    main()
