"""Celery tasks of the contact center (thin: call a service; STYLE habit 4). All are beat sweeps."""

from __future__ import annotations

from celery import shared_task

from contactcenter import escalation, presence


@shared_task  # type: ignore[untyped-decorator]
def escalation_sweep() -> dict[str, int]:
    """Beat (30 s): escalate cases past their target (alert + on-call page once) and page surges."""
    return escalation.escalation_sweep()


@shared_task  # type: ignore[untyped-decorator]
def presence_sweep() -> int:
    """Beat (30 s): consoles silent for PRESENCE_OFFLINE_SECONDS become offline."""
    return presence.presence_sweep()


@shared_task  # type: ignore[untyped-decorator]
def reconcile() -> dict[str, int]:
    """Beat (30 s): repair reservations of offline nurses and "holding" cases whose call ended."""
    return escalation.reconcile()
