"""`triage.selectors.queue_discipline` (offered load from real rows, overload switch) and strict priority in
`case_claim_next` under overload."""

from __future__ import annotations

import json
import math
from datetime import timedelta

import pytest
from django.utils import timezone

from triage.models import Case, CaseState
from triage.priority import Mode
from triage.selectors import DEFAULT_HANDLE_SECONDS, queue_discipline
from triage.services import case_claim_next


def _case(clinic, *, acuity=3, state=CaseState.QUEUED, arrived_minutes_ago=10.0, **fields) -> Case:
    return Case.objects.create(
        clinic=clinic,
        callback_number="+15555550100",
        acuity=acuity,
        state=state,
        arrived_at=timezone.now() - timedelta(minutes=arrived_minutes_ago),
        **fields,
    )


def _closed(clinic, nurse, *, arrived_minutes_ago: float, handle_minutes: float) -> Case:
    """A case handled by `nurse` for `handle_minutes`, closed a minute ago."""
    closed_at = timezone.now() - timedelta(minutes=1)
    accepted_at = closed_at - timedelta(minutes=handle_minutes)
    return _case(
        clinic,
        state=CaseState.CLOSED,
        arrived_minutes_ago=arrived_minutes_ago,
        reserved_by=nurse,
        reserved_at=accepted_at,
        accepted_at=accepted_at,
        closed_at=closed_at,
    )


@pytest.fixture
def no_memo(settings):
    settings.TRIAGE_DISCIPLINE_CACHE_SECONDS = 0


@pytest.mark.django_db
def test_quiet_line_uses_accumulating_priority_with_the_default_handle_time(personas, no_memo):
    _case(personas.north, arrived_minutes_ago=5)
    discipline = queue_discipline(clinic=personas.north)
    assert discipline.mode is Mode.ACCUMULATING
    assert discipline.arrivals_last_hour == 1
    assert discipline.mean_handle_seconds == DEFAULT_HANDLE_SECONDS and discipline.handle_time_sample == 0
    assert discipline.nurses_on_duty == 1 and discipline.nurses_source == "assumed"
    assert discipline.offered_load == pytest.approx(1 * 720 / 3600)
    assert discipline.rates_source == "default"
    assert "below 0.95" in discipline.reason


@pytest.mark.django_db
def test_offered_load_from_arrivals_handle_time_and_nurses(personas, no_memo):
    """6 cases closed by alice and dave (20 min each) + 3 queued, all arrived in the last hour:
    rho = 9 arrivals/h x 1200 s / 3600 / 2 nurses = 1.5 -> strict."""
    north = personas.north
    for i in range(3):
        _closed(north, personas.alice, arrived_minutes_ago=50 - i, handle_minutes=20)
        _closed(north, personas.dave, arrived_minutes_ago=40 - i, handle_minutes=20)
    for _ in range(3):
        _case(north, arrived_minutes_ago=10)
    _case(north, arrived_minutes_ago=90)  # outside the load window
    _case(personas.south, arrived_minutes_ago=5)  # another clinic's arrivals never count
    discipline = queue_discipline(clinic=north)
    assert discipline.arrivals_last_hour == 9
    assert discipline.mean_handle_seconds == pytest.approx(1200)
    assert discipline.handle_time_sample == 6
    assert (discipline.nurses_on_duty, discipline.nurses_source) == (2, "counted")
    assert discipline.offered_load == pytest.approx(1.5)
    assert discipline.mode is Mode.STRICT and discipline.strict
    assert "Overload" in discipline.reason

    # Six nurses on duty per the console's presence: rho = 0.5 -> accumulating.
    assert queue_discipline(clinic=north, nurses_on_duty=6).mode is Mode.ACCUMULATING
    # The threshold is the clinic's: at 2.0, a load of 1.5 stays accumulating.
    north.overload_threshold = 2.0
    north.save(update_fields=["overload_threshold"])
    relaxed = queue_discipline(clinic=north)
    assert relaxed.mode is Mode.ACCUMULATING and relaxed.threshold == 2.0
    # South sees only its own single arrival.
    assert queue_discipline(clinic=personas.south).arrivals_last_hour == 1


