"""Claim latency vs backlog size, and double claims under racing, with the real `case_claim_next`.

50 nurses (threads, one PostgreSQL connection each) press "next case" concurrently. Each claim is timed
around `case_claim_next` alone; afterwards (untimed) the nurse closes the case and a copy with the same
level and arrival time joins the queue, so the backlog keeps its size and shape during the run. The floor
is the same run against a backlog of 100; the figure is p99 latency with a backlog of 100,000
(goal: ratio <= 1.2, because a claim reads one index head per level and never the backlog). Both queue
disciplines are measured: accumulating priority and strict priority (pinned through the clinic's
`overload_threshold`: 10 keeps accumulating at the bench's load, 0 forces strict).
Then the racing check: 10,000 queued cases, 50 nurses claim until the queue is empty; every case must be
claimed exactly once (distinct ids, exactly one `reserved` timeline entry per case, none left queued).

Usage: `.venv/bin/python bench/claim_latency.py [--nurses 50] [--claims 5000] [--small 100]
[--large 100000] [--race 10000]`. Uses the database `careline_bench_latency` on `DATABASE_URL`'s server
(default postgres@127.0.0.1), created and migrated if missing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/careline_bench_latency")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "careline.settings.base")
os.environ.setdefault("CARELINE_DEMO", "false")


from benchdb import fresh_database  # noqa: E402

fresh_database(os.environ["DATABASE_URL"])

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from clinics.models import Clinic  # noqa: E402
from clinics.services import clinic_create, staff_create  # noqa: E402
from triage.models import Case, CaseEvent, CaseState  # noqa: E402
from triage.services import case_claim_next  # noqa: E402

MIX = {2: 12, 3: 30, 4: 36, 5: 20}


def seed(clinic: Clinic, backlog: int) -> None:
    """`backlog` queued cases, levels 2-5 by the nurse-line mix, arrivals 1-`backlog` s before an hour ago
    (so the last hour holds no arrivals and the measured load, hence the discipline, stays as pinned)."""
    CaseEvent.objects.filter(clinic=clinic).delete()
    Case.objects.filter(clinic=clinic).delete()
    rng = random.Random(backlog)
    levels = rng.choices(list(MIX), weights=list(MIX.values()), k=backlog)
    start = timezone.now() - timedelta(hours=1)
    Case.objects.bulk_create(
        [
            Case(
                clinic=clinic,
                callback_number="+15555550100",
                acuity=levels[i],
                state=CaseState.QUEUED,
                arrived_at=start - timedelta(seconds=backlog - i),
            )
            for i in range(backlog)
        ],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE triage_case")
        cursor.execute("ANALYZE triage_caseevent")


def run(clinic: Clinic, nurses: list, claims: int, *, replace: bool) -> tuple[list[float], list[int], list[str]]:
    """Each nurse claims `claims // len(nurses)` times (or until the queue is empty when not `replace`)."""
    per = claims // len(nurses)
    latencies: list[float] = []
    ids: list[int] = []
    modes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(nurses) + 1)
    errors: list[BaseException] = []

    def worker(nurse) -> None:
        mine_lat, mine_ids, mine_modes = [], [], []
        try:
            Clinic.objects.get(pk=clinic.pk)  # open this thread's connection before the clock starts
            barrier.wait()
            while replace is False or len(mine_ids) < per:
                started = time.perf_counter()
                case = case_claim_next(clinic=clinic, nurse=nurse)
                elapsed = time.perf_counter() - started
                if case is None:
                    if replace:
                        continue
                    break
                mine_lat.append(elapsed)
                mine_ids.append(case.pk)
                Case.objects.filter(pk=case.pk).update(state=CaseState.CLOSED, closed_at=timezone.now())
                if replace:
                    Case.objects.create(
                        clinic=clinic,
                        callback_number=case.callback_number,
                        acuity=case.acuity,
                        state=CaseState.QUEUED,
                        arrived_at=case.arrived_at,
                    )
                if len(mine_modes) < 3:
                    mine_modes.append(case.events.get(kind="reserved").detail.get("discipline", "?"))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            with lock:
                latencies.extend(mine_lat)
                ids.extend(mine_ids)
                modes.extend(mine_modes)
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in nurses]
    for t in threads:
        t.start()
    barrier.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return latencies, ids, modes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nurses", type=int, default=50)
    parser.add_argument("--claims", type=int, default=5000, help="timed claims per configuration")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--race", type=int, default=10_000, help="cases in the racing check")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    clinic = clinic_create(
        slug="bench-latency", name="Bench latency", twilio_number="+15550108888", on_call_number="+15550108887"
    )
    nurses = [
        staff_create(clinic=clinic, role="nurse", username=f"latency-nurse-{i}", password="bench-password").user
        for i in range(args.nurses)
    ]
    print(
        f"case_claim_next latency: {args.nurses} concurrent nurses, {args.claims} timed claims per row, "
        f"backlog kept constant (claimed case closed, a copy requeued)"
    )
    header = f"{'discipline':<13} {'backlog':>8} | {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'claims/s':>8} | dup"
    print(header)
    print("-" * len(header))
    p99: dict[tuple[str, int], float] = {}
    failures = 0
    for backlog in (args.small, args.large):
        seed(clinic, backlog)
        for label, threshold in (("accumulating", 10.0), ("strict", 0.0)):
            Clinic.objects.filter(pk=clinic.pk).update(overload_threshold=threshold)
            clinic.refresh_from_db()
            started = time.perf_counter()
            latencies, ids, modes = run(clinic, nurses, args.claims, replace=True)
            wall = time.perf_counter() - started
            dup = len(ids) - len(set(ids))
            failures += dup > 0 or set(modes) != {label}
            p99[(label, backlog)] = percentile(latencies, 0.99)
            print(
                f"{label:<13} {backlog:>8,} | {statistics.median(latencies) * 1e3:>7.2f} "
                f"{percentile(latencies, 0.90) * 1e3:>7.2f} {p99[(label, backlog)] * 1e3:>7.2f} "
                f"{len(ids) / wall:>8.0f} | {dup}" + ("" if set(modes) == {label} else f"  (ran as {set(modes)})")
            )
    for label in ("accumulating", "strict"):
        ratio = p99[(label, args.large)] / p99[(label, args.small)]
        ok = ratio <= 1.2
        failures += not ok
        print(
            f"p99 ratio {label}: backlog {args.large:,} / backlog {args.small:,} = {ratio:.2f} "
            f"(goal <= 1.2) {'PASS' if ok else 'FAIL'}"
        )

    Clinic.objects.filter(pk=clinic.pk).update(overload_threshold=10.0)
    clinic.refresh_from_db()
    seed(clinic, args.race)
    _latencies, ids, _modes = run(clinic, nurses, args.race, replace=False)
    reserved_per_case = (
        CaseEvent.objects.filter(clinic=clinic, kind=CaseEvent.Kind.RESERVED)
        .values("case_id")
        .annotate(n=django.db.models.Count("id"))
        .filter(n__gt=1)
        .count()
    )
    left = Case.objects.filter(clinic=clinic, state=CaseState.QUEUED).count()
    dup = len(ids) - len(set(ids))
    ok = dup == 0 and reserved_per_case == 0 and left == 0 and len(ids) == args.race
    failures += not ok
    print(
        f"racing: {args.nurses} nurses emptied a queue of {args.race:,}: {len(ids):,} claims, {dup} double claims, "
        f"{reserved_per_case} cases reserved twice, {left} left queued: {'PASS' if ok else 'FAIL'}"
    )
    connection.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
