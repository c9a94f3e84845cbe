"""Claim throughput: `case_claim_next` vs a raw psycopg `FOR UPDATE SKIP LOCKED` floor, same table, same run.

Usage: `.venv/bin/python bench/claim.py [--backlog 20000] [--nurses 16] [--claims 2000]`
Uses the database `careline_bench` on `DATABASE_URL`'s server (default postgres@127.0.0.1), created and
migrated if missing. Prints claims/s for the floor and for the project, the ratio, and double-claim counts
(must be 0). The floor orders by (acuity, arrived_at) with one locking statement per claim; the project
ranks the per-level heads by accumulating priority first, so it does more work per claim by design.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/careline_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings.base")
os.environ.setdefault("CARELINE_DEMO", "false")

import psycopg  # noqa: E402
from benchdb import fresh_database  # noqa: E402

fresh_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from clinics.services import clinic_create, staff_create  # noqa: E402
from triage.models import Case, CaseEvent, CaseState  # noqa: E402
from triage.services import case_claim_next  # noqa: E402


def seed(clinic, backlog: int) -> None:
    CaseEvent.objects.all().delete()
    Case.objects.all().delete()
    now = timezone.now()
    Case.objects.bulk_create(
        [
            Case(
                clinic=clinic,
                callback_number="+15555550100",
                acuity=1 + i % 5,
                state=CaseState.QUEUED,
                arrived_at=now - timedelta(seconds=backlog - i),
            )
            for i in range(backlog)
        ],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE triage_case")


def run_threads(nurses: int, claims: int, claim_once) -> tuple[float, list[int]]:
    per = claims // nurses
    got: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(nurses + 1)

    def worker(index: int) -> None:
        mine = []
        state = {}
        barrier.wait()
        for _ in range(per):
            case_id = claim_once(index, state)
            if case_id is not None:
                mine.append(case_id)
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nurses)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - started, got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--nurses", type=int, default=16)
    parser.add_argument("--claims", type=int, default=2000)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    clinic = clinic_create(slug="bench", name="Bench", twilio_number="+15550109999", on_call_number="+15550109998")
    users = [
        staff_create(clinic=clinic, role="nurse", username=f"bench-nurse-{i}", password="bench-password").user
        for i in range(args.nurses)
    ]
    dsn = os.environ["DATABASE_URL"]
    floor_sql = (
        "UPDATE triage_case SET state = 'reserved', reserved_by_id = %s, reserved_at = now() "
        "WHERE id = (SELECT id FROM triage_case WHERE clinic_id = %s AND state = 'queued' "
        "ORDER BY acuity, arrived_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id"
    )

    def floor_claim(index: int, state: dict) -> int | None:
        conn = state.get("conn") or psycopg.connect(dsn, autocommit=True)
        state["conn"] = conn
        row = conn.execute(floor_sql, (users[index].pk, clinic.pk)).fetchone()
        return row[0] if row else None

    def project_claim(index: int, state: dict) -> int | None:
        case = case_claim_next(clinic=clinic, nurse=users[index])
        if case is None:
            return None
        # Release the nurse for the next claim, as accepting + completing would (outside the timed path
        # would be fairer, but a real nurse's next press comes after this anyway).
        Case.objects.filter(pk=case.pk).update(state=CaseState.CLOSED)
        return case.pk

    def floor_then_release(index: int, state: dict) -> int | None:
        case_id = floor_claim(index, state)
        if case_id is not None:
            state["conn"].execute("UPDATE triage_case SET state = 'closed' WHERE id = %s", (case_id,))
        return case_id

    seed(clinic, args.backlog)
    floor_seconds, floor_ids = run_threads(args.nurses, args.claims, floor_then_release)
    seed(clinic, args.backlog)
    project_seconds, project_ids = run_threads(args.nurses, args.claims, project_claim)
    connection.close()

    floor_rate = len(floor_ids) / floor_seconds
    project_rate = len(project_ids) / project_seconds
    print(f"backlog {args.backlog}, {args.nurses} concurrent nurses, {args.claims} claims per run")
    print(
        f"floor   (raw psycopg SKIP LOCKED + release): {floor_rate:8.0f} claims/s, "
        f"double claims {len(floor_ids) - len(set(floor_ids))}"
    )
    print(
        f"project (case_claim_next + release):        {project_rate:8.0f} claims/s, "
        f"double claims {len(project_ids) - len(set(project_ids))}"
    )
    print(f"ratio project/floor: {project_rate / floor_rate:.2f}")


if __name__ == "__main__":
    main()
