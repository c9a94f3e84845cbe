"""Celery tasks of the IVR (thin, idempotent: load by id, call a service; STYLE habit 4)."""

from __future__ import annotations

from celery import shared_task

from ivr.services import messages, outbound_calls, patients, reminders, risk


@shared_task  # type: ignore[untyped-decorator]
def send_outbound_message(message_id: int) -> str | None:
    """Send one outbox SMS (dispatched on commit); returns its state afterwards, None if it is gone/locked."""
    message = messages.outbound_message_send(message_id=message_id)
    return message.state if message is not None else None


@shared_task  # type: ignore[untyped-decorator]
def outbound_message_sweep() -> int:
    """Beat: re-send SMS rows still `queued` after a minute; returns how many were tried."""
    return messages.outbound_messages_sweep()


@shared_task  # type: ignore[untyped-decorator]
def resolve_pending_patients() -> dict[str, int]:
    """Beat: retry the EHR lookup of cases whose call happened while the EHR was down."""
    return patients.pending_patients_resolve()


@shared_task  # type: ignore[untyped-decorator]
def apply_chart_risk(case_id: int, clinic_id: int) -> str:
    """After enqueue: raise the case's acuity from chart facts (`ivr.services.risk.chart_risk_apply`). The
    clinic id comes from the enqueuer, so the task only ever loads that clinic's case."""
    return risk.chart_risk_apply(case_id=case_id, clinic_id=clinic_id)


@shared_task  # type: ignore[untyped-decorator]
def place_outbound_call(call_id: int) -> str | None:
    """Place one "Call patient" call (dispatched on commit); returns its state afterwards, None if gone/locked."""
    call = outbound_calls.outbound_call_place(call_id=call_id)
    return call.state if call is not None else None


@shared_task  # type: ignore[untyped-decorator]
def outbound_call_sweep() -> int:
    """Beat: re-try calls still `queued` after 30 s (expiring old ones); returns how many were tried."""
    return outbound_calls.outbound_calls_sweep()


@shared_task  # type: ignore[untyped-decorator]
def reminder_campaign_load(campaign_id: int) -> int:
    """Read a reminder campaign's appointments from the EHR; returns how many reminders were added."""
    return reminders.campaign_load(campaign_id=campaign_id)


@shared_task  # type: ignore[untyped-decorator]
def reminder_campaign_send(campaign_id: int) -> int:
    """Send a campaign's reminders for a few minutes at the configured rate, then re-queue while rows remain."""
    report = reminders.reminders_send(campaign_id=campaign_id)
    if report.leased and report.remaining:
        reminder_campaign_send.delay(campaign_id)
    return report.sent


@shared_task  # type: ignore[untyped-decorator]
def reminder_sweep() -> dict[str, int]:
    """Beat: stale `sending` reminders -> `unknown`; campaigns without a live sender resumed."""
    return reminders.reminders_sweep()
