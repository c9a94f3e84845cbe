"""Nurse-to-patient phone calls ("Call patient", phone fallback of a video visit) and the missed-call SMS.

Flow (Twilio "click-to-call": the REST call rings the nurse first, its TwiML bridges the patient):

1. `outbound_call_record` (console, in the caller's transaction): an `OutboundCall` outbox row reserved to
   the nurse and the case, a `call` timeline entry; with a Twilio account the row is `queued` and
   `ivr.tasks.place_outbound_call` places it once the transaction commits (`recorded` without one: the
   demo's phone simulator and the tests post the webhooks themselves).
2. `outbound_call_place` (Celery): `calls.create(to=nurse, from_=clinic number, url=connect, status_callback
   =status)`; the beat sweep re-tries rows left `queued` (worker crash, Twilio down) for at most
   `OUTBOUND_CALL_MAX_AGE_SECONDS` (a nurse's phone ringing minutes after she clicked would be wrong), then
   `expired`. The row is locked (SKIP LOCKED) while Twilio is asked; a worker killed between Twilio's
   answer and the commit can place the call twice (the Calls API has no idempotency key).
3. Webhooks, each applied once (`OutboundCall.handled`): `connect` (the nurse answered: `<Dial>` the
   patient, caller ID the clinic's number), `patient-status` (the patient's leg answered: bridged),
   `dial-result` (`<Dial action>`: `DialCallStatus` completed / no-answer / busy / failed / canceled; a
   missed call sends the patient an SMS with a callback option, once), `status` (the nurse's leg: her
   phone did not answer -> the patient is never dialled).

Every step lands on the case timeline and is announced as `case.updated` (`fields: ["calls"]`).

Call setup metric (issue 7, `careline.metrics.record_call_setup(kind="voice")`, the clinic's call setup SLO):
decided once per call (`_setup_outcome`, key "setup" in `OutboundCall.handled`, under the row lock, so
duplicate Twilio callbacks count nothing more). Success: the patient's leg answered (bridged), or the
`<Dial action>` says completed/answered. Failure: `DialCallStatus` no-answer / busy / failed / canceled, the
nurse's own leg not answering (`nurse_unreached`), or the call could not be placed (Twilio refused it,
attempts exhausted, too late: `failed` / `expired`). Recorded after the transaction commits.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from twilio.twiml.voice_response import VoiceResponse

from careline import metrics
from clinics import events
from ehr.phone import InvalidPhoneNumber, to_e164
from ivr import prompts, tasks
from ivr.models import OutboundCall, OutboundMessage
from ivr.services import messages
from ivr.twilio.messaging import sending_enabled
from ivr.twilio.voice import RING_TIMEOUT_SECONDS, CallNotConfigured, CallRejected, CallUnavailable, place_call
from triage.models import Case, CaseEvent
from triage.services import case_add_event

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
SWEEP_AGE = timedelta(seconds=30)
# A call not yet ringing after this long is never placed (the nurse has moved on); see the module docstring.
ACTIVE_WINDOW = timedelta(minutes=10)

TERMINAL_STATES = frozenset(
    {
        OutboundCall.State.COMPLETED,
        OutboundCall.State.NO_ANSWER,
        OutboundCall.State.BUSY,
        OutboundCall.State.FAILED,
        OutboundCall.State.NURSE_UNREACHED,
        OutboundCall.State.EXPIRED,
    }
)
# `DialCallStatus` of the `<Dial action>` -> the call's terminal state (Twilio TwiML <Dial> reference).
DIAL_OUTCOMES = {
    "completed": OutboundCall.State.COMPLETED,
    "answered": OutboundCall.State.COMPLETED,
    "no-answer": OutboundCall.State.NO_ANSWER,
    "busy": OutboundCall.State.BUSY,
    "failed": OutboundCall.State.FAILED,
    "canceled": OutboundCall.State.FAILED,
}
MISSED = frozenset({OutboundCall.State.NO_ANSWER, OutboundCall.State.BUSY, OutboundCall.State.FAILED})
NURSE_LEG_UNANSWERED = frozenset({"no-answer", "busy", "failed", "canceled"})


class CallNotPossible(Exception):
    """The call cannot be placed now; the message says why, for the nurse."""


def _max_age() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "OUTBOUND_CALL_MAX_AGE_SECONDS", 120)))


def _announce(call: OutboundCall) -> None:
    events.publish(call.clinic_id, "case.updated", {"case_id": call.case_id, "fields": ["calls"]})


def _timeline(call: OutboundCall, summary: str, **detail: object) -> None:
    case_add_event(
        case=call.case,
        kind=CaseEvent.Kind.CALL,
        summary=summary,
        detail={"outbound_call_id": call.pk, "state": call.state, **detail},
    )
    _announce(call)


def active_call(*, case: Case) -> OutboundCall | None:
    """The case's call still in progress (not in a terminal state, created in the last 10 minutes), or None."""
    return (
        OutboundCall.objects.filter(case=case, created_at__gte=timezone.now() - ACTIVE_WINDOW)
        .exclude(state__in=TERMINAL_STATES)
        .order_by("-created_at")
        .first()
    )


