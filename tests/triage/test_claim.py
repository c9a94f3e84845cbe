"""`triage.services.case_claim_next`: accumulating priority, atomic claims, reservation expiry."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from clinics.services import staff_create
from triage.exceptions import NotYourCase
from triage.models import Case, CaseState
from triage.services import (
    case_accept,
    case_claim_next,
    case_complete,
    case_enqueue,
    case_expire_reservations,
)


def _enqueue(clinic, acuity: int, waited_minutes: float) -> Case:
    case = case_enqueue(clinic=clinic, callback_number="+15555550100", acuity=acuity)
    Case.objects.filter(pk=case.pk).update(arrived_at=timezone.now() - timedelta(minutes=waited_minutes))
    case.refresh_from_db()
    return case


@pytest.mark.django_db
def test_more_urgent_level_first_when_waits_are_equal_fraction(personas):
    level4 = _enqueue(personas.north, 4, 10)  # 10/60 of target
    level2 = _enqueue(personas.north, 2, 5)  # 5/15 of target
    claimed = case_claim_next(clinic=personas.north, nurse=personas.alice)
    assert claimed.pk == level2.pk
    assert claimed.state == CaseState.RESERVED
    assert level4.pk != claimed.pk


@pytest.mark.django_db
def test_long_waiting_low_acuity_case_is_not_starved(personas):
    """A level-5 case at 110 of 120 min (0.92) goes before a level-2 case 3 min in (0.2)."""
    old_level5 = _enqueue(personas.north, 5, 110)
    _enqueue(personas.north, 2, 3)
    assert case_claim_next(clinic=personas.north, nurse=personas.alice).pk == old_level5.pk


@pytest.mark.django_db
def test_fifo_within_a_level(personas):
    first = _enqueue(personas.north, 3, 20)
    _enqueue(personas.north, 3, 10)
    assert case_claim_next(clinic=personas.north, nurse=personas.alice).pk == first.pk


@pytest.mark.django_db
def test_claim_is_scoped_to_the_clinic(personas):
    _enqueue(personas.south, 2, 30)
    assert case_claim_next(clinic=personas.north, nurse=personas.alice) is None


@pytest.mark.django_db
def test_nurse_holding_a_case_gets_it_back_not_a_second_one(personas):
    first = _enqueue(personas.north, 3, 20)
    _enqueue(personas.north, 3, 10)
    assert case_claim_next(clinic=personas.north, nurse=personas.alice).pk == first.pk
    assert case_claim_next(clinic=personas.north, nurse=personas.alice).pk == first.pk
    assert Case.objects.filter(state=CaseState.QUEUED).count() == 1


@pytest.mark.django_db
def test_expired_reservation_returns_with_original_arrival_time(personas):
    case = _enqueue(personas.north, 3, 20)
    arrived = case.arrived_at
    case_claim_next(clinic=personas.north, nurse=personas.alice)
    assert case_expire_reservations(now=timezone.now() + timedelta(hours=1)) == 1
    case.refresh_from_db()
    assert case.state == CaseState.QUEUED
    assert case.arrived_at == arrived
    assert case.reserved_by is None
    # It is again the head of the queue for the next nurse.
    assert case_claim_next(clinic=personas.north, nurse=personas.dave).pk == case.pk


@pytest.mark.django_db
def test_accepted_case_does_not_expire_and_only_its_nurse_completes_it(personas):
    case = _enqueue(personas.north, 3, 20)
    case_claim_next(clinic=personas.north, nurse=personas.alice)
    case_accept(case_id=case.pk, clinic=personas.north, nurse=personas.alice)
    assert case_expire_reservations(now=timezone.now() + timedelta(hours=1)) == 0
    with pytest.raises(NotYourCase):
        case_complete(case_id=case.pk, clinic=personas.north, nurse=personas.dave, disposition_code="home-care")
    closed = case_complete(
        case_id=case.pk, clinic=personas.north, nurse=personas.alice, disposition_code="home-care", note="Advice given"
    )
    assert closed.state == CaseState.CLOSED
    assert closed.wrap_up_at is not None and closed.closed_at is not None
    kinds = list(closed.events.values_list("kind", flat=True))
    assert kinds == ["enqueued", "reserved", "accepted", "disposition"]


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_claims_get_twenty_distinct_cases(personas):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    for i in range(25):
        _enqueue(personas.north, 1 + i % 5, 30 - i)
    nurses = [
        staff_create(clinic=personas.north, role="nurse", username=f"n{i}", password="x-x-x-x-x").user
        for i in range(20)
    ]
    barrier = threading.Barrier(20)
    claimed: list[int | None] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim(nurse) -> None:
        try:
            barrier.wait()
            case = case_claim_next(clinic=personas.north, nurse=nurse)
            with lock:
                claimed.append(case.pk if case else None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(n,)) for n in nurses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert None not in claimed
    assert len(claimed) == 20 and len(set(claimed)) == 20
    assert Case.objects.filter(state=CaseState.RESERVED).count() == 20
    reserved_by = list(Case.objects.filter(state=CaseState.RESERVED).values_list("reserved_by", flat=True))
    assert len(set(reserved_by)) == 20
    assert get_user_model().objects.filter(pk__in=reserved_by).count() == 20
