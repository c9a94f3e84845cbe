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
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from clinics import events
from clinics.models import Clinic
from ehr.phone import InvalidPhoneNumber, to_e164
from ivr import prompts, tasks
from ivr.models import OutboundMessage
from ivr.services import optout
from ivr.twilio.messaging import SmsNotConfigured, SmsRejected, SmsUnavailable, send_sms, sending_enabled
from triage.models import Case, CaseEvent
from triage.services import case_add_event

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
SWEEP_AGE = timedelta(minutes=1)


def outbound_message_record(
    *,
    clinic: Clinic,
    case: Case | None,
    to: str,
    body: str,
    purpose: str = "SMS confirmation",
    sent_by: User | None = None,
    announce: bool = False,
) -> OutboundMessage:
    """Write one SMS to the outbox in the caller's transaction (state `queued`, or `recorded` without a
    Twilio account) and, when queued, dispatch sending after commit. Adds a `sms` event to the case, whose
    summary starts with `purpose` (e.g. "On-call page").

    The opt-out table is consulted first: a number that replied STOP to this clinic gets nothing; the row
    is kept in state `skipped` (and the case's timeline says so), so the refusal is visible.
    `sent_by`: the nurse who wrote it (console reply). `announce`: also publish `case.updated`
    (`fields: ["messages"]`) so open case pages refresh their conversation.
    """
    if optout.is_opted_out(clinic=clinic, number=to):
        state = OutboundMessage.State.SKIPPED
    elif sending_enabled():
        state = OutboundMessage.State.QUEUED
    else:
        state = OutboundMessage.State.RECORDED
    message = OutboundMessage.objects.create(
        clinic=clinic,
        case=case,
        to=to,
        from_number=clinic.twilio_number,
        body=body,
        state=state,
        purpose=purpose[:64],
        sent_by=sent_by,
    )
    if case is not None:
        summary = {
            OutboundMessage.State.QUEUED: f"{purpose} queued",
            OutboundMessage.State.RECORDED: f"{purpose} recorded (no Twilio account: not sent)",
            OutboundMessage.State.SKIPPED: f"{purpose} not sent: the patient opted out of text messages (STOP)",
        }[state]
        case_add_event(
            case=case,
            kind=CaseEvent.Kind.SMS,
            summary=summary,
            detail={"message_id": message.pk, "state": state},
            actor=sent_by,
        )
        if announce:
            events.publish(clinic.pk, "case.updated", {"case_id": case.pk, "fields": ["messages"]})
    if state == OutboundMessage.State.QUEUED:
        tasks.send_outbound_message.delay_after_commit(message.pk)
    return message


def _status_callback() -> str:
    """The absolute URL of the Messages status callback, "" when `PUBLIC_BASE_URL` is not set."""
    if not settings.PUBLIC_BASE_URL:
        return ""
    return str(settings.PUBLIC_BASE_URL).rstrip("/") + reverse("ivr:sms-status")


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
            sid = send_sms(
                to=message.to, from_number=message.from_number, body=message.body, status_callback=_status_callback()
            )
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
            purpose = message.purpose or "SMS"
            case_add_event(
                case=message.case,
                kind=CaseEvent.Kind.SMS,
                summary=f"{purpose} sent" if sent else f"{purpose} could not be sent",
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


DELIVERY_FAILED = frozenset({"failed", "undelivered"})


def delivery_status_record(*, message_sid: str, status: str, error_code: str = "") -> OutboundMessage | None:
    """Apply a Messages status callback (`MessageSid`, `MessageStatus`, `ErrorCode`) to the outbox row that
    Twilio accepted as `message_sid`; None when no row has that SID (another system's message).

    Idempotent: a repeated status changes nothing. A row once `delivered`/`undelivered`/`failed` is not
    moved back by a late `sent` callback (Twilio does not guarantee callback order). `undelivered` and
    `failed` add a timeline entry to the case ("not delivered"), `delivered` updates the state shown.
    """
    with transaction.atomic():
        message = (
            OutboundMessage.objects.select_for_update(of=("self",))
            .select_related("case")
            .filter(provider_sid=message_sid)
            .first()
        )
        if message is None or message.delivery_status == status:
            return message
        final = {"delivered", *DELIVERY_FAILED}
        if message.delivery_status in final and status not in final:
            return message
        message.delivery_status = status[:16]
        message.delivery_updated_at = timezone.now()
        if status in DELIVERY_FAILED and error_code:
            message.last_error = f"Twilio error {error_code}"
        message.save(update_fields=["delivery_status", "delivery_updated_at", "last_error"])
        if message.case is not None:
            if status in DELIVERY_FAILED:
                case_add_event(
                    case=message.case,
                    kind=CaseEvent.Kind.SMS,
                    summary=f"{message.purpose or 'SMS'} not delivered ({status})",
                    detail={"message_id": message.pk, "delivery_status": status, "error_code": error_code},
                )
            events.publish(message.clinic_id, "case.updated", {"case_id": message.case_id, "fields": ["messages"]})
        return message
