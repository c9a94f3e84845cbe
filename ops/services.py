"""SLO evaluation: indicators per clinic, breach episodes, alerts (supervisor event, log line, webhook).

`slo_evaluate_all()` runs every minute (Celery beat `ops-slo-evaluate`). For each enabled objective it
computes the indicator (`indicator()`, definitions on `ops.models.SloObjective`) and:

- missed and no open episode -> opens a `SloBreach`, publishes `slo.breached` to the clinic's supervisors
  (`clinics.events`, shown on the dashboard), logs a WARNING, and posts the alert to `SLO_ALERT_WEBHOOK_URL`
  (Celery task, retried with backoff);
- met and an open episode -> clears it, publishes `slo.cleared`, logs, posts;
- otherwise (still missed, still met, or no data) -> updates the open episode's figures, alerts nothing.

Each objective is evaluated under a row lock and the open episode is unique (constraint), so two evaluations
at once (two beat schedulers by mistake) still alert once per episode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from careline import sli
from clinics import events
from clinics.models import Clinic
from ehr.models import WriteBack
from ops.models import SloBreach, SloObjective
from triage.models import Case, CaseState

logger = logging.getLogger(__name__)

# Write-back states that still owe the EHR a delivery (held waits on the caller's identity, not on the EHR).
UNDELIVERED = (WriteBack.State.PENDING, WriteBack.State.RETRYING, WriteBack.State.FAILED, WriteBack.State.DEAD)

# (kind, threshold, window minutes): the starting objectives `slo_defaults_install` gives a clinic.
DEFAULT_OBJECTIVES: tuple[tuple[str, float, int], ...] = (
    (SloObjective.Kind.CALL_SETUP_SUCCESS, 0.995, 60),
    (SloObjective.Kind.IVR_LATENCY_P99, 2.0, 15),
    (SloObjective.Kind.WRITEBACK_AGE, 900.0, 15),
    (SloObjective.Kind.KPI_COMPLIANCE, 0.9, 60),
)


@dataclass(frozen=True)
class Evaluation:
    """One objective's evaluation: `value` None = no data; `transition` "breached", "cleared" or ""."""

    objective_id: int
    value: float | None
    met: bool | None
    transition: str


def slo_defaults_install(*, clinic: Clinic) -> list[SloObjective]:
    """Give `clinic` the `DEFAULT_OBJECTIVES` it lacks; returns the objectives created."""
    created = []
    for kind, threshold, window in DEFAULT_OBJECTIVES:
        objective, was_created = SloObjective.objects.get_or_create(
            clinic=clinic, kind=kind, defaults={"threshold": threshold, "window_minutes": window}
        )
        if was_created:
            created.append(objective)
    return created


def _kpi_compliance(clinic: Clinic, since: datetime, now: datetime) -> tuple[int, int]:
    """(met, counted) cases that arrived since `since` (contactcenter.dashboard's KPI definition)."""
    met = counted = 0
    recent = (
        Case.objects.filter(clinic=clinic, arrived_at__gte=since)
        .exclude(state=CaseState.TRANSFERRED)
        .values_list("acuity", "arrived_at", "reserved_at", "state")
    )
    for acuity, arrived_at, reserved_at, state in recent:
        target = clinic.target_seconds(acuity)
        if arrived_at is None:  # excluded by the filter; for the type checker
            continue
        if reserved_at is not None:
            counted += 1
            met += (reserved_at - arrived_at).total_seconds() <= target
        elif state == CaseState.QUEUED and (now - arrived_at).total_seconds() > target:
            counted += 1
    return met, counted


