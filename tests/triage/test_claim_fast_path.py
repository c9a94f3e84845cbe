"""The PostgreSQL claim fast path (`triage.claiming`, `services._claim_next_postgresql`) against the portable
ORM path: same case, same reservation, same timeline and ledger entries, on random queues with every rule
the claim applies (levels, boosts, callbacks not yet due, skills, licensure, relaxed skills, other clinics,
both disciplines); it locks exactly one row; it reads no PHI."""

from __future__ import annotations

import math
import random
import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from clinics.models import StaffMember
from triage import claiming, services
from triage.models import Case, CaseEvent, CaseState, Queue, RoutingLedgerEntry
from triage.services import case_claim_next

pytestmark = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the fast path is PostgreSQL's; SQLite uses the portable path"
)


def _random_queue(rng: random.Random, clinic, other_clinic, now) -> None:
    queue = Queue.objects.create(clinic=clinic, name="Spanish line", slug=f"es-{rng.random()}")
    cases = []
    for _ in range(rng.randint(0, 14)):
        boost = rng.choice([0, 0, 0, 300, 900])
        arrived = now - timedelta(seconds=rng.randint(0, 7200))
        required_skills = rng.choice([[], [], ["spanish"], ["pediatrics"], ["spanish", "pediatrics"]])
        cases.append(
            Case(
                clinic=rng.choice([clinic, clinic, clinic, other_clinic]),
                callback_number="+15555550100",
                acuity=rng.randint(1, 5),
                state=rng.choice([CaseState.QUEUED] * 5 + [CaseState.CLOSED]),
                arrived_at=arrived,
                priority_boost_seconds=boost,
                priority_since=arrived - timedelta(seconds=boost) if boost else None,
                callback_due_at=rng.choice([None, None, None, now + timedelta(minutes=5), now - timedelta(minutes=5)]),
                required_skills=required_skills,
                skills_relaxed_at=rng.choice([None, None, now]) if required_skills else None,
                required_license_state=rng.choice(["", "", "", "MA", "NY"]),
                queue=rng.choice([None, queue]),
            )
        )
    Case.objects.bulk_create(cases)


def _outcome(claim, *, clinic, nurse, now):
    """Run one claim path in a savepoint that is rolled back; return what it did."""
    with transaction.atomic():
        case = claim(clinic=clinic, nurse=nurse, now=now)
        result = {
            "case": None
            if case is None
            else (case.pk, case.state, case.reserved_by_id, case.reserved_at, case.reservation_expires_at),
            "stored": list(
                Case.objects.filter(state=CaseState.RESERVED)
                .order_by("pk")
                .values_list("pk", "reserved_by_id", "reserved_at", "reservation_expires_at")
            ),
            "events": list(
                CaseEvent.objects.filter(kind=CaseEvent.Kind.RESERVED)
                .order_by("pk")
                .values_list("case_id", "clinic_id", "actor_id", "summary", "detail")
            ),
            "ledger": sorted(
                RoutingLedgerEntry.objects.exclude(kind=RoutingLedgerEntry.Kind.ROUTED).values_list(
                    "case_id", "clinic_id", "kind", "nurse_id", "reason", "at"
                )
            ),
        }
        transaction.set_rollback(True)
    return result


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(40))
def test_fast_path_does_what_the_portable_path_does(personas, settings, seed):
    rng = random.Random(seed)
    settings.TRIAGE_DISCIPLINE_CACHE_SECONDS = 0
    now = timezone.now()
    personas.north.overload_threshold = rng.choice([10.0, 0.0])  # accumulating, or strict priority
    personas.north.save(update_fields=["overload_threshold"])
    StaffMember.objects.filter(user=personas.alice).update(
        skills=rng.choice([[], ["Spanish"], ["spanish", "pediatrics"]]), licensed_states=rng.choice([[], ["ma"]])
    )
    _random_queue(rng, personas.north, personas.south, now)
    if rng.random() < 0.2:  # a nurse who holds an open case gets it back
        held = Case.objects.create(
            clinic=personas.north,
            callback_number="+15555550100",
            acuity=3,
            state=CaseState.IN_PROGRESS,
            reserved_by=personas.alice,
            reserved_at=now,
            arrived_at=now,
        )
    else:
        held = None

    # case_claim_next: one statement, or (open case, routing requirements) the two-statement path.
    claim = _outcome(case_claim_next, clinic=personas.north, nurse=personas.alice, now=now)
    two_statements = _outcome(services._claim_next_postgresql, clinic=personas.north, nurse=personas.alice, now=now)
    portable = _outcome(services._claim_next_portable, clinic=personas.north, nurse=personas.alice, now=now)

    assert claim == portable
    assert two_statements == portable
    fast = claim
    if held is not None:
        assert fast["case"][0] == held.pk