def outbound_call_record(*, case: Case, nurse: User, nurse_number: str, reason: str = "console") -> OutboundCall:
    """Write the outbox row of a call from `nurse` (ringing `nurse_number` first) to the case's patient.

    Runs in the caller's transaction, which must hold the case's row lock and have checked that the case is
    the nurse's. `reason`: "console" or e.g. "video_failed" (the video part's fallback). Raises
    CallNotPossible when a number is not a phone number or a call for the case is still in progress.
    """
    try:
        patient_number = to_e164(case.callback_number)
    except InvalidPhoneNumber as exc:
        raise CallNotPossible("The patient's number is not a phone number (caller ID withheld).") from exc
    try:
        nurse_e164 = to_e164(nurse_number)
    except InvalidPhoneNumber as exc:
        raise CallNotPossible("Enter your phone number (E.164, e.g. +15551234567) to be called first.") from exc
    if active_call(case=case) is not None:
        raise CallNotPossible("A call for this case is already in progress.")
    state = OutboundCall.State.QUEUED if sending_enabled() else OutboundCall.State.RECORDED
    call = OutboundCall.objects.create(
        clinic_id=case.clinic_id,
        case=case,
        nurse=nurse,
        nurse_number=nurse_e164,
        patient_number=patient_number,
        reason=reason[:32],
        state=state,
    )
    call.case = case
    name = nurse.get_full_name() or nurse.get_username()
    suffix = "" if state == OutboundCall.State.QUEUED else " (no Twilio account: recorded, not placed)"
    _timeline(call, f"Calling the patient: {name}'s phone rings first{suffix}", reason=reason)
    if state == OutboundCall.State.QUEUED:
        tasks.place_outbound_call.delay_after_commit(call.pk)
    return call


def _setup_outcome(call: OutboundCall, *, ok: bool) -> bool:
    """Count the call's setup once (module docstring): True when this call counted it. The caller holds the
    row lock; `handled` is saved here, the metric and SLI event are recorded after commit."""
    if not _first(call, "setup"):
        return False
    call.save(update_fields=["handled"])
    clinic_id, slug = call.clinic_id, call.clinic.slug
    transaction.on_commit(lambda: metrics.record_call_setup(clinic_id=clinic_id, clinic_slug=slug, kind="voice", ok=ok))
    return True


def _webhook_url(name: str, call: OutboundCall) -> str:
    return str(settings.PUBLIC_BASE_URL).rstrip("/") + reverse(f"ivr:outbound-{name}", args=[call.uuid])


