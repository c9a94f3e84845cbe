"""Phone fallback end to end: "Call patient" on the case page -> signed Twilio webhooks of the call ->
missed call -> SMS with a callback option -> the patient replies CALL -> the same case, every step on the
timeline and announced to the consoles. Also the nurse's text reply and the STOP refusal.

No Twilio account in tests (`TWILIO_ACCOUNT_SID` empty): the call is `recorded` and the test posts the
webhooks Twilio would post, signed, with real-shaped forms (`tests/fixtures/twilio_requests/`).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client

from clinics.events import group_name
from clinics.models import AuditEvent, StaffMember
from ivr.models import InboundMessage, OutboundCall, OutboundMessage
from ivr.services.outbound_calls import outbound_calls_sweep
from ivr.twilio.twiml_reader import twiml_to_actions
from tests.conftest import NORTH_NUMBER, SOUTH_NUMBER
from tests.ivr.phone import new_call_sid, twilio_form
from tests.ivr.texting import replies, text
from tests.twilio import sign, signed_post
from triage.models import CaseEvent

pytestmark = pytest.mark.django_db

PATIENT = "+15553031209"
ALICE_DESK = "+15550100111"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def accepted(personas, make_case):
    """A North case taken and accepted by alice through the console; returns (case, alice's client)."""
    case = make_case(personas.north, acuity=3, callback_number=PATIENT)
    nurse = logged_in(personas.alice)
    assert nurse.post("/console/next/").status_code == 302
    assert nurse.post(f"/console/cases/{case.pk}/accept/").status_code == 302
    case.refresh_from_db()
    assert case.state == "in_progress"
    return case, nurse


class CallLegs:
    """Twilio's side of one "Call patient" call: posts its webhooks signed, as Twilio would."""

    def __init__(self, client: Client, call: OutboundCall, *, from_number: str = NORTH_NUMBER) -> None:
        self.client = client
        self.call = call
        self.nurse_sid = new_call_sid()
        self.patient_sid = new_call_sid()
        self.from_number = from_number

    def _url(self, name: str) -> str:
        return f"/ivr/outbound/{self.call.uuid}/{name}/"

    def connect(self):
        params = twilio_form("outbound_answered", CallSid=self.nurse_sid, From=self.from_number, To=ALICE_DESK)
        return signed_post(self.client, self._url("connect"), params)

    def patient_answered(self):
        params = twilio_form(
            "outbound_number_status", CallSid=self.patient_sid, ParentCallSid=self.nurse_sid, From=self.from_number
        )
        return signed_post(self.client, self._url("patient-status"), params)

    def dial_result(self, status: str, duration: str = "0"):
        params = twilio_form(
            "outbound_dial_action",
            CallSid=self.nurse_sid,
            DialCallSid=self.patient_sid,
            DialCallStatus=status,
            DialCallDuration=duration,
            From=self.from_number,
            To=ALICE_DESK,
        )
        return signed_post(self.client, self._url("dial-result"), params)

    def nurse_status(self, status: str):
        params = twilio_form(
            "status_completed", CallSid=self.nurse_sid, CallStatus=status, From=self.from_number, To=ALICE_DESK
        )
        return signed_post(self.client, self._url("status"), params)


def _texts_to(number):
    """Outbox rows to `number` (the column is encrypted: compared in Python)."""
    return [m for m in OutboundMessage.objects.order_by("pk") if m.to == number]


def _call_summaries(case):
    return list(case.events.filter(kind=CaseEvent.Kind.CALL).values_list("summary", flat=True))


def test_call_patient_then_no_answer_sends_the_callback_sms_and_the_reply_lands_on_the_case(
    personas, accepted, django_capture_on_commit_callbacks
):
    case, nurse = accepted
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name(personas.north.pk), channel)

    with django_capture_on_commit_callbacks(execute=True):
        response = nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": "(555) 010-0111"})
    assert response.status_code == 302 and response["Location"] == f"/console/cases/{case.pk}/"
    call = OutboundCall.objects.get()
    assert (call.case, call.nurse, call.state) == (case, personas.alice, OutboundCall.State.RECORDED)
    assert call.nurse_number == ALICE_DESK and call.patient_number == PATIENT
    assert StaffMember.objects.get(user=personas.alice).desk_number == ALICE_DESK, "kept for next time"
    assert AuditEvent.objects.filter(action="case.call", object_id=str(case.pk)).exists()
    message = async_to_sync(layer.receive)(channel)
    assert message["event"] == "case.updated" and message["payload"] == {"case_id": case.pk, "fields": ["calls"]}

    twilio = CallLegs(Client(), call)
    with django_capture_on_commit_callbacks(execute=True):
        connect = twilio.connect()
    assert connect.status_code == 200
    message = async_to_sync(layer.receive)(channel)
    assert message["payload"] == {"case_id": case.pk, "fields": ["calls"]}, "the console sees each step live"
    actions = twiml_to_actions(connect.content)
    assert actions[0]["verb"] == "say" and f"case {case.pk}" in actions[0]["text"]
    assert actions[1] == {"verb": "dial", "number": PATIENT, "callerId": NORTH_NUMBER}
    assert f'action="/ivr/outbound/{call.uuid}/dial-result/"' in connect.content.decode()
    call.refresh_from_db()
    assert call.state == OutboundCall.State.CONNECTING and call.provider_sid == twilio.nurse_sid

    missed = twilio.dial_result("no-answer")
    assert missed.status_code == 200
    assert "A text message with a callback option was sent" in twiml_to_actions(missed.content)[0]["text"]
    call.refresh_from_db()
    assert call.state == OutboundCall.State.NO_ANSWER
    (sms,) = _texts_to(PATIENT)
    assert sms.state == OutboundMessage.State.RECORDED and "Reply CALL" in sms.body
    assert call.missed_message == sms

    # Twilio retries every webhook: nothing happens twice.
    assert twilio.connect().status_code == 200
    assert twilio.dial_result("no-answer").content == missed.content
    assert len(_texts_to(PATIENT)) == 1
    summaries = _call_summaries(case)
    assert summaries == [
        "Calling the patient: Alice Nurse's phone rings first (no Twilio account: recorded, not placed)",
        "Nurse answered: dialling the patient",
        "Patient did not answer (no-answer)",
    ]
    sms_events = case.events.filter(kind=CaseEvent.Kind.SMS)  # summary is encrypted at rest: compare in Python
    assert sum(event.summary.startswith("Missed-call SMS") for event in sms_events) == 1

    # The patient replies CALL: same case, timeline, callback preference, acknowledgement.
    reply = text(Client(), from_number=PATIENT, body="Call")
    assert "A nurse will call you back" in replies(reply)[0]
    assert InboundMessage.objects.get().case == case
    assert [e.summary for e in case.events.all()].count("Patient replied CALL: asks to be called back") == 1

    # The case page shows the whole conversation: the missed-call text, the reply, the call's outcome.
    page = nurse.get(f"/console/cases/{case.pk}/").content.decode()
    assert "Reply CALL to be called back" in page and "Patient</strong>: Call" in page
    assert 'data-state="no_answer"' in page
    assert "Patient did not answer (no-answer)" in page
    partial = nurse.get(f"/console/cases/{case.pk}/conversation/")
    assert partial.status_code == 200 and b"Reply CALL" in partial.content
    assert AuditEvent.objects.filter(action="case.conversation.read", object_id=str(case.pk)).exists()


