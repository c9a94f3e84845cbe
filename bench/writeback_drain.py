"""Write-back drain: outcomes/s from the outbox into a real FHIR server vs posting the same bundles directly.

Usage: `.venv/bin/python bench/writeback_drain.py [--outcomes 300] [--workers 4] [--port 26091]`

Starts `sekmet-fhir` on 127.0.0.1:--port (its own scratch data directory) and creates one Patient.
Floor: --workers threads POST the transaction Bundles `ehr.fhir.writeback.build_bundle` makes for
--outcomes outcomes straight to the server (`requests`, one session per thread), checking every entry is 2xx.
Project: the same number of other outcomes (distinct case UUIDs, same shape) go into the outbox with
`ehr.services.writeback_enqueue` (the call `record_disposition` makes); then --workers threads drain it with
`ehr.services.writeback_send`, the function the Celery task runs (lease, build, conditional-create
transaction, state `sent` with the server's answer), one row after another as Celery workers with
`--concurrency=<workers>` would. Celery's own broker hop is not measured (the dispatch on commit is
switched off here); the worker-kill case is `tests/ehr/test_outbox_reliability.py`.
Goal (issue 7): project outcomes/s >= 80 % of the floor's. Writes `writeback_drain` into bench/figures.json.
Scratch database `careline_bench_writeback` (dropped and created per run).
"""

from __future__ import annotations

import argparse
import base64
import os
import queue
import secrets
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PORT_DEFAULT = 26091
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/careline_bench_writeback")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings.base")
os.environ.setdefault("CARELINE_DEMO", "false")
os.environ.setdefault("DJANGO_DEBUG", "false")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "bench:" + base64.b64encode(secrets.token_bytes(32)).decode())
os.environ.pop("HL7_MLLP_HOST", None)  # FHIR only: the figure is the FHIR drain


def _port() -> int:
    if "--port" in sys.argv:
        return int(sys.argv[sys.argv.index("--port") + 1])
    return PORT_DEFAULT


os.environ["FHIR_BASE_URL"] = f"http://127.0.0.1:{_port()}/fhir"
os.environ.setdefault("FHIR_CIRCUIT_FAILURE_THRESHOLD", "0")

from benchdb import fresh_database  # noqa: E402
from figures import record  # noqa: E402

fresh_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from clinics.services import clinic_create  # noqa: E402
from ehr import services as ehr_services  # noqa: E402
from ehr.fhir.writeback import build_bundle  # noqa: E402
from ehr.models import WriteBack  # noqa: E402
from ehr.types import Outcome  # noqa: E402
from tests.fixtures.fhir_server import start_sekmet, stop_process  # noqa: E402

GOAL = 0.8


def outcome(patient_id: str, n: int) -> Outcome:
    ended = datetime.now(UTC)
    return Outcome(
        case_uuid=str(uuid.uuid4()),
        case_id=n,
        clinic_slug="bench",
        clinic_name="Bench",
        patient_fhir_id=patient_id,
        patient_display="Bench Patient",
        started_at=ended - timedelta(minutes=20),
        ended_at=ended,
        acuity=3,
        disposition_code="home-care",
        disposition_display="Home care",
        note="Advice given: fluids, rest, call back if worse.",
        nurse_username="bench-nurse",
        nurse_display="Bench Nurse",
        protocol_code="fever",
        protocol_title="Fever",
        protocol_version="1",
    )


def drain(workers: int, items: list, work) -> float:
    todo: queue.Queue = queue.Queue()
    for item in items:
        todo.put(item)
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers + 1)

    def worker() -> None:
        state: dict = {}
        barrier.wait()
        try:
            while True:
                try:
                    item = todo.get_nowait()
                except queue.Empty:
                    return
                work(item, state)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outcomes", type=int, default=300)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--port", type=int, default=PORT_DEFAULT)
    args = parser.parse_args()
    base = os.environ["FHIR_BASE_URL"]

    call_command("migrate", verbosity=0)
    clinic = clinic_create(slug="bench", name="Bench", twilio_number="+15550109999", on_call_number="+15550109998")
    workdir = Path(tempfile.mkdtemp(prefix="careline-bench-fhir-"))
    sekmet = start_sekmet(
        workdir, args.port, {"base_url": base, "host": "127.0.0.1", "port": args.port, "data_dir": str(workdir)}
    )
    try:
        reply = requests.post(
            f"{base}/Patient",
            json={"resourceType": "Patient", "name": [{"family": "Bench", "given": ["Patient"]}]},
            headers={"Content-Type": "application/fhir+json"},
            timeout=30,
        )
        reply.raise_for_status()
        patient_id = reply.json()["id"]

        # Warm-up (not measured): one bundle each way.
        requests.post(base, json=build_bundle(outcome(patient_id, 0)), timeout=30).raise_for_status()

        floor_bundles = [build_bundle(outcome(patient_id, n)) for n in range(args.outcomes)]

        def post(bundle: dict, state: dict) -> None:
            session = state.setdefault("session", requests.Session())
            response = session.post(base, json=bundle, headers={"Content-Type": "application/fhir+json"}, timeout=30)
            response.raise_for_status()
            statuses = [e["response"]["status"] for e in response.json()["entry"]]
            assert all(s.startswith("2") for s in statuses), statuses

        floor_seconds = drain(args.workers, floor_bundles, post)

        ehr_services._dispatch = lambda writeback_id: None  # type: ignore[assignment]  # no Celery broker here
        ids = []
        for n in range(args.outcomes):
            with transaction.atomic():
                rows = ehr_services.writeback_enqueue(clinic=clinic, outcome=outcome(patient_id, 100_000 + n))
            ids.append(rows[0].pk)

        def send(writeback_id: int, state: dict) -> None:
            row = ehr_services.writeback_send(writeback_id=writeback_id)
            assert row.state == WriteBack.State.SENT, (row.state, row.last_error)

        project_seconds = drain(args.workers, ids, send)
        sent = WriteBack.objects.filter(pk__in=ids, state=WriteBack.State.SENT).count()
    finally:
        stop_process(sekmet)
        connection.close()

    floor_rate = args.outcomes / floor_seconds
    project_rate = sent / project_seconds
    ratio = project_rate / floor_rate
    ok = ratio >= GOAL and sent == args.outcomes
    print(f"{args.outcomes} outcomes each way, {args.workers} workers, sekmet-fhir at {base}")
    print(f"floor   (POST the bundles directly):        {floor_rate:7.1f} outcomes/s")
    print(f"project (outbox -> writeback_send -> FHIR):  {project_rate:7.1f} outcomes/s ({sent} sent)")
    print(f"ratio project/floor: {ratio:.2f} (goal >= {GOAL}): {'PASS' if ok else 'FAIL'}")
    record(
        "writeback_drain",
        {
            "outcomes": args.outcomes,
            "workers": args.workers,
            "floor_outcomes_per_second": round(floor_rate, 1),
            "project_outcomes_per_second": round(project_rate, 1),
            "ratio": round(ratio, 3),
            "goal_ratio_min": GOAL,
            "pass": ok,
        },
    )


if __name__ == "__main__":
    main()
