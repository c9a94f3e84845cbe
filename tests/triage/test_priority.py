"""`triage.priority` (ordering modes, rates), the clinic's KPI fields, stored rates in `case_claim_next`,
and `manage.py tune_priority`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from clinics.models import AuditEvent, Clinic, KpiTarget, validate_accumulation_rates, validate_kpi_targets
from triage.models import Case
from triage.priority import Mode, effective_rates, ranked, rates_for_targets
from triage.services import case_claim_next, case_enqueue

NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)
TARGETS = {1: 0, 2: 900, 3: 1800, 4: 3600, 5: 7200}


@dataclass(frozen=True)
class Head:
    acuity: int
    arrived_at: datetime


def _head(level: int, waited_minutes: float) -> Head:
    return Head(level, NOW - timedelta(minutes=waited_minutes))


def test_modes_rank_the_same_heads_differently():
    level2_new = _head(2, 1)  # 1/15 of target, deadline in 14 min
    level5_old = _head(5, 115)  # 115/120 of target, deadline in 5 min
    level4 = _head(4, 40)  # 40/60, deadline in 20 min
    heads = [level4, level2_new, level5_old]
    rates = rates_for_targets(TARGETS)
    assert ranked(heads, rates=rates, now=NOW) == [level5_old, level4, level2_new]
    assert ranked(heads, rates=rates, now=NOW, mode=Mode.STRICT) == [level2_new, level4, level5_old]
    assert ranked(heads, rates=rates, now=NOW, mode=Mode.FIFO) == [level5_old, level4, level2_new]
    assert ranked(heads, rates=rates, now=NOW, mode="edf", targets_seconds=TARGETS) == [
        level5_old,
        level2_new,
        level4,
    ]
    with pytest.raises(ValueError):
        ranked(heads, rates=rates, now=NOW, mode=Mode.EDF)


def test_immediate_level_goes_first_from_the_moment_it_arrives():
    level1_just_now = Head(1, NOW)
    level5_very_old = _head(5, 600)
    rates = rates_for_targets(TARGETS)
    assert math.isinf(rates[1])
    assert ranked([level5_very_old, level1_just_now], rates=rates, now=NOW)[0] is level1_just_now


def test_stored_rates_replace_defaults_only_as_a_complete_set():
    tuned = {"2": 1.0, "3": 0.3, "4": 0.1, "5": 0.04}
    rates = effective_rates(targets_seconds=TARGETS, stored=tuned)
    assert rates[3] == 0.3 and math.isinf(rates[1])
    assert effective_rates(targets_seconds=TARGETS, stored={"2": 1.0, "3": 0.3}) == rates_for_targets(TARGETS)
    assert effective_rates(targets_seconds=TARGETS, stored={}) == rates_for_targets(TARGETS)


@pytest.mark.django_db
def test_clinic_kpi_targets_default_to_ctas_and_drive_target_seconds(personas):
    north = personas.north
    assert north.kpi_target(2) == KpiTarget(seconds=900, fraction=0.95)
    assert north.kpi_target(5) == KpiTarget(seconds=7200, fraction=0.80)
    north.kpi_targets["3"] = {"seconds": 1200, "fraction": 0.92}
    north.save()
    north.refresh_from_db()
    assert north.target_seconds(3) == 1200 and north.kpi_target(3).fraction == 0.92
    assert north.target_seconds(4) == 3600
    north.kpi_targets = {}
    assert north.target_seconds(4) == 3600  # a level missing from kpi_targets falls back to CTAS (60 min)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"7": {"seconds": 60, "fraction": 0.9}},
        {"2": {"seconds": -1, "fraction": 0.9}},
        {"2": {"seconds": 60, "fraction": 1.5}},
        {"2": {"seconds": 60}},
        {"2": {"seconds": "15 min", "fraction": 0.9}},
    ],
)
def test_bad_kpi_targets_are_rejected_with_a_message(bad):
    with pytest.raises(ValidationError) as excinfo:
        validate_kpi_targets(bad)
    assert excinfo.value.messages[0]


@pytest.mark.parametrize("bad", [{"2": 0}, {"2": -1.0}, {"9": 1.0}, {"2": float("inf")}, {"2": "fast"}, [1.0]])
def test_bad_accumulation_rates_are_rejected(bad):
    with pytest.raises(ValidationError):
        validate_accumulation_rates(bad)


@pytest.mark.django_db
def test_clinic_full_clean_validates_the_new_fields(personas):
    north = personas.north
    north.overload_threshold = 0.0
    north.accumulation_rates = {"2": 0}
    with pytest.raises(ValidationError) as excinfo:
        north.full_clean()
    assert {"overload_threshold", "accumulation_rates"} <= set(excinfo.value.message_dict)


def _enqueue(clinic: Clinic, acuity: int, waited_minutes: float) -> Case:
    case = case_enqueue(clinic=clinic, callback_number="+15555550100", acuity=acuity)
    Case.objects.filter(pk=case.pk).update(arrived_at=timezone.now() - timedelta(minutes=waited_minutes))
    return case


@pytest.mark.django_db
def test_claim_follows_the_clinics_stored_rates(personas):
    """Default rates: level 4 at 25/60 (0.42) beats level 2 at 5/15 (0.33). Tuned rates (level 4 accrues at
    a tenth of level 2): level 2 at 300 s x 1.0 beats level 4 at 1500 s x 0.1."""
    north = personas.north
    level2 = _enqueue(north, 2, 5)
    level4 = _enqueue(north, 4, 25)
    first = case_claim_next(clinic=north, nurse=personas.alice)
    assert first.pk == level4.pk
    Case.objects.filter(pk=level4.pk).update(state="queued", reserved_by=None)

    north.accumulation_rates = {"2": 1.0, "3": 0.3, "4": 0.1, "5": 0.04}
    north.save(update_fields=["accumulation_rates"])
    # A new rate set applies at once (the claim's discipline memo is keyed by the clinic's configuration).
    second = case_claim_next(clinic=north, nurse=personas.dave)
    assert second.pk == level2.pk


@pytest.mark.django_db
def test_tune_priority_command_stores_rates_that_claims_then_use(personas, capsys):
    call_command(
        "tune_priority",
        "--clinic",
        "north",
        "--nurses",
        "4",
        "--mean-service-minutes",
        "12",
        "--arrivals-per-hour",
        "18",
        "--calls",
        "20000",
        "--iterations",
        "4",
    )
    north = Clinic.objects.get(slug="north")
    assert set(north.accumulation_rates) == {"2", "3", "4", "5"}
    rates = {int(k): v for k, v in north.accumulation_rates.items()}
    assert rates[2] == 1.0 and rates[2] > rates[3] > rates[4] > rates[5] > 0
    assert AuditEvent.objects.filter(clinic=north, action="clinic.priority_tuned").count() == 1
    out = capsys.readouterr().out
    assert "offered load 0.90" in out and "stored accumulation_rates" in out


@pytest.mark.django_db
def test_tune_priority_refuses_impossible_load_and_bad_mix(personas):
    with pytest.raises(CommandError, match="offered load"):
        call_command("tune_priority", "--clinic", "north", "--nurses", "2", "--arrivals-per-hour", "20")
    with pytest.raises(CommandError, match="--mix"):
        call_command("tune_priority", "--clinic", "north", "--mix", "12,30,x,20")
    with pytest.raises(CommandError, match="no clinic"):
        call_command("tune_priority", "--clinic", "nowhere")
    assert Clinic.objects.get(slug="north").accumulation_rates == {}