def test_an_answered_call_is_bridged_and_completes_without_sms(personas, accepted):
    case, nurse = accepted
    nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": ALICE_DESK})
    call = OutboundCall.objects.get()
    twilio = CallLegs(Client(), call)
    twilio.connect()
    assert twilio.patient_answered().status_code == 204
    assert twilio.patient_answered().status_code == 204  # retry
    call.refresh_from_db()
    assert call.state == OutboundCall.State.BRIDGED and call.patient_call_sid == twilio.patient_sid
    done = twilio.dial_result("completed", duration="187")
    assert twiml_to_actions(done.content) == [{"verb": "hangup"}]
    call.refresh_from_db()
    assert call.state == OutboundCall.State.COMPLETED and call.duration_seconds == 187
    assert not _texts_to(PATIENT)
    assert _call_summaries(case)[-2:] == [
        "Patient answered: call bridged with the nurse",
        "Call with the patient ended after 187 s",
    ]


def test_the_nurses_phone_not_answering_never_dials_the_patient(personas, accepted):
    case, nurse = accepted
    nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": ALICE_DESK})
    call = OutboundCall.objects.get()
    twilio = CallLegs(Client(), call)
    assert twilio.nurse_status("no-answer").status_code == 204
    assert twilio.nurse_status("no-answer").status_code == 204
    call.refresh_from_db()
    assert call.state == OutboundCall.State.NURSE_UNREACHED
    assert not _texts_to(PATIENT)
    assert _call_summaries(case).count("The nurse's phone did not answer (no-answer); the patient was not called") == 1
    # A late connect (the nurse picked up after all) hangs up instead of dialling.
    late = twiml_to_actions(twilio.connect().content)
    assert late[-1] == {"verb": "hangup"} and not [a for a in late if a["verb"] == "dial"]
    # The call is over: a new one may be placed.
    assert nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": ALICE_DESK}).status_code == 302
    assert OutboundCall.objects.count() == 2


def test_call_webhooks_are_checked_forged_wrong_clinic_or_unknown_call(personas, accepted):
    case, nurse = accepted
    nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": ALICE_DESK})
    call = OutboundCall.objects.get()
    path = f"/ivr/outbound/{call.uuid}/dial-result/"
    params = twilio_form("outbound_dial_action", From=NORTH_NUMBER)
    client = Client()
    assert client.post(path, params).status_code == 403
    assert client.post(path, params, HTTP_X_TWILIO_SIGNATURE=sign(path, params, token="nope")).status_code == 403
    assert CallLegs(client, call, from_number=SOUTH_NUMBER).dial_result("no-answer").status_code == 400
    unknown = f"/ivr/outbound/{OutboundCall().uuid}/connect/"
    assert signed_post(client, unknown, twilio_form("outbound_answered")).status_code == 400
    # Once Twilio gave the call its CallSid, another CallSid is refused.
    legs = CallLegs(client, call)
    legs.connect()
    intruder = CallLegs(client, call)
    assert intruder.dial_result("no-answer").status_code == 400
    call.refresh_from_db()
    assert call.state == OutboundCall.State.CONNECTING
    assert not _texts_to(PATIENT)


