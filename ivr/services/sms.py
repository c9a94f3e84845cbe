"""Two-way SMS: an inbound text (`POST /ivr/sms/`) lands on the right case, keywords are honoured.

Rules, in order, for a text from `From` to a clinic's number (the clinic is the one whose number is `To`):

1. Idempotent per `MessageSid`: Twilio's retry of a message already handled gets the same TwiML reply and
   changes nothing (the `InboundMessage` row is written first; a concurrent duplicate waits on its unique
   index, then reads the first one's reply).
2. Keywords (`ivr.keywords`): STOP (and equivalents) records an opt-out for this number and clinic, START
   removes it, HELP answers the help text; CALL (after a missed call) asks for a callback; CONFIRM and
   CANCEL APPT answer the latest appointment reminder sent to the number (`ivr.services.reminders`).
3. Otherwise the text attaches to the clinic's most recent open case whose callback number is `From`, or
   whose confirmed patient the EHR lists on that number (`Patient?phone=`, bounded by
   `FHIR_IVR_TIMEOUT_SECONDS`, asked only when an identified open case exists); when there is none,
   it starts a message-only case (channel `sms`, acuity `NURSE_ASSESSMENT_ACUITY` = 3,
   "urgent" until a nurse assesses it, as for an IVR caller who reached a nurse before the protocol
   decided). Never another clinic's case.
4. Emergency / "worse" words (`ivr.keywords.screen`) raise the case's acuity (1 / 2) and the patient is told
   to call 911 now (`<Message>` reply); after a reminder, that reminder records the reply and the case.

Bodies are encrypted at rest (`InboundMessage.body`); the timeline says *that* a text arrived, never what it
says. Replies are fixed texts (no PHI) in TwiML `<Message>`; no reply for ordinary texts on an open case
(the nurse answers from the console).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from twilio.twiml.messaging_response import MessagingResponse

from clinics import events
from clinics.models import Clinic
from ehr.phone import InvalidPhoneNumber, to_e164
from ehr.services import find_patients_by_phone
from ehr.types import EhrError
from ivr import keywords, prompts
from ivr.models import AppointmentReminder, InboundMessage
from ivr.services import optout, reminders
from ivr.services.cases import NURSE_ASSESSMENT_ACUITY
from triage.messages import RULE_LABELS, case_raise_from_message, open_case_for_number
from triage.models import OPEN_STATES, Case, CaseEvent
from triage.services import case_add_event, case_enqueue, case_set_contact_preference

logger = logging.getLogger(__name__)


def _twiml(text: str | None) -> str:
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)


def _normalise(number: str) -> str:
    try:
        return to_e164(number)
    except InvalidPhoneNumber:
        return number.strip()


def sms_receive(*, clinic: Clinic, message_sid: str, from_number: str, body: str) -> str:
    """Handle one inbound SMS to `clinic` (see the module docstring); returns the TwiML to answer.

    `from_number` as Twilio sent it (E.164); `body` up to 1,600 characters. Idempotent per `message_sid`.
    Must be called outside a transaction: the EHR may be asked (bounded, before any row is locked).
    """
    existing = InboundMessage.objects.filter(message_sid=message_sid).first()
    if existing is not None:
        return existing.reply
    number = _normalise(from_number)
    patient_ids = _ehr_patients_to_match(clinic=clinic, number=number, body=body)
    try:
        with transaction.atomic():
            inbound = InboundMessage.objects.create(
                clinic=clinic, message_sid=message_sid, from_number=from_number, body=body[:1600]
            )
            reply = _handle(inbound=inbound, clinic=clinic, number=number, body=body, patient_ids=patient_ids)
            inbound.reply = reply
            inbound.save(update_fields=["case", "keyword", "reply"])
            return reply
    except IntegrityError:
        # Twilio's retry of a message already handled (or being handled: the unique index made us wait).
        existing = InboundMessage.objects.filter(message_sid=message_sid).first()
        if existing is None:
            raise
        logger.info("inbound SMS %s: retry, answered with the stored reply", message_sid)
        return existing.reply


def _ehr_patients_to_match(*, clinic: Clinic, number: str, body: str) -> frozenset[str]:
    """FHIR Patient ids the EHR holds for `number`, asked only when it can matter: a free text or CALL, no
    open case with this callback number, and open cases of identified patients in the clinic (e.g. the
    patient called from another phone). Waits at most `FHIR_IVR_TIMEOUT_SECONDS`; any EHR trouble or a
    number that is no phone number gives the empty set (the text then starts a message-only case).
    Identity is never *assigned* from the number alone (a household may share it): the ids only let the
    text join a case whose patient was already confirmed.
    """
    if keywords.keyword(body) in (keywords.STOP, keywords.START, keywords.HELP):
        return frozenset()
    if open_case_for_number(clinic=clinic, number=number) is not None:
        return frozenset()
    if not Case.objects.filter(clinic=clinic, state__in=OPEN_STATES).exclude(patient_fhir_id="").exists():
        return frozenset()
    try:
        matches = find_patients_by_phone(number, timeout=settings.FHIR_IVR_TIMEOUT_SECONDS)
    except (EhrError, InvalidPhoneNumber):
        logger.info("inbound SMS: EHR lookup unavailable; the text is matched by callback number only")
        return frozenset()
    return frozenset(match.fhir_id for match in matches)


def _language(case: Case | None, body: str) -> str:
    if keywords.is_spanish_keyword(body):
        return "es"
    return case.language if case is not None else "en"


def _note(case: Case, inbound: InboundMessage, summary: str) -> None:
    case_add_event(case=case, kind=CaseEvent.Kind.SMS, summary=summary, detail={"inbound_message_id": inbound.pk})
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["messages"]})


def _handle(*, inbound: InboundMessage, clinic: Clinic, number: str, body: str, patient_ids: frozenset[str]) -> str:
    word = keywords.keyword(body)
    inbound.keyword = word
    case = open_case_for_number(clinic=clinic, number=number, patient_fhir_ids=patient_ids)
    language = _language(case, body)
    values = {"clinic": clinic.name, "number": prompts.spoken_number(clinic.twilio_number)}
    if word == keywords.STOP:
        optout.opt_out(clinic=clinic, number=number, keyword=body.strip().upper()[:16])
        if case is not None:
            inbound.case = case
            _note(case, inbound, "Patient replied STOP: no more text messages to this number")
        return _twiml(prompts.text("sms_stop", language, **values))
    if word == keywords.START:
        resumed = optout.opt_in(clinic=clinic, number=number, keyword=body.strip().upper()[:16])
        if not resumed and keywords.keyword_text(body) == "YES":
            # "YES" from a number that had not opted out, after a reminder, is the patient confirming.
            reminder = reminders.reminder_for_reply(clinic=clinic, number=number)
            if reminder is not None and not reminder.reply:
                word = keywords.CONFIRM
        if word == keywords.START and case is not None:
            inbound.case = case
            _note(case, inbound, "Patient replied START: text messages allowed again")
        if word == keywords.START:
            return _twiml(prompts.text("sms_start", language, **values) if resumed or case is None else None)
    if word == keywords.HELP:
        if case is not None:
            inbound.case = case
            _note(case, inbound, "Patient replied HELP: help text sent")
        return _twiml(prompts.text("sms_help", language, **values))

    if word in (keywords.CONFIRM, keywords.CANCEL_APPOINTMENT):
        reminder = reminders.reminder_for_reply(clinic=clinic, number=number)
        if reminder is not None:
            confirmed = word == keywords.CONFIRM
            answer = AppointmentReminder.Reply.CONFIRMED if confirmed else AppointmentReminder.Reply.CANCEL_REQUESTED
            reminders.reminder_reply_record(reminder=reminder, reply=answer)
            if case is not None:
                inbound.case = case
                label = "confirmed" if confirmed else "asked to cancel"
                _note(case, inbound, f"Patient {label} an appointment (reply to a reminder)")
            key = "sms_reminder_confirmed" if confirmed else "sms_reminder_cancel"
            return _twiml(reminders.reply_text(reminder=reminder, key=key))

    screen = keywords.screen(body)
    created = case is None
    if case is None:
        case = case_enqueue(
            clinic=clinic,
            callback_number=number,
            acuity=screen.acuity or NURSE_ASSESSMENT_ACUITY,
            language=language,
            channel=Case.Channel.SMS,
            contact_preference=Case.ContactPreference.CALLBACK,
        )
        summary = "Message-only case started by a text from the patient"
        if screen.acuity is not None:
            label = RULE_LABELS.get(screen.rule, screen.rule)
            summary += f" ({label}: acuity {screen.acuity}; patient told to call 911)"
        _note(case, inbound, summary)
    inbound.case = case
    if word == keywords.CALL:
        if not created:
            _note(case, inbound, "Patient replied CALL: asks to be called back")
        case_set_contact_preference(
            case_id=case.pk, clinic=clinic, preference=Case.ContactPreference.CALLBACK, reason="replied CALL"
        )
        if optout.is_opted_out(clinic=clinic, number=number):
            return _twiml(None)
        return _twiml(prompts.text("sms_call_requested", language, **values))
    if not created:
        _note(case, inbound, "Text from the patient")
        if screen.acuity is not None:
            case_raise_from_message(case_id=case.pk, to_acuity=screen.acuity, rule=screen.rule)
    if screen.acuity is not None:
        reminder = reminders.reminder_for_reply(clinic=clinic, number=number)
        if reminder is not None and not reminder.reply:
            reminders.reminder_reply_record(reminder=reminder, reply=AppointmentReminder.Reply.WORSE, case=case)
            _note(case, inbound, "The text answers an appointment reminder: the patient feels worse")
    if optout.is_opted_out(clinic=clinic, number=number):
        return _twiml(None)
    if screen.acuity is not None:
        return _twiml(prompts.text("sms_emergency", language, **values))
    return _twiml(prompts.text("sms_received_new", language, **values) if created else None)
