"""Celery tasks of the ehr app: thin and idempotent (load by id, call a service; STYLE habit 4)."""

from __future__ import annotations

from celery import shared_task

from ehr import services


@shared_task(name="ehr.tasks.send_writeback")  # type: ignore[untyped-decorator]
def send_writeback(writeback_id: int) -> str:
    """Deliver one outbox row (on-commit fast path). Safe to run twice: a sent or leased row is left alone."""
    return str(services.writeback_send(writeback_id=writeback_id).state)


@shared_task(name="ehr.tasks.writeback_sweep")  # type: ignore[untyped-decorator]
def writeback_sweep() -> int:
    """Beat: retry every write-back that is due. Returns how many were attempted."""
    return services.writeback_sweep()
