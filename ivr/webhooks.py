"""Twilio webhooks: verify (`ivr.twilio.signature.twilio_webhook`), find the clinic, call a service,
answer TwiML. The number's "A call comes in" URL is `/ivr/voice/`, its status callback `/ivr/voice/status/`;
"A message comes in" is `/ivr/sms/`. `/ivr/outbound/<uuid>/...` are the "Call patient" call's own URLs,
given to Twilio when the call is placed (`ivr.services.outbound_calls`).
"""

from __future__ import annotations

import logging
import uuid

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

from clinics.models import Clinic
from clinics.selectors import clinic_for_number
from ivr.services import calls, messages, outbound_calls
from ivr.services import sms as sms_service
from ivr.twilio.signature import TwilioCall, TwilioMessage, TwilioMessageStatus, twilio_webhook

logger = logging.getLogger(__name__)

TWIML_CONTENT_TYPE = "text/xml; charset=utf-8"
UNKNOWN_CALL = "no such outbound call"


def _twiml(document: str) -> HttpResponse:
    return HttpResponse(document, content_type=TWIML_CONTENT_TYPE)


def _clinic(request: HttpRequest, call: TwilioCall) -> Clinic | None:
    clinic = clinic_for_number(call.to_number)
    if clinic is not None:
        request.careline_clinic_id = clinic.pk  # type: ignore[attr-defined]  # the IVR latency SLO's clinic
    if clinic is None:
        logger.warning(
            "twilio webhook %s refused: 'To' is no clinic's number (CallSid %s)", request.path, call.call_sid
        )
    return clinic


@twilio_webhook
def voice(request: HttpRequest, call: TwilioCall) -> HttpResponse:
    """A call comes in: emergency disclaimer and the language menu."""
    clinic = _clinic(request, call)
    if clinic is None:
        return HttpResponseBadRequest("unknown number")
    return _twiml(calls.call_answer(call_sid=call.call_sid, from_number=call.from_number, clinic=clinic))


@twilio_webhook
def step(request: HttpRequest, call: TwilioCall, step: str) -> HttpResponse:
    """A `<Gather>` action: `Digits` for `step`; `?seq=` is the leg's sequence number the action was made for."""
    clinic = _clinic(request, call)
    if clinic is None:
        return HttpResponseBadRequest("unknown number")
    seq_param = request.GET.get("seq", "")
    seq = int(seq_param) if seq_param.isdigit() else -1
    try:
        document = calls.call_step(
            call_sid=call.call_sid, from_number=call.from_number, clinic=clinic, step=step, seq=seq, digits=call.digits
        )
    except KeyError:
        return HttpResponseBadRequest("unknown step")
    return _twiml(document)


@twilio_webhook
def wait(request: HttpRequest, call: TwilioCall, case_uuid: uuid.UUID) -> HttpResponse:
    """The `<Enqueue>` waitUrl: position in line and hold music, looping."""
    if _clinic(request, call) is None:
        return HttpResponseBadRequest("unknown number")
    document = calls.call_wait(call_sid=call.call_sid, case_uuid=case_uuid)
    if document is None:
        return HttpResponseBadRequest("no such call in this queue")
    return _twiml(document)


@twilio_webhook
def queue_left(request: HttpRequest, call: TwilioCall, case_uuid: uuid.UUID) -> HttpResponse:
    """The `<Enqueue action>`: the caller left the queue (`QueueResult`); e.g. dial on-call after a red flag."""
    if _clinic(request, call) is None:
        return HttpResponseBadRequest("unknown number")
    document = calls.call_queue_left(
        call_sid=call.call_sid, case_uuid=case_uuid, queue_result=call.params.get("QueueResult", "")
    )
    if document is None:
        return HttpResponseBadRequest("no such call in this queue")
    return _twiml(document)


@twilio_webhook
def status(request: HttpRequest, call: TwilioCall) -> HttpResponse:
    """Status callback: the call ended (or changed status). Twilio ignores the body; answer 204."""
    if _clinic(request, call) is None:
        return HttpResponseBadRequest("unknown number")
    calls.call_status(call_sid=call.call_sid, call_status=call.call_status, duration_seconds=call.call_duration)
    return HttpResponse(status=204)


@twilio_webhook(payload=TwilioMessage.from_post)
def sms(request: HttpRequest, message: TwilioMessage) -> HttpResponse:
    """A text comes in: attach it to the sender's open case (or start one), honour STOP/HELP/START/CALL;
    answer TwiML `<Message>` (or an empty `<Response/>`)."""
    clinic = clinic_for_number(message.to_number)
    if clinic is None:
        logger.warning("sms webhook refused: 'To' is no clinic's number (MessageSid %s)", message.message_sid)
        return HttpResponseBadRequest("unknown number")
    document = sms_service.sms_receive(
        clinic=clinic, message_sid=message.message_sid, from_number=message.from_number, body=message.body
    )
    return _twiml(document)


@twilio_webhook(payload=TwilioMessageStatus.from_post)
def sms_status(request: HttpRequest, status: TwilioMessageStatus) -> HttpResponse:
    """Messages status callback: delivery state of an outbox SMS. Twilio ignores the body; answer 204."""
    messages.delivery_status_record(message_sid=status.message_sid, status=status.status, error_code=status.error_code)
    return HttpResponse(status=204)


@twilio_webhook
def outbound_connect(request: HttpRequest, call: TwilioCall, call_uuid: uuid.UUID) -> HttpResponse:
    """The nurse answered the "Call patient" call: `<Dial>` the patient."""
    document = outbound_calls.call_connect(call_uuid=call_uuid, call_sid=call.call_sid, from_number=call.from_number)
    if document is None:
        return HttpResponseBadRequest(UNKNOWN_CALL)
    return _twiml(document)


@twilio_webhook
def outbound_patient_status(request: HttpRequest, call: TwilioCall, call_uuid: uuid.UUID) -> HttpResponse:
    """The patient's leg changed status (`<Number statusCallback>`); 204."""
    if not outbound_calls.call_patient_status(
        call_uuid=call_uuid, from_number=call.from_number, child_call_sid=call.call_sid, status=call.call_status
    ):
        return HttpResponseBadRequest(UNKNOWN_CALL)
    return HttpResponse(status=204)


@twilio_webhook
def outbound_dial_result(request: HttpRequest, call: TwilioCall, call_uuid: uuid.UUID) -> HttpResponse:
    """The `<Dial action>`: how the patient's leg ended (`DialCallStatus`); a missed call sends the SMS."""
    duration = call.params.get("DialCallDuration", "")
    document = outbound_calls.call_dial_result(
        call_uuid=call_uuid,
        call_sid=call.call_sid,
        from_number=call.from_number,
        dial_status=call.params.get("DialCallStatus", ""),
        duration_seconds=int(duration) if duration.isdigit() else None,
    )
    if document is None:
        return HttpResponseBadRequest(UNKNOWN_CALL)
    return _twiml(document)


@twilio_webhook
def outbound_status(request: HttpRequest, call: TwilioCall, call_uuid: uuid.UUID) -> HttpResponse:
    """Status callback of the nurse's leg; 204."""
    if not outbound_calls.call_status(
        call_uuid=call_uuid, call_sid=call.call_sid, from_number=call.from_number, status=call.call_status
    ):
        return HttpResponseBadRequest(UNKNOWN_CALL)
    return HttpResponse(status=204)
