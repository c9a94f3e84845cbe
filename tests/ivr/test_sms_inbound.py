"""Two-way SMS, inbound (`POST /ivr/sms/`, `ivr.services.sms`): signed webhooks end to end.

Covers: signature and shape checks (403/400, nothing written), attaching to the sender's open case of the
right clinic (never another clinic's), message-only cases, Twilio retries by MessageSid, STOP/START/HELP
(English and Spanish) honoured per number and clinic, the emergency / "worse" words screen, and the
Messages status callback.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from ivr import keywords
from ivr.models import InboundMessage, OutboundMessage, SmsOptOut
from ivr.services.messages import outbound_message_record
from tests.conftest import NORTH_NUMBER, SOUTH_NUMBER
from tests.ivr.phone import twilio_form
from tests.ivr.texting import new_message_sid, replies, text
from tests.twilio import sign, signed_post
from triage.models import Case, CaseEvent
from triage.services import case_enqueue

pytestmark = pytest.mark.django_db

PATIENT = "+15553031209"


@pytest.fixture
def client() -> Client:
    return Client()


def _case(clinic, *, number=PATIENT, acuity=4, **fields):
    return case_enqueue(clinic=clinic, callback_number=number, acuity=acuity, **fields)


def _sms_events(case):
    return list(case.events.filter(kind=CaseEvent.Kind.SMS).values_list("summary", flat=True))


def test_a_forged_or_unsigned_text_is_refused_and_nothing_is_written(personas, client):
    params = twilio_form("sms_inbound", From=PATIENT, To=NORTH_NUMBER)
    assert client.post("/ivr/sms/", params).status_code == 403
    forged = client.post("/ivr/sms/", params, HTTP_X_TWILIO_SIGNATURE=sign("/ivr/sms/", params, token="wrong"))
    assert forged.status_code == 403
    tampered = dict(params, Body="STOP")  # signed for another body
    assert client.post("/ivr/sms/", tampered, HTTP_X_TWILIO_SIGNATURE=sign("/ivr/sms/", params)).status_code == 403
    assert not InboundMessage.objects.exists() and not Case.objects.exists() and not SmsOptOut.objects.exists()


def test_a_signed_text_without_message_sid_or_to_an_unknown_number_is_400(personas, client):
    params = twilio_form("sms_inbound", From=PATIENT, To=NORTH_NUMBER)
    del params["MessageSid"]
    assert signed_post(client, "/ivr/sms/", params).status_code == 400
    unknown = twilio_form("sms_inbound", From=PATIENT, To="+15550999999")
    assert signed_post(client, "/ivr/sms/", unknown).status_code == 400
    assert not InboundMessage.objects.exists() and not Case.objects.exists()


def test_a_text_attaches_to_the_open_case_of_that_clinic_and_never_another_clinics(personas, client):
    north = _case(personas.north)
    south = _case(personas.south)  # the same patient number, at the other clinic
    response = text(client, from_number=PATIENT, body="Still feverish tonight")
    assert replies(response) == []  # the nurse answers from the console
    inbound = InboundMessage.objects.get()
    assert inbound.case == north and inbound.clinic == personas.north
    assert "Text from the patient" in _sms_events(north)
    assert _sms_events(south) == []
    assert Case.objects.count() == 2

    text(client, from_number=PATIENT, body="Now 39.5", to=SOUTH_NUMBER)
    assert InboundMessage.objects.get(clinic=personas.south).case == south


def test_the_body_is_encrypted_at_rest_and_kept_off_the_timeline(personas, client):
    case = _case(personas.north)
    text(client, from_number=PATIENT, body="Rash on both arms")
    with connection.cursor() as cursor:
        cursor.execute("SELECT body FROM ivr_inboundmessage")
        (stored,) = cursor.fetchone()
    assert stored.startswith("enc:v1:") and "Rash" not in stored
    assert not any("Rash" in s for s in case.events.values_list("summary", flat=True))
    assert InboundMessage.objects.get().body == "Rash on both arms"


def test_a_text_from_an_unknown_number_starts_a_message_only_case(personas, client):
    response = text(client, from_number="+15557770001", body="My son has a cough since Monday")
    case = Case.objects.get()
    assert case.channel == Case.Channel.SMS and case.state == "queued"
    assert case.acuity == 3, "unassessed text: urgent until a nurse has seen it"
    assert case.callback_number == "+15557770001" and case.clinic == personas.north
    assert "We received your message" in replies(response)[0] and "911" in replies(response)[0]
    assert any("Message-only case" in s for s in _sms_events(case))


def test_a_closed_case_is_not_reopened_a_new_case_starts(personas, client):
    closed = _case(personas.north)
    Case.objects.filter(pk=closed.pk).update(state="closed")
    text(client, from_number=PATIENT, body="One more question")
    assert InboundMessage.objects.get().case != closed
    assert Case.objects.filter(channel=Case.Channel.SMS).count() == 1


def test_twilio_retries_of_a_message_change_nothing(personas, client):
    sid = new_message_sid()
    first = text(client, from_number="+15557770002", body="Headache", sid=sid)
    again = text(client, from_number="+15557770002", body="Headache", sid=sid)
    assert again.content == first.content
    assert Case.objects.count() == 1 and InboundMessage.objects.count() == 1
    assert len(_sms_events(Case.objects.get())) == 1


@pytest.mark.parametrize(
    ("body", "acuity"),
    [
        ("my dad has CHEST PAIN again", 1),
        ("she can\u2019t breathe well", 1),
        ("Tiene dolor de pecho", 1),
        ("I feel worse", 2),
        ("está peor", 2),
    ],
)
def test_emergency_and_worse_words_raise_the_open_case_and_advise_911(personas, client, body, acuity):
    case = _case(personas.north, acuity=4)
    response = text(client, from_number=PATIENT, body=body)
    case.refresh_from_db()
    assert case.acuity == acuity
    assert "Call 911 now" in replies(response)[0] or "Llame al 911 ahora" in replies(response)[0]
    raised = case.events.get(kind=CaseEvent.Kind.RISK)
    assert raised.detail["from"] == 4 and raised.detail["to"] == acuity
    screen = keywords.screen(body)
    if screen.rule == "emergency_words":
        assert screen.term not in raised.summary.lower(), "symptoms stay off the timeline"


def test_words_never_lower_acuity_and_ordinary_words_change_nothing(personas, client):
    urgent = _case(personas.north, acuity=1)
    text(client, from_number=PATIENT, body="feeling worse")
    urgent.refresh_from_db()
    assert urgent.acuity == 1
    other = _case(personas.north, number="+15557770003", acuity=4)
    text(client, from_number="+15557770003", body="Thanks, the fever is down")
    other.refresh_from_db()
    assert other.acuity == 4 and not other.events.filter(kind=CaseEvent.Kind.RISK).exists()


def test_an_emergency_text_from_an_unknown_number_queues_at_acuity_1(personas, client):
    response = text(client, from_number="+15557770004", body="He passed out and is not breathing")
    assert Case.objects.get().acuity == 1
    assert "Call 911 now" in replies(response)[0]


def test_stop_then_every_outbound_text_to_that_number_is_skipped_until_start(personas, client):
    case = _case(personas.north)
    response = text(client, from_number=PATIENT, body="stop")
    assert "no more text messages" in replies(response)[0]
    assert "Patient replied STOP" in " ".join(_sms_events(case))

    skipped = outbound_message_record(clinic=personas.north, case=case, to=PATIENT, body="Your nurse will call")
    assert skipped.state == OutboundMessage.State.SKIPPED
    assert any("opted out" in s for s in _sms_events(case))
    # Per clinic: South may still text the same number.
    south_case = _case(personas.south)
    assert outbound_message_record(clinic=personas.south, case=south_case, to=PATIENT, body="x").state == "recorded"

    response = text(client, from_number=PATIENT, body="START")
    assert "again" in replies(response)[0]
    assert outbound_message_record(clinic=personas.north, case=case, to=PATIENT, body="y").state == "recorded"


def test_stop_is_stored_by_digest_and_retries_of_stop_are_idempotent(personas, client):
    sid = new_message_sid()
    text(client, from_number=PATIENT, body="UNSUBSCRIBE", sid=sid)
    text(client, from_number=PATIENT, body="UNSUBSCRIBE", sid=sid)
    row = SmsOptOut.objects.get()
    assert row.active and PATIENT not in row.number_digest and row.number == PATIENT
    with connection.cursor() as cursor:
        cursor.execute("SELECT number FROM ivr_smsoptout")
        assert cursor.fetchone()[0].startswith("enc:v1:")


def test_spanish_keywords_answer_in_spanish(personas, client):
    assert "No recibirá más mensajes" in replies(text(client, from_number=PATIENT, body="PARAR"))[0]
    assert "Para emergencias" in replies(text(client, from_number=PATIENT, body="Ayuda"))[0]
    assert "Volverá a recibir" in replies(text(client, from_number=PATIENT, body="COMENZAR"))[0]


def test_help_answers_the_clinic_number_and_911_without_starting_a_case(personas, client):
    response = text(client, from_number="+15557770005", body="help")
    reply = replies(response)[0]
    assert "(555) 010-0100" in reply and "911" in reply and "STOP" in reply
    assert not Case.objects.exists()


def _status(client, sid, status, **extra):
    params = twilio_form("sms_status", MessageSid=sid, SmsSid=sid, MessageStatus=status, SmsStatus=status, **extra)
    return signed_post(client, "/ivr/sms/status/", params)


def test_delivery_status_callbacks_update_the_outbox_once(personas, client):
    case = _case(personas.north)
    message = outbound_message_record(clinic=personas.north, case=case, to=PATIENT, body="hello", purpose="Nurse reply")
    sid = "SM" + "ab" * 16
    OutboundMessage.objects.filter(pk=message.pk).update(state="sent", provider_sid=sid)
    assert _status(client, sid, "undelivered", ErrorCode="30003").status_code == 204
    assert _status(client, sid, "undelivered", ErrorCode="30003").status_code == 204  # retry
    assert _status(client, sid, "sent").status_code == 204  # late, out of order
    message.refresh_from_db()
    assert message.delivery_status == "undelivered" and "30003" in message.last_error
    assert _sms_events(case).count("Nurse reply not delivered (undelivered)") == 1
    unsigned = twilio_form("sms_status", MessageSid=sid, MessageStatus="delivered")
    assert client.post("/ivr/sms/status/", unsigned).status_code == 403
    message.refresh_from_db()
    assert message.delivery_status == "undelivered"


@pytest.mark.fhir
def test_a_text_from_the_patients_ehr_number_joins_the_case_opened_from_another_phone(personas, fhir, client):
    jerry = fhir.patient("wiegand-jerry")["server_id"]
    # Jerry called from a work phone; the case's patient was confirmed in the IVR.
    north = _case(personas.north, number="+15557779999", patient_fhir_id=jerry, patient_display="Jerry")
    south = _case(personas.south, number="+15557779999", patient_fhir_id=jerry, patient_display="Jerry")
    text(client, from_number=PATIENT, body="It is Jerry, the rash is spreading")  # his number in the EHR
    inbound = InboundMessage.objects.get()
    assert inbound.case == north
    assert _sms_events(south) == []
    assert not Case.objects.filter(channel=Case.Channel.SMS).exists()


@pytest.mark.fhir
def test_when_the_ehr_is_down_the_text_starts_a_message_only_case(personas, fhir, client):
    jerry = fhir.patient("wiegand-jerry")["server_id"]
    _case(personas.north, number="+15557779999", patient_fhir_id=jerry, patient_display="Jerry")
    fhir.stop()
    text(client, from_number=PATIENT, body="Rash spreading")
    assert InboundMessage.objects.get().case.channel == Case.Channel.SMS