def _one_statement(clinic, nurse, now):
    return claiming.claim_in_one_statement(
        clinic_id=clinic.pk,
        nurse_id=nurse.pk,
        now=now,
        expires=now + timedelta(minutes=2),
        rates={1: math.inf, 2: 1 / 900, 3: 1 / 1800, 4: 1 / 3600, 5: 1 / 7200},
        strict=False,
        summary="Reserved by Alice Nurse",
        offered_to="Offered to Alice Nurse after ",
        discipline="accumulating",
    )


@pytest.mark.django_db
def test_one_statement_claims_unless_an_open_case_or_a_routing_requirement_needs_the_full_path(personas):
    now = timezone.now()
    first = Case.objects.create(
        clinic=personas.north, callback_number="+15555550100", acuity=4, arrived_at=now - timedelta(minutes=50)
    )
    second = Case.objects.create(
        clinic=personas.north, callback_number="+15555550100", acuity=2, arrived_at=now - timedelta(minutes=10)
    )
    one = _one_statement(personas.north, personas.alice, now)
    assert (one.case.pk, one.needs_full_path) == (first.pk, False)  # level 4 at 50/60 of target (0.83) first
    # Alice now holds an open case: the statement claims nothing and asks for the full path.
    one = _one_statement(personas.north, personas.alice, now)
    assert (one.case, one.needs_full_path) == (None, True)
    assert _one_statement(personas.north, personas.dave, now).case.pk == second.pk
    Case.objects.create(
        clinic=personas.north, callback_number="+15555550100", acuity=3, arrived_at=now, required_license_state="NY"
    )
    Case.objects.create(clinic=personas.north, callback_number="+15555550100", acuity=3, arrived_at=now)
    nurse = StaffMember.objects.get(user__username="carol").user  # another clinic's nurse: no open case here
    one = _one_statement(personas.north, nurse, now)
    assert (one.case, one.needs_full_path) == (None, True)
    assert Case.objects.filter(state=CaseState.QUEUED).count() == 2


@pytest.mark.django_db
def test_fast_path_is_the_path_claims_take_and_defers_phi(personas):
    queued = Case.objects.create(
        clinic=personas.north,
        callback_number="+15555550123",
        patient_display="Jerry Example",
        acuity=3,
        arrived_at=timezone.now() - timedelta(minutes=3),
    )
    case = case_claim_next(clinic=personas.north, nurse=personas.alice)
    assert case.pk == queued.pk
    # The claim statement returns no encrypted (PHI) column; reading one later loads it.
    assert {"callback_number", "patient_display", "answers", "note"} <= case.get_deferred_fields()
    assert case.callback_number == "+15555550123"
    assert list(case.events.values_list("kind", flat=True)) == ["reserved"]
    assert case.events.get().detail == {"discipline": "accumulating"}
    offered = case.routing_ledger.get(kind="offered").reason  # "Offered to Alice Nurse after 180 s"
    assert int(offered.split(" after ")[1].split(" s")[0]) >= 180


@pytest.mark.django_db(transaction=True)
def test_a_claim_locks_exactly_one_row(personas):
    """The claim statement tries the ranked lines lazily (COALESCE of SKIP LOCKED sub-selects): while one claim
    is open, every other queued case can still be locked by someone else."""
    now = timezone.now()
    for level in range(1, 6):
        for i in range(3):
            Case.objects.create(
                clinic=personas.north,
                callback_number="+15555550100",
                acuity=level,
                arrived_at=now - timedelta(minutes=10 * i + level),
            )
    claimed = threading.Event()
    done = threading.Event()
    result: dict[str, object] = {}

    def hold_a_claim() -> None:
        try:
            with transaction.atomic():
                result["case"] = case_claim_next(clinic=personas.north, nurse=personas.alice)
                claimed.set()
                done.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_a_claim)
    holder.start()
    try:
        assert claimed.wait(30)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM triage_case WHERE state = 'queued'")
            (queued,) = cursor.fetchone()
            cursor.execute(
                "SELECT count(*) FROM (SELECT id FROM triage_case WHERE state = 'queued' FOR UPDATE SKIP LOCKED) free"
            )
            (free,) = cursor.fetchone()
    finally:
        done.set()
        holder.join(30)
    assert queued == 15  # the open claim is not committed yet
    assert free == 14
