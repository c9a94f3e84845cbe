"""Claim throughput: `case_claim_next` vs a raw psycopg `FOR UPDATE SKIP LOCKED` floor, same table, same run.

Usage: `.venv/bin/python bench/claim.py [--backlog 100000] [--nurses 50] [--claims 10000]`
Uses the database `careline_bench` on `DATABASE_URL`'s server (default postgres@127.0.0.1), dropped,
created and migrated for every run. Prints claims/s for the floor and for the project, the ratio against
the goal (>= 0.5), and double claims (must be 0: distinct ids, and exactly one `reserved` timeline entry and
one `offered` ledger entry per claimed case). The floor orders by (acuity, arrived_at) with one locking
statement per claim; the project ranks the per-level heads by accumulating priority first (two statements
per claim on PostgreSQL, `triage.claiming`) and writes the timeline and ledger rows, so it does more work
per claim by design. Both release the claimed case with the same one-statement `UPDATE` (a nurse's next
press comes after she closed her case). Writes `claim` into bench/figures.json.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/careline_bench")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings.base")
os.environ.setdefault("CARELINE_DEMO", "false")
# As production runs (careline.settings.production): with DEBUG on, Django logs every query in connection.queries.
os.environ.setdefault("DJANGO_DEBUG", "false")
# A throw-away key for the scratch database (the seeded cases' callback numbers are encrypted at rest).
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "bench:" + base64.b64encode(secrets.token_bytes(32)).decode())

import psycopg  # noqa: E402
from benchdb import fresh_database  # noqa: E402
from figures import record  # noqa: E402

fresh_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.utils import timezone  # noqa: E402

from clinics.services import clinic_create, staff_create  # noqa: E402
from triage.models import Case, CaseEvent, CaseState, RoutingLedgerEntry  # noqa: E402
from triage.services import case_claim_next  # noqa: E402

GOAL = 0.5  # project claims/s >= 50 % of the floor's (issue 7)


def seed(clinic, backlog: int) -> None:
    RoutingLedgerEntry.objects.all().delete()
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
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--nurses", type=int, default=50)
    parser.add_argument("--claims", type=int, default=10_000)
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
        # Release the nurse for the next claim, as accepting + completing would, with the floor's statement.
        with connection.cursor() as cursor:
            cursor.execute("UPDATE triage_case SET state = 'closed' WHERE id = %s", [case.pk])
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
    # Every claimed case has exactly one reservation entry in its timeline and one offer in its ledger.
    logged_twice = (
        CaseEvent.objects.filter(kind=CaseEvent.Kind.RESERVED)
        .values("case_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    events = CaseEvent.objects.filter(kind=CaseEvent.Kind.RESERVED).count()
    offers = RoutingLedgerEntry.objects.filter(kind=RoutingLedgerEntry.Kind.OFFERED).count()
    connection.close()

    floor_rate = len(floor_ids) / floor_seconds
    project_rate = len(project_ids) / project_seconds
    floor_doubles = len(floor_ids) - len(set(floor_ids))
    project_doubles = len(project_ids) - len(set(project_ids)) + logged_twice
    ratio = project_rate / floor_rate
    ok = ratio >= GOAL and floor_doubles == 0 and project_doubles == 0
    ok = ok and events == len(project_ids) == offers
    print(f"backlog {args.backlog}, {args.nurses} concurrent nurses, {args.claims} claims per run")
    print(f"floor   (raw psycopg SKIP LOCKED + release): {floor_rate:8.0f} claims/s, double claims {floor_doubles}")
    print(
        f"project (case_claim_next + release):        {project_rate:8.0f} claims/s, double claims {project_doubles}"
        f" ({events} reserved entries, {offers} offers for {len(project_ids)} claims)"
    )
    print(f"ratio project/floor: {ratio:.2f} (goal >= {GOAL}): {'PASS' if ok else 'FAIL'}")
    record(
        "claim",
        {
            "backlog": args.backlog,
            "nurses": args.nurses,
            "claims": len(project_ids),
            "floor_claims_per_second": round(floor_rate, 1),
            "project_claims_per_second": round(project_rate, 1),
            "ratio": round(ratio, 3),
            "goal_ratio_min": GOAL,
            "double_claims": floor_doubles + project_doubles,
            "pass": ok,
        },
    )


if __name__ == "__main__":
    main()
