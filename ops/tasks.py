"""Celery tasks of the ops app: the minute's SLO evaluation and the alert webhook (thin; STYLE habit 4)."""

from __future__ import annotations

from celery import shared_task

from ops import services


@shared_task(name="ops.tasks.slo_evaluate")  # type: ignore[untyped-decorator]
def slo_evaluate() -> dict[str, int]:
    """Beat, every minute: evaluate every enabled SLO. Returns counts of breaches opened and cleared."""
    results = services.slo_evaluate_all()
    return {
        "evaluated": len(results),
        "breached": sum(r.transition == "breached" for r in results),
        "cleared": sum(r.transition == "cleared" for r in results),
    }


@shared_task(
    name="ops.tasks.slo_alert_deliver",
    autoretry_for=(services.AlertNotDelivered,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=8,
)  # type: ignore[untyped-decorator]
def slo_alert_deliver(alert_id: int) -> str:
    """POST one SLO alert outbox row (`ops.services.slo_alert_send`); an unreachable receiver or a non-2xx
    answer is retried by Celery with exponential backoff (5 s .. 5 min, 8 times); a row still pending after
    that is handed over again by `slo_alert_sweep`. Returns the row's state ("" for a row locked elsewhere)."""
    alert = services.slo_alert_send(alert_id=alert_id)
    return str(alert.state) if alert is not None else ""


@shared_task(name="ops.tasks.slo_alert_sweep")  # type: ignore[untyped-decorator]
def slo_alert_sweep() -> int:
    """Beat, every minute: hand undelivered SLO alerts to `slo_alert_deliver` again. Returns how many."""
    return services.slo_alert_sweep()
