"""SLO evaluation: indicators per clinic, breach episodes, alerts (supervisor event, log line, webhook).

`slo_evaluate_all()` runs every minute (Celery beat `ops-slo-evaluate`). For each enabled objective it
computes the indicator (`indicator()`, definitions on `ops.models.SloObjective`) and:

- missed and no open episode -> opens a `SloBreach`, publishes `slo.breached` to the clinic's supervisors
  (`clinics.events`, shown on the dashboard), logs a WARNING, and, when `SLO_ALERT_WEBHOOK_URL` is set,
  writes a `SloAlert` outbox row in the same transaction (delivery below);
- met and an open episode -> clears it, publishes `slo.cleared`, logs, writes the outbox row;
- otherwise (still missed, still met, or no data) -> updates the open episode's figures, alerts nothing.

Each objective is evaluated under a row lock and the open episode is unique (constraint), so two evaluations
at once (two beat schedulers by mistake) still alert once per episode.

Webhook delivery (outbox, like the EHR write-backs): the row commits with the breach change, so a crash
right after the commit, a broker outage or a receiver that is down loses nothing. After commit the row is
handed to `ops.tasks.slo_alert_deliver` (Celery `autoretry_for` transport errors and non-2xx answers,
exponential backoff); the beat sweep `ops.tasks.slo_alert_sweep` hands over again rows still pending
(dispatch lost, retries exhausted). `slo_alert_send` locks the row and posts only while it is pending, so
one state change is posted once however often it is dispatched (at-least-once only if a worker dies between
the receiver's answer and the commit: `Idempotency-Key` header, `ops.models.SloAlert`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from celery.exceptions import Retry
from django.conf import settings
from django.db import models, transaction
from django.db.models import Min
from django.utils import timezone

from careline import sli
from clinics import events
from clinics.models import Clinic
from ehr.models import WriteBack
from ops.models import SloAlert, SloBreach, SloObjective
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
        alert = SloAlert.objects.create(breach=breach, event=event_type, body={"event": event_type, **payload})
        alert.body["alert_id"] = alert.pk
        alert.save(update_fields=["body"])
        transaction.on_commit(lambda: _dispatch(alert.pk), robust=True)


def _dispatch(alert_id: int) -> None:
    """Hand an outbox row to Celery (after commit). A broker outage is logged; the sweep hands it over later."""
    from ops.tasks import slo_alert_deliver

    try:
        slo_alert_deliver.delay(alert_id)
    except Retry:
        # Only with eager Celery (tests): the task asked for a retry, which eager mode raises instead of
        # scheduling; the row stays pending for the next hand-over (a worker schedules it with backoff).
        logger.info("SLO alert %s: retry requested (eager Celery)", alert_id)
    except Exception:  # noqa: BLE001 - the row stays pending: slo_alert_sweep retries the hand-over
        logger.warning("SLO alert %s not handed to Celery; the sweep will", alert_id, exc_info=True)


class AlertNotDelivered(Exception):
    """The receiver was unreachable or answered non-2xx; the outbox row stays pending (message: why)."""


def slo_alert_send(*, alert_id: int) -> SloAlert | None:
    """POST one pending `SloAlert` (JSON `body`, header `Idempotency-Key: slo-alert-<id>`) to
    `SLO_ALERT_WEBHOOK_URL` within `SLO_ALERT_WEBHOOK_TIMEOUT_SECONDS`, under the row's lock (SKIP LOCKED:
    a row another worker is sending returns None). A 2xx answer marks it `sent`; a sent row is left alone
    (returned as is). Raises AlertNotDelivered on a transport error or non-2xx answer, after recording the
    attempt (`attempts`, `last_attempt_at`, `last_error`: the error class or HTTP status, no body).
    Without a URL configured the row stays pending (returned).
    """
    url = str(settings.SLO_ALERT_WEBHOOK_URL)
    error = ""
    with transaction.atomic():
        alert = SloAlert.objects.select_for_update(skip_locked=True).filter(pk=alert_id).first()
        if alert is None or alert.state == SloAlert.State.SENT or not url:
            return alert
        alert.attempts += 1
        alert.last_attempt_at = timezone.now()
        try:
            response = httpx.post(
                url,
                json=alert.body,
                headers={"Idempotency-Key": f"slo-alert-{alert.pk}"},
                timeout=settings.SLO_ALERT_WEBHOOK_TIMEOUT_SECONDS,
            )
            response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            error = f"HTTP {exc.response.status_code}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        if error:
            alert.last_error = error[:200]
            alert.save(update_fields=["attempts", "last_attempt_at", "last_error"])
        else:
            alert.state = SloAlert.State.SENT
            alert.sent_at = timezone.now()
            alert.last_error = ""
            alert.save(update_fields=["attempts", "last_attempt_at", "last_error", "state", "sent_at"])
    if error:
        logger.warning("SLO alert %s not delivered (attempt %d): %s", alert.pk, alert.attempts, error)
        raise AlertNotDelivered(error)
    logger.info("SLO alert %s delivered (%s, attempt %d)", alert.pk, alert.event, alert.attempts)
    return alert


# A pending row is handed over again once its last attempt is older than this: longer than the task's whole
# retry schedule is long between two tries (backoff capped at 300 s), so a row still retrying is left alone.
ALERT_SWEEP_AGE = timedelta(minutes=10)


def slo_alert_sweep(*, now: datetime | None = None, limit: int = 100) -> int:
    """Hand pending alerts to Celery again (beat): never tried and created over a minute ago (dispatch lost),
    or last tried more than `ALERT_SWEEP_AGE` ago (retries exhausted, worker lost). Returns how many."""
    now = now or timezone.now()
    due = (
        SloAlert.objects.filter(state=SloAlert.State.PENDING)
        .filter(
            models.Q(last_attempt_at__isnull=True, created_at__lt=now - timedelta(minutes=1))
            | models.Q(last_attempt_at__lt=now - ALERT_SWEEP_AGE)
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    ids = list(due)
    for alert_id in ids:
        _dispatch(alert_id)
    return len(ids)


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