def test_only_the_nurse_holding_the_accepted_case_can_call(personas, make_case, accepted):
    case, nurse = accepted
    dave = logged_in(personas.dave)
    response = dave.post(f"/console/cases/{case.pk}/call/", {"nurse_number": "+15550100122"}, follow=True)
    assert b"held by another nurse" in response.content
    carol = logged_in(personas.carol)
    assert carol.post(f"/console/cases/{case.pk}/call/", {"nurse_number": "+15550200122"}).status_code == 404
    assert carol.post(f"/console/cases/{case.pk}/sms/", {"body": "hi"}).status_code == 404
    assert AuditEvent.objects.filter(clinic=personas.south, action="access.denied", object_id=str(case.pk)).count() == 2
    # Reserved but not accepted yet: no call.
    other = make_case(personas.north, acuity=3, callback_number="+15557770010")
    dave.post("/console/next/")
    other.refresh_from_db()
    assert other.reserved_by == personas.dave and other.state == "reserved"
    response = dave.post(f"/console/cases/{other.pk}/call/", {"nurse_number": "+15550100122"}, follow=True)
    assert b"cannot take that action" in response.content
    assert not OutboundCall.objects.exists()


def test_a_second_click_while_a_call_is_in_progress_is_refused(personas, accepted):
    case, nurse = accepted
    nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": ALICE_DESK})
    response = nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": ALICE_DESK}, follow=True)
    assert b"already in progress" in response.content
    assert OutboundCall.objects.count() == 1
    bad = nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": "not a number"}, follow=True)
    assert OutboundCall.objects.count() == 1 and b"Enter your phone number" in bad.content


def test_without_a_number_the_nurse_is_asked_for_one(personas, accepted):
    case, nurse = accepted
    response = nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": ""}, follow=True)
    assert b"Enter your phone number" in response.content
    assert not OutboundCall.objects.exists()


def test_with_a_twilio_account_the_call_is_queued_and_placed_after_commit(
    personas, accepted, settings, django_capture_on_commit_callbacks
):
    case, nurse = accepted
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    from contactcenter.conversation import call_patient

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call = call_patient(user=personas.alice, case_id=case.pk, nurse_number=ALICE_DESK)
    assert call.state == OutboundCall.State.QUEUED
    assert len(callbacks) >= 1  # ivr.tasks.place_outbound_call, dispatched only once committed
    # Never placed late: a queued call older than OUTBOUND_CALL_MAX_AGE_SECONDS expires in the sweep.
    OutboundCall.objects.filter(pk=call.pk).update(created_at=call.created_at - timedelta(minutes=5))
    assert outbound_calls_sweep() == 1
    call.refresh_from_db()
    assert call.state == OutboundCall.State.EXPIRED
    assert "Call not placed: too late (the nurse may call again)" in _call_summaries(case)


def test_nurse_reply_from_the_case_page_and_refusal_after_stop(personas, accepted):
    case, nurse = accepted
    response = nurse.post(f"/console/cases/{case.pk}/sms/", {"body": "Take 500 mg paracetamol and call back"})
    assert response.status_code == 302
    reply = OutboundMessage.objects.get(purpose="Nurse reply")
    assert reply.sent_by == personas.alice and reply.to == PATIENT and reply.state == "recorded"
    page = nurse.get(f"/console/cases/{case.pk}/").content.decode()
    assert "Alice Nurse</strong>: Take 500 mg paracetamol and call back" in page
    # Another nurse cannot reply on alice's case.
    assert (
        b"held by another nurse"
        in logged_in(personas.dave).post(f"/console/cases/{case.pk}/sms/", {"body": "hi"}, follow=True).content
    )

    text(Client(), from_number=PATIENT, body="STOP")
    refused = nurse.post(f"/console/cases/{case.pk}/sms/", {"body": "Are you there?"}, follow=True)
    assert b"replied STOP" in refused.content
    assert OutboundMessage.objects.filter(purpose="Nurse reply").count() == 1
    page = nurse.get(f"/console/cases/{case.pk}/").content.decode()
    assert 'id="sms-opted-out"' in page and 'id="sms-reply-form"' not in page

    # A missed call after STOP records no text, and the nurse hears so.
    nurse.post(f"/console/cases/{case.pk}/call/", {"nurse_number": ALICE_DESK})
    twilio = CallLegs(Client(), OutboundCall.objects.get())
    twilio.connect()
    said = twiml_to_actions(twilio.dial_result("busy").content)[0]["text"]
    assert said == "The patient did not answer. No text message could be sent."
    assert OutboundMessage.objects.get(purpose__startswith="Missed-call").state == OutboundMessage.State.SKIPPED
