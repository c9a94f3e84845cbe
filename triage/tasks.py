"""Celery tasks of the triage app (thin: call a service)."""

from celery import shared_task

from triage.services import case_apply_routing_fallbacks, case_expire_reservations


@shared_task  # type: ignore[untyped-decorator]
def expire_reservations() -> int:
    """Beat: return expired reservations to the queue (see `case_expire_reservations`)."""
    return case_expire_reservations()


@shared_task  # type: ignore[untyped-decorator]
def apply_routing_fallbacks() -> int:
    """Beat: relax or overflow queued cases past their routing fallback (see `case_apply_routing_fallbacks`)."""
    return case_apply_routing_fallbacks()