def outbound_call_place(*, call_id: int) -> OutboundCall | None:
    """Place a `queued` call through Twilio; any other state is left alone (safe to run twice).

    Locked with SKIP LOCKED (a row another worker is placing is skipped: returns None). Outcome: `placed`
    with the CallSid; `failed` when Twilio rejects it, when `PUBLIC_BASE_URL` is unset, or after
    `MAX_ATTEMPTS`; `expired` when older than `OUTBOUND_CALL_MAX_AGE_SECONDS`; else it stays `queued`
    for the sweep.
    """
    with transaction.atomic():
        call = (
            OutboundCall.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("case", "clinic")
            .filter(pk=call_id)
            .first()
        )
        if call is None or call.state != OutboundCall.State.QUEUED:
            return call
        now = timezone.now()
        if now - call.created_at > _max_age():
            call.state = OutboundCall.State.EXPIRED
            call.save(update_fields=["state"])
            _timeline(call, "Call not placed: too late (the nurse may call again)")
            _setup_outcome(call, ok=False)
            return call
        if not settings.PUBLIC_BASE_URL:
            call.state = OutboundCall.State.FAILED
            call.last_error = "PUBLIC_BASE_URL is not set: Twilio could not reach the webhooks"
            call.save(update_fields=["state", "last_error"])
            _timeline(call, "Call not placed: CareLine's public URL is not configured")
            _setup_outcome(call, ok=False)
            return call
        call.attempts += 1
        call.last_attempt_at = now
        try:
            sid = place_call(
                to=call.nurse_number,
                from_number=call.clinic.twilio_number,
                url=_webhook_url("connect", call),
                status_callback=_webhook_url("status", call),
            )
        except CallNotConfigured:
            return call
        except CallRejected as exc:
            call.state = OutboundCall.State.FAILED
            call.last_error = str(exc)
        except CallUnavailable as exc:
            call.last_error = str(exc)
            if call.attempts >= MAX_ATTEMPTS:
                call.state = OutboundCall.State.FAILED
        else:
            call.state = OutboundCall.State.PLACED
            call.provider_sid = sid
            call.last_error = ""
        call.save()
        if call.state == OutboundCall.State.PLACED:
            _timeline(call, "Call placed: ringing the nurse's phone")
        elif call.state == OutboundCall.State.FAILED:
            _timeline(call, "Call could not be placed (Twilio refused it)", error=call.last_error)
            _setup_outcome(call, ok=False)
        logger.info("outbound call %s: %s after %d attempt(s)", call.pk, call.state, call.attempts)
        return call