def indicator(*, objective: SloObjective, now: datetime) -> float | None:
    """The objective's indicator over its window ending `now` (units on `SloObjective`); None = no data."""
    window = max(1, min(60, objective.window_minutes))
    clinic_id = objective.clinic_id
    if objective.kind == SloObjective.Kind.CALL_SETUP_SUCCESS:
        good, total = sli.ratio(clinic_id=clinic_id, name=sli.CALL_SETUP, window_minutes=window, now=now.timestamp())
        return good / total if total >= max(1, objective.min_samples) else None
    if objective.kind == SloObjective.Kind.IVR_LATENCY_P99:
        value, count = sli.quantile(
            clinic_id=clinic_id, name=sli.IVR_LATENCY, q=0.99, window_minutes=window, now=now.timestamp()
        )
        return value if value is not None and count >= max(1, objective.min_samples) else None
    if objective.kind == SloObjective.Kind.WRITEBACK_AGE:
        oldest = WriteBack.objects.filter(clinic_id=clinic_id, state__in=UNDELIVERED).aggregate(t=Min("created_at"))[
            "t"
        ]
        return max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    if objective.kind == SloObjective.Kind.KPI_COMPLIANCE:
        met, counted = _kpi_compliance(objective.clinic, now - timedelta(minutes=window), now)
        return met / counted if counted >= max(1, objective.min_samples) else None
    raise ValueError(f"unknown SLO kind {objective.kind!r}")


def _alert(*, event_type: str, objective: SloObjective, breach: SloBreach, value: float) -> None:
    payload: dict[str, Any] = {
        "clinic": objective.clinic.slug,
        "slo_id": objective.pk,
        "kind": objective.kind,
        "threshold": objective.threshold,
        "window_minutes": objective.window_minutes,
        "value": value,
        "breach_id": breach.pk,
        "opened_at": breach.opened_at.isoformat(),
        "cleared_at": breach.cleared_at.isoformat() if breach.cleared_at else None,
    }
    events.publish(
        objective.clinic_id,
        event_type,
        {k: payload[k] for k in ("slo_id", "kind", "threshold", "value", "breach_id")},
    )
    log = logger.warning if event_type == "slo.breached" else logger.info
    log(
        "SLO %s clinic %s %s: value %.4g, threshold %.4g over %d min (breach %s)",
        event_type.split(".")[1],
        objective.clinic.slug,
        objective.kind,
        value,
        objective.threshold,
        objective.window_minutes,
        breach.pk,
    )
    if settings.SLO_ALERT_WEBHOOK_URL:
        from ops.tasks import slo_alert_webhook

        body = {"event": event_type, **payload}
        transaction.on_commit(lambda: slo_alert_webhook.delay(body))


def slo_evaluate(*, objective_id: int, now: datetime | None = None) -> Evaluation:
    """Evaluate one objective at `now` and open or clear its breach episode (module docstring)."""
    now = now or timezone.now()
    with transaction.atomic():
        objective = SloObjective.objects.select_for_update().select_related("clinic").get(pk=objective_id)
        value = indicator(objective=objective, now=now)
        open_breach = SloBreach.objects.filter(objective=objective, cleared_at__isnull=True).first()
        if value is None:
            return Evaluation(objective.pk, None, None, "")
        met = objective.is_met(value)
        if open_breach is None:
            if met:
                return Evaluation(objective.pk, value, True, "")
            breach = SloBreach.objects.create(
                objective=objective, opened_at=now, value_at_open=value, worst_value=value, last_value=value
            )
            _alert(event_type="slo.breached", objective=objective, breach=breach, value=value)
            return Evaluation(objective.pk, value, False, "breached")
        open_breach.last_value = value
        if not met:
            worse = value < open_breach.worst_value if objective.higher_is_better else value > open_breach.worst_value
            if worse:
                open_breach.worst_value = value
            open_breach.save(update_fields=["last_value", "worst_value"])
            return Evaluation(objective.pk, value, False, "")
        open_breach.cleared_at = now
        open_breach.save(update_fields=["last_value", "cleared_at"])
        _alert(event_type="slo.cleared", objective=objective, breach=open_breach, value=value)
        return Evaluation(objective.pk, value, True, "cleared")


def slo_evaluate_all(*, now: datetime | None = None) -> list[Evaluation]:
    """Evaluate every enabled objective of every clinic (one transaction each; one failure does not stop the rest)."""
    results = []
    for objective_id in SloObjective.objects.filter(enabled=True).values_list("pk", flat=True):
        try:
            results.append(slo_evaluate(objective_id=objective_id, now=now))
        except Exception:  # noqa: BLE001 - one broken objective must not hide the others' breaches
            logger.exception("SLO %s evaluation failed", objective_id)
    return results
