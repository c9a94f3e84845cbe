"""The SMS outbox: a row per message in the caller's transaction, sent by Celery after commit.

Without `TWILIO_ACCOUNT_SID` a row is `recorded` and never sent (the embedded demo shows the outbox).
With it, the row is `queued`, `ivr.tasks.send_outbound_message` sends it once the transaction commits, and
`ivr.tasks.outbound_message_sweep` re-sends rows still queued after a minute (worker crash, Twilio down).
Twilio's Messages API has no idempotency key: a worker that dies between Twilio's answer and the commit can
cause one duplicate SMS; the row lock (SKIP LOCKED) prevents two workers sending the same row at once.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clinics.models import Clinic
from ehr.phone import InvalidPhoneNumber, to_e164
from ivr import prompts, tasks
from ivr.models import OutboundMessage
from ivr.twilio.messaging import SmsNotConfigured, SmsRejected, SmsUnavailable, send_sms, sending_enabled
from triage.models import Case, CaseEvent
from triage.services import case_add_event

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
SWEEP_AGE = timedelta(minutes=1)


def outbound_message_record(
    *, clinic: Clinic, case: Case | None, to: str, body: str, purpose: str = "SMS confirmation"
) -> OutboundMessage:
    """Write one SMS to the outbox in the caller's transaction (state `queued`, or `recorded` without a
    Twilio account) and, when queued, dispatch sending after commit. Adds a `sms` event to the case, whose
    summary starts with `purpose` (e.g. "On-call page")."""
    state = OutboundMessage.State.QUEUED if sending_enabled() else OutboundMessage.State.RECORDED
    message = OutboundMessage.objects.create(
        clinic=clinic, case=case, to=to, from_number=clinic.twilio_number, body=body, state=state
    )
    if case is not None:
        summary = (
            f"{purpose} queued"
            if state == OutboundMessage.State.QUEUED
            else f"{purpose} recorded (no Twilio account: not sent)"
        )
        case_add_event(
            case=case, kind=CaseEvent.Kind.SMS, summary=summary, detail={"message_id": message.pk, "state": state}
        )
    if state == OutboundMessage.State.QUEUED:
        transaction.on_commit(lambda: tasks.send_outbound_message.delay(message.pk))
    return message


def confirmation_record(*, case: Case, to: str, language: str) -> OutboundMessage | None:
    """Record the "we received your call" SMS for a newly queued case, in `language` ("en"/"es").

    The text names the clinic and the callback number only (no clinical details). Returns None, and records
    nothing, when the caller ID is not a phone number (withheld caller ID).
    """
    try:
        number = to_e164(to)
    except InvalidPhoneNumber:
        return None
    body = prompts.text("sms_confirmation", language, clinic=case.clinic.name, number=prompts.spoken_number(number))
    return outbound_message_record(clinic=case.clinic, case=case, to=number, body=body)


def outbound_message_send(*, message_id: int) -> OutboundMessage | None:
    """Send a `queued` message through Twilio; any other state is left alone (safe to run twice).

    The row is locked with SKIP LOCKED: a row another worker is sending is skipped (returns None).
    Outcome: `sent` with the Message SID; `failed` when Twilio rejects it or after `MAX_ATTEMPTS`;
    otherwise it stays `queued` with `last_error` for the sweep. Without `TWILIO_ACCOUNT_SID` a queued row
    stays queued. Adds a `sms` event to the case when the message is sent or fails for good.
    """
    with transaction.atomic():
        message = (
            OutboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("case")
            .filter(pk=message_id)
            .first()
        )
        if message is None or message.state != OutboundMessage.State.QUEUED:
            return message
        now = timezone.now()
        try:
            sid = send_sms(to=message.to, from_number=message.from_number, body=message.body)
        except SmsNotConfigured:
            logger.info("outbound message %s left queued: no Twilio account configured", message.pk)
            return message
        except SmsRejected as exc:
            message.state = OutboundMessage.State.FAILED
            message.last_error = str(exc)
        except SmsUnavailable as exc:
            message.last_error = str(exc)
            if message.attempts + 1 >= MAX_ATTEMPTS:
                message.state = OutboundMessage.State.FAILED
        else:
            message.state = OutboundMessage.State.SENT
            message.provider_sid = sid
            message.sent_at = now
            message.last_error = ""
        message.attempts += 1
        message.last_attempt_at = now
        message.save()
        if message.case is not None and message.state != OutboundMessage.State.QUEUED:
            sent = message.state == OutboundMessage.State.SENT
            case_add_event(
                case=message.case,
                kind=CaseEvent.Kind.SMS,
                summary="SMS confirmation sent" if sent else "SMS confirmation could not be sent",
                detail={"message_id": message.pk, "state": message.state},
            )
        logger.info("outbound message %s: %s after %d attempt(s)", message.pk, message.state, message.attempts)
        return message


def outbound_messages_sweep(*, limit: int = 100) -> int:
    """Re-send `queued` messages created more than a minute ago and not tried in the last minute.

    Returns how many were tried. Safe to run concurrently with the on-commit sends (SKIP LOCKED).
    """
    cutoff = timezone.now() - SWEEP_AGE
    due = (
        OutboundMessage.objects.filter(state=OutboundMessage.State.QUEUED, created_at__lt=cutoff)
        .filter(Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lt=cutoff))
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    tried = 0
    for message_id in list(due):
        outbound_message_send(message_id=message_id)
        tried += 1
    return tried