def outbound_calls_sweep(*, limit: int = 50) -> int:
    """Re-try `queued` calls created more than 30 s ago (expiring those past their age); returns how many."""
    cutoff = timezone.now() - SWEEP_AGE
    due = (
        OutboundCall.objects.filter(state=OutboundCall.State.QUEUED, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    tried = 0
    for call_id in list(due):
        outbound_call_place(call_id=call_id)
        tried += 1
    return tried


def _locked(call_uuid: uuid.UUID, from_number: str) -> OutboundCall | None:
    """The call row, locked, if it exists and the webhook comes from its clinic's number (the caller ID
    Twilio shows on both legs); None otherwise (the webhook answers 400)."""
    call = (
        OutboundCall.objects.select_for_update(of=("self",))
        .select_related("case", "clinic")
        .filter(uuid=call_uuid)
        .first()
    )
    if call is None or call.clinic.twilio_number != from_number:
        return None
    return call


def _first(call: OutboundCall, key: str) -> bool:
    """True the first time webhook event `key` is seen for this call (and remembers it)."""
    if key in call.handled:
        return False
    call.handled = [*call.handled, key]
    return True


def _hangup(text: str) -> str:
    response = VoiceResponse()
    response.say(text, language=prompts.SAY_LANGUAGE["en"])
    response.hangup()
    return str(response)


@transaction.atomic
def call_connect(*, call_uuid: uuid.UUID, call_sid: str, from_number: str) -> str | None:
    """The nurse answered (`url` of the REST call): TwiML that `<Dial>`s the patient; None if unknown.

    The same document answers a retry. A call already over (e.g. expired) answers `<Say>` + `<Hangup>`.
    """
    call = _locked(call_uuid, from_number)
    if call is None or (call.provider_sid and call.provider_sid != call_sid):
        return None
    if call.state in TERMINAL_STATES:
        return _hangup("This call is no longer needed. Goodbye.")
    if _first(call, "connect"):
        call.provider_sid = call.provider_sid or call_sid
        call.state = OutboundCall.State.CONNECTING
        call.save(update_fields=["provider_sid", "state", "handled"])
        _timeline(call, "Nurse answered: dialling the patient")
    response = VoiceResponse()
    response.say(prompts.text("call_connecting", "en", case_id=call.case_id), language=prompts.SAY_LANGUAGE["en"])
    dial = response.dial(
        caller_id=call.clinic.twilio_number,
        action=reverse("ivr:outbound-dial-result", args=[call.uuid]),
        method="POST",
        timeout=RING_TIMEOUT_SECONDS,
        answer_on_bridge=True,
    )
    dial.number(
        call.patient_number,
        status_callback=reverse("ivr:outbound-patient-status", args=[call.uuid]),
        status_callback_event="answered completed",
        status_callback_method="POST",
    )
    return str(response)


@transaction.atomic
def call_patient_status(*, call_uuid: uuid.UUID, from_number: str, child_call_sid: str, status: str) -> bool:
    """The patient's leg changed status (`<Number statusCallback>`); `answered` marks the call bridged.

    Returns False for an unknown call. Other statuses are left to the `<Dial action>` (`call_dial_result`).
    """
    call = _locked(call_uuid, from_number)
    if call is None:
        return False
    if status in ("in-progress", "answered") and _first(call, "patient:answered"):
        call.patient_call_sid = child_call_sid
        if call.state not in TERMINAL_STATES:
            call.state = OutboundCall.State.BRIDGED
        call.save(update_fields=["patient_call_sid", "state", "handled"])
        _timeline(call, "Patient answered: call bridged with the nurse")
        _setup_outcome(call, ok=True)
    return True


def _missed_call_sms(call: OutboundCall) -> OutboundMessage | None:
    case = call.case
    body = prompts.text(
        "sms_missed_call",
        case.language,
        clinic=call.clinic.name,
        number=prompts.spoken_number(call.clinic.twilio_number),
    )
    return messages.outbound_message_record(
        clinic=call.clinic,
        case=case,
        to=call.patient_number,
        body=body,
        purpose="Missed-call SMS (reply CALL)",
        announce=True,
    )


@transaction.atomic
def call_dial_result(
    *, call_uuid: uuid.UUID, call_sid: str, from_number: str, dial_status: str, duration_seconds: int | None
) -> str | None:
    """The `<Dial action>`: the patient's leg is over (`DialCallStatus`). Returns TwiML for the nurse's leg,
    None for an unknown call. A missed call (no-answer, busy, failed, canceled) records the SMS with the
    callback option once, and tells the nurse; a retry answers the same and sends nothing more.
    """
    call = _locked(call_uuid, from_number)
    if call is None or (call.provider_sid and call.provider_sid != call_sid):
        return None
    outcome = DIAL_OUTCOMES.get(dial_status, OutboundCall.State.FAILED)
    if _first(call, "dial"):
        call.state = outcome
        call.ended_at = timezone.now()
        call.duration_seconds = duration_seconds
        if outcome in MISSED:
            call.save(update_fields=["state", "ended_at", "duration_seconds", "handled"])
            _timeline(call, f"Patient did not answer ({dial_status or 'unknown'})", dial_status=dial_status)
            call.missed_message = _missed_call_sms(call)
            call.save(update_fields=["missed_message"])
            _setup_outcome(call, ok=False)
        else:
            call.save(update_fields=["state", "ended_at", "duration_seconds", "handled"])
            minutes = f" after {duration_seconds} s" if duration_seconds is not None else ""
            _timeline(call, f"Call with the patient ended{minutes}", duration_seconds=duration_seconds)
            _setup_outcome(call, ok=True)  # counted already if the patient's leg reported "answered"
    if call.state in MISSED:
        sent = call.missed_message is not None and call.missed_message.state != OutboundMessage.State.SKIPPED
        return _hangup(prompts.text("call_patient_unreached" if sent else "call_patient_unreached_no_sms", "en"))
    response = VoiceResponse()
    response.hangup()
    return str(response)


@transaction.atomic
def call_status(*, call_uuid: uuid.UUID, call_sid: str, from_number: str, status: str) -> bool:
    """Status callback of the nurse's leg. Her phone not answering (no-answer, busy, failed, canceled)
    before the patient was dialled ends the call as `nurse_unreached` (the patient is never called, so no
    SMS). Returns False for an unknown call."""
    call = _locked(call_uuid, from_number)
    if call is None or (call.provider_sid and call.provider_sid != call_sid):
        return False
    if status in NURSE_LEG_UNANSWERED and _first(call, f"status:{status}"):
        if call.state in (OutboundCall.State.RECORDED, OutboundCall.State.QUEUED, OutboundCall.State.PLACED):
            call.state = OutboundCall.State.NURSE_UNREACHED
            call.ended_at = timezone.now()
            call.provider_sid = call.provider_sid or call_sid
            call.save(update_fields=["state", "ended_at", "provider_sid", "handled"])
            _timeline(call, f"The nurse's phone did not answer ({status}); the patient was not called")
            _setup_outcome(call, ok=False)
        else:
            call.save(update_fields=["handled"])
    elif status == "completed" and _first(call, "status:completed"):
        call.ended_at = call.ended_at or timezone.now()
        call.save(update_fields=["ended_at", "handled"])
    return True
