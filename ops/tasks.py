"""Celery tasks of the ops app: the minute's SLO evaluation and the alert webhook (thin; STYLE habit 4)."""

from __future__ import annotations

from typing import Any

import httpx
from celery import shared_task
from django.conf import settings

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
    name="ops.tasks.slo_alert_webhook",
    autoretry_for=(httpx.HTTPError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=8,
)  # type: ignore[untyped-decorator]
def slo_alert_webhook(body: dict[str, Any]) -> int:
    """POST one SLO alert (JSON, no PHI: clinic slug, kind, figures) to `SLO_ALERT_WEBHOOK_URL`; a transport
    error or non-2xx answer is retried with exponential backoff (5 s .. 5 min, 8 times). Returns the status."""
    url = settings.SLO_ALERT_WEBHOOK_URL
    if not url:
        return 0
    response = httpx.post(url, json=body, timeout=settings.SLO_ALERT_WEBHOOK_TIMEOUT_SECONDS)
    response.raise_for_status()
    return response.status_code
