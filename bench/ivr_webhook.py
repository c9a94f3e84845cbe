"""IVR webhook: 50 concurrent callers through the full call flow, vs a trivial Django view on the same daphne.

Usage: `.venv/bin/python bench/ivr_webhook.py [--callers 50] [--calls 2] [--rounds 2] [--port 0]`

Project: one daphne (`careline.asgi:application` on 127.0.0.1, a free port unless `--port`) on its own
scratch database `careline_bench_ivr` (dropped, migrated and seeded with `seed_demo`: the demo clinic, its
protocol library) and its own Redis database (the first empty one of 10-15; flushed at the end: Celery tasks
the webhooks queue go there and no worker runs them), with `FHIR_BASE_URL` pointing at a `sekmet-fhir` started
here on a free port and loaded with the demo patients (`ehr/demo_data/patients/`), so the language step's
patient search by phone and the birth-date step run against a real EHR. `--callers` callers (asyncio tasks
sharing one httpx client) each place `--calls` calls one after the other, every call the whole flow of
`bench/ivrcaller.py` (12 signed webhooks: answer, language, birth date, audience, protocol, 3 questions,
contact, `<Enqueue>` waitUrl, `<Enqueue action>` hang-up, status callback). The callers are the demo
patients' phones, each pressing its patient's birth date (identified: the case carries the patient).

Floor: the same `--callers` tasks on the same httpx client, each sending the same number of requests, to
`GET /` on the same daphne: `RedirectView` (Django's generic view; 302 to the console, no database, no
template). Why this view and not `/healthz`: a Twilio webhook is a sync Django view behind the whole
middleware stack (request id, security headers, CSP, WhiteNoise, sessions, CSRF, auth, clinic scope, OTP,
axes, Prometheus) and daphne's hop to the one thread that runs sync views; `/` pays all of that and nothing
else. `/healthz` is answered by the first middleware, async, without that hop: it is measured too and printed
for reference (the cost of daphne + ASGI alone), but the goal is judged against `/`.

Rounds alternate floor and project (`--rounds` of each, after one untimed warm-up call per caller and
warm-up floor requests), so both see the machine's load of the same minutes. Prints p50/p99 (ms) of every
request of each, per-webhook p99, the ratio of the p99s, and that every call reached `<Enqueue>` with exactly
one case in PostgreSQL. Goal (issue 7): project p99 <= 3 x floor p99. Writes `ivr_webhook` into
bench/figures.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
REDIS_BASE = os.environ.get("REDIS_BASE", "redis://127.0.0.1:6379")


from ivrcaller import live_bench_setup  # noqa: E402

REDIS_DB = live_bench_setup("ivr", REDIS_BASE)

import logging  # noqa: E402

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from figures import record  # noqa: E402
from ivrcaller import Caller, percentile, stop_group, wait_http  # noqa: E402

from clinics import db_scope  # noqa: E402
from ivr.models import CallLeg  # noqa: E402
from tests.fixtures.fhir_server import FhirServer, free_port  # noqa: E402
from triage.models import Case  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise

GOAL = 3.0  # project p99 <= 3 x floor p99
DEMO_PATIENTS = ROOT / "ehr" / "demo_data" / "patients"
CLINIC_NUMBER = "+15550100100"  # the demo clinic (contactcenter seed_demo)


def demo_callers() -> list[tuple[str, str]]:
    """(E.164 phone, birth date MMDDYYYY) of each demo patient: the phone the EHR search finds them by."""
    import json

    index = json.loads((DEMO_PATIENTS / "index.json").read_text())
    result = []
    for patient in index["patients"]:
        year, month, day = patient["birthDate"].split("-")
        result.append(("+1" + patient["phones"][0].replace("-", ""), f"{month}{day}{year}"))
    return result


def start_daphne(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """daphne on 127.0.0.1:`port` (own process group), stderr to `log_path`."""
    log = open(log_path, "wb")  # noqa: SIM115 - closed by the child's exit; never a pipe (it would fill)
    return subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "careline.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )


async def floor_phase(client: httpx.AsyncClient, path: str, workers: int, per_worker: int) -> list[float]:
    """`workers` tasks each sending `per_worker` GETs of `path` one after the other; latencies in seconds."""
    latencies: list[float] = []

    async def worker() -> None:
        for _ in range(per_worker):
            started = time.perf_counter()
            response = await client.get(path)
            latencies.append(time.perf_counter() - started)
            if response.status_code not in (200, 302):
                raise RuntimeError(f"floor {path}: HTTP {response.status_code}")

    await asyncio.gather(*(worker() for _ in range(workers)))
    return latencies


async def project_phase(client: httpx.AsyncClient, base: str, callers: int, calls: int) -> list[Caller]:
    """`callers` tasks each placing `calls` calls one after the other; the finished `Caller`s."""
    identities = demo_callers()
    done: list[Caller] = []

    async def one(index: int) -> None:
        phone, dob = identities[index % len(identities)]
        for _ in range(calls):
            caller = Caller(
                client=client,
                public_base=base,
                auth_token=settings.TWILIO_AUTH_TOKEN,
                from_number=phone,
                to_number=CLINIC_NUMBER,
                dob=dob,
            )
            await caller.call()
            done.append(caller)

    await asyncio.gather(*(one(i) for i in range(callers)))
    return done


def summary(values: list[float]) -> dict[str, float]:
    """p50 / p99 / max in ms of latencies given in seconds, and their count."""
    ms = [v * 1000 for v in values]
    return {"p50_ms": statistics.median(ms), "p99_ms": percentile(ms, 99), "max_ms": max(ms), "n": len(ms)}


async def run(args: argparse.Namespace, base: str) -> dict:
    limits = httpx.Limits(max_connections=args.callers + 10, max_keepalive_connections=args.callers + 10)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        # Warm-up (not measured): every caller's first call, floor requests on both views.
        warm = await project_phase(client, base, args.callers, 1)
        failed = [c.outcome for c in warm if c.outcome != "enqueued"]
        if failed:
            raise RuntimeError(f"warm-up calls failed: {failed[:3]}")
        await floor_phase(client, "/", args.callers, 3)
        await floor_phase(client, "/healthz", args.callers, 3)
        per_call = len(warm[0].latencies)
        floor: list[float] = []
        healthz: list[float] = []
        callers: list[Caller] = []
        for number in range(args.rounds):
            started = time.perf_counter()
            floor += await floor_phase(client, "/", args.callers, per_call * args.calls)
            healthz += await floor_phase(client, "/healthz", args.callers, per_call * args.calls)
            middle = time.perf_counter()
            callers += await project_phase(client, base, args.callers, args.calls)
            print(
                f"  round {number + 1}: floor {middle - started:.1f} s, "
                f"project {time.perf_counter() - middle:.1f} s ({os.getloadavg()[0]:.1f} load)"
            )
    return {"floor": floor, "healthz": healthz, "callers": callers, "warm": warm}


def check_cases(callers: list[Caller]) -> tuple[int, int, int]:
    """(calls that reached `<Enqueue>`, of those with exactly one case of their CallSid, cases duplicated)."""
    enqueued = [c for c in callers if c.outcome == "enqueued"]
    with db_scope.system_scope():
        legs = dict(
            CallLeg.objects.filter(call_sid__in=[c.call_sid for c in enqueued]).values_list("call_sid", "case_id")
        )
        cases = set(Case.objects.filter(uuid__in=[c.case_uuid for c in enqueued]).values_list("uuid", "pk"))
    by_uuid = {str(u): pk for u, pk in cases}
    ok = sum(1 for c in enqueued if legs.get(c.call_sid) and by_uuid.get(c.case_uuid) == legs.get(c.call_sid))
    duplicated = len(enqueued) - len({legs.get(c.call_sid) for c in enqueued})
    return len(enqueued), ok, duplicated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--calls", type=int, default=2, help="measured calls per caller and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port", type=int, default=0, help="daphne port (0: a free one)")
    args = parser.parse_args()

    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    call_command("migrate", verbosity=0)
    call_command("seed_demo", base_url=base, stdout=open(os.devnull, "w"))  # noqa: SIM115
    workdir = Path(tempfile.mkdtemp(prefix="careline-bench-ivr-"))
    fhir = FhirServer(workdir=workdir / "sekmet", port=free_port())
    daphne = None
    try:
        fhir.start()
        fhir.load_bundles(DEMO_PATIENTS)
        env = {**os.environ, "PUBLIC_BASE_URL": base, "FHIR_BASE_URL": fhir.base_url}
        log_path = workdir / "daphne.log"
        print(f"  daphne on {base} (log {log_path}), sekmet-fhir on {fhir.base_url}, Redis db {REDIS_DB}")
        daphne = start_daphne(port, env, log_path)
        asyncio.run(wait_http(f"{base}/readyz"))
        results = asyncio.run(run(args, base))
    finally:
        if daphne is not None:
            stop_group(daphne)
        fhir.stop()
        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()  # found empty at the start: ours alone

    callers: list[Caller] = results["callers"]
    failed = [c.outcome for c in callers if c.outcome != "enqueued"]
    enqueued, with_case, duplicated = check_cases(callers + results["warm"])
    project = summary([seconds for c in callers for _, seconds in c.latencies])
    floor = summary(results["floor"])
    healthz = summary(results["healthz"])
    by_kind: dict[str, list[float]] = defaultdict(list)
    for c in callers:
        for kind, seconds in c.latencies:
            by_kind[kind].append(seconds)
    ratio = project["p99_ms"] / floor["p99_ms"]
    ok = ratio <= GOAL and not failed and with_case == enqueued and duplicated == 0
    print(
        f"{args.callers} concurrent callers x {args.calls} calls x {args.rounds} rounds "
        f"({len(callers)} calls, {project['n']} webhooks), one daphne, {os.cpu_count()} CPUs"
    )
    for label, figures in (
        ("floor   GET / (RedirectView, full middleware)", floor),
        ("ref.    GET /healthz (first middleware, async)", healthz),
        ("project IVR webhooks (signed, full flow)     ", project),
    ):
        print(
            f"{label}: p50 {figures['p50_ms']:7.1f} ms  p99 {figures['p99_ms']:7.1f} ms  "
            f"max {figures['max_ms']:7.1f} ms  ({figures['n']} requests)"
        )
    print("  per webhook p50 / p99 ms: " + ", ".join(
        f"{kind} {statistics.median(v) * 1000:.0f}/{percentile(v, 99) * 1000:.0f}" for kind, v in by_kind.items()
    ))  # fmt: skip
    print(
        f"calls: {len(callers)} measured + {len(results['warm'])} warm-up; reached <Enqueue> {enqueued}, "
        f"with exactly their one case {with_case}, duplicated {duplicated}, failed {len(failed)}"
        + (f" (first: {failed[0]})" if failed else "")
    )
    print(f"ratio p99 project/floor: {ratio:.2f} (goal <= {GOAL}): {'PASS' if ok else 'FAIL'}")
    print(f"  (vs /healthz p99: {project['p99_ms'] / healthz['p99_ms']:.2f})")
    record(
        "ivr_webhook",
        {
            "callers": args.callers,
            "calls": len(callers),
            "webhooks": project["n"],
            "floor_view": "GET / (RedirectView)",
            "floor_p50_ms": round(floor["p50_ms"], 1),
            "floor_p99_ms": round(floor["p99_ms"], 1),
            "healthz_p50_ms": round(healthz["p50_ms"], 1),
            "healthz_p99_ms": round(healthz["p99_ms"], 1),
            "project_p50_ms": round(project["p50_ms"], 1),
            "project_p99_ms": round(project["p99_ms"], 1),
            "project_max_ms": round(project["max_ms"], 1),
            "ratio_p99": round(ratio, 3),
            "goal_ratio_max": GOAL,
            "failed_calls": len(failed),
            "cases_lost_or_duplicated": (enqueued - with_case) + duplicated,
            "pass": ok,
        },
    )


if __name__ == "__main__":
    main()