@pytest.mark.django_db
def test_switch_happens_at_the_threshold(personas, no_memo):
    """Default handle time 12 min, one nurse assumed: 4 arrivals -> 0.8, 5 -> 1.0 (>= 0.95)."""
    north = personas.north
    for _ in range(4):
        _case(north, arrived_minutes_ago=20)
    assert queue_discipline(clinic=north).offered_load == pytest.approx(0.8)
    assert queue_discipline(clinic=north).mode is Mode.ACCUMULATING
    _case(north, arrived_minutes_ago=20)
    assert queue_discipline(clinic=north).mode is Mode.STRICT


@pytest.mark.django_db
def test_as_json_is_json_safe(personas, no_memo):
    personas.north.accumulation_rates = {"2": 1.0, "3": 0.3, "4": 0.1, "5": 0.04}
    personas.north.save()
    payload = queue_discipline(clinic=personas.north).as_json()
    assert json.loads(json.dumps(payload)) == payload
    assert payload["rates"]["1"] is None and payload["rates"]["4"] == 0.1
    assert payload["rates_source"] == "tuned" and payload["mode"] == "accumulating"


@pytest.mark.django_db
def test_under_overload_a_new_level_2_beats_an_older_level_5_only_in_strict_mode(personas, no_memo):
    """Level 5 at 115 of 120 min (0.96) vs level 2 one minute in (0.07): accumulating takes the level 5;
    under overload strict priority takes the level 2."""
    north = personas.north
    level5 = _case(north, acuity=5, arrived_minutes_ago=115)
    level2 = _case(north, acuity=2, arrived_minutes_ago=1)
    assert queue_discipline(clinic=north).mode is Mode.ACCUMULATING
    assert case_claim_next(clinic=north, nurse=personas.alice).pk == level5.pk

    Case.objects.filter(pk=level5.pk).update(state=CaseState.QUEUED, reserved_by=None)
    for i in range(10):  # ten more arrivals this hour, handled by dave: rho = 11 x 12 min / 60 / 1 nurse = 2.2
        _closed(north, personas.dave, arrived_minutes_ago=30 + i, handle_minutes=12)
    overloaded = queue_discipline(clinic=north)
    assert overloaded.mode is Mode.STRICT and overloaded.offered_load == pytest.approx(2.2)
    claimed = case_claim_next(clinic=north, nurse=personas.bob)
    assert claimed.pk == level2.pk
    assert claimed.events.get(kind="reserved").detail["discipline"] == "strict"
    # The level 5 is not starved out of the queue: it is the next claim.
    assert case_claim_next(clinic=north, nurse=personas.alice).pk == level5.pk


@pytest.mark.django_db
def test_strict_mode_is_fifo_within_a_level(personas, no_memo):
    north = personas.north
    north.overload_threshold = 0.1  # any arrival at all counts as overload
    north.save(update_fields=["overload_threshold"])
    older = _case(north, acuity=3, arrived_minutes_ago=20)
    _case(north, acuity=3, arrived_minutes_ago=10)
    _case(north, acuity=4, arrived_minutes_ago=59)
    assert queue_discipline(clinic=north).mode is Mode.STRICT
    assert case_claim_next(clinic=north, nurse=personas.alice).pk == older.pk


@pytest.mark.django_db
def test_claims_reuse_the_discipline_for_the_memo_window(personas, settings):
    """With the memo on, a claim right after a load change still uses the discipline computed a moment
    ago (the estimate spans an hour); a configuration change is seen at once."""
    settings.TRIAGE_DISCIPLINE_CACHE_SECONDS = 600
    north = personas.north
    level5 = _case(north, acuity=5, arrived_minutes_ago=115)
    level2 = _case(north, acuity=2, arrived_minutes_ago=1)
    assert case_claim_next(clinic=north, nurse=personas.alice).pk == level5.pk
    Case.objects.filter(pk=level5.pk).update(state=CaseState.QUEUED, reserved_by=None)
    for _ in range(10):
        _case(north, acuity=5, state=CaseState.ABANDONED, arrived_minutes_ago=30)
    assert queue_discipline(clinic=north).mode is Mode.STRICT  # fresh estimate
    assert case_claim_next(clinic=north, nurse=personas.dave).pk == level5.pk  # memo: still accumulating
    Case.objects.filter(pk=level5.pk).update(state=CaseState.QUEUED, reserved_by=None)
    north.overload_threshold = 0.9
    north.save(update_fields=["overload_threshold"])
    assert case_claim_next(clinic=north, nurse=personas.bob).pk == level2.pk
    assert math.isfinite(queue_discipline(clinic=north).offered_load)
