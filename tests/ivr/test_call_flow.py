"""Whole IVR calls through the signed webhooks, against the real FHIR server (`fhir` fixture).

The protocol step first asks adult (1) or child (2); the clinic's library is installed (`library`
fixture), and the adult menu's first page is 1 chest pain, 2 breathing, 3 allergic reaction, 4 abdominal
pain, 5 injury, 6 head injury, 7 fever in an adult, 8 headache (9 = more).
"""

from __future__ import annotations

from datetime import date

import pytest
from django.test import Client

from ivr.models import CallLeg, OutboundMessage, Step
from tests.conftest import NORTH_ON_CALL
from tests.ivr.phone import Phone
from triage.models import Case, CaseEvent, CaseState, ProtocolVersion
from triage.protocol_versions import protocol_library_install
from triage.services import case_enqueue

JERRY_PHONE = "+15553031209"  # stored in the EHR as 555-303-1209, shared with Celine
PORRAS_PHONE = "+15553997740"
UNKNOWN_PHONE = "+15550009999"
ADULT = "1"
ABDOMINAL_PAIN = "4"
CHEST_PAIN = "1"
YES, NO = "1", "2"

pytestmark = [pytest.mark.django_db, pytest.mark.fhir]


@pytest.fixture(autouse=True)
def library(personas):
    """Both clinics hold CareLine's protocol library as stored, active versions (as after install_protocols)."""
    protocol_library_install(clinic=personas.north)
    protocol_library_install(clinic=personas.south)


def _choose(phone: Phone, digit: str) -> None:
    """At the protocol step: adult, then the topic `digit` of the first page."""
    assert phone.step() == "protocol"
    phone.press(ADULT)
    phone.press(digit)


def _call_to_protocol(phone: Phone, *, language: str = "1", dob: str | None = None) -> None:
    phone.dial()
    phone.press(language)
    if dob is not None:
        assert phone.step() == "dob"
        phone.press(dob)
    assert phone.step() == "protocol"


def test_full_english_call_for_an_identified_patient(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    assert "If this is a life-threatening emergency, hang up and dial 911." in " ".join(phone.says)
    phone.press("1")  # English
    assert phone.step() == "dob"
    before_dob = " ".join(phone.says)
    phone.press("02021995")
    assert phone.step() == "protocol"
    # Nothing about the patient was said before (or after) the birth date was confirmed.
    for text in (before_dob, " ".join(phone.says)):
        assert "Jerry" not in text and "Wiegand" not in text
    _choose(phone, ABDOMINAL_PAIN)
    phone.press(NO)  # fainting / vomiting blood
    phone.press(NO)  # severe and constant / pregnant
    assert CallLeg.objects.get(call_sid=phone.call_sid).case is None
    phone.press(YES)  # lower right side or fever -> ed-ucc-hours, acuity 3
    assert phone.step() == "contact"
    assert any("in line for a nurse" in s for s in phone.says)

    case = Case.objects.get()
    assert case.state == CaseState.QUEUED
    assert case.acuity == 3
    assert case.suggested_disposition == "ed-ucc-hours"
    assert case.patient_fhir_id == fhir.patient("wiegand-jerry")["server_id"]
    assert case.patient_birth_date == date(1995, 2, 2)
    assert case.callback_number == JERRY_PHONE
    active = ProtocolVersion.objects.get(clinic=personas.north, protocol__code="abdominal-pain", status="active")
    assert case.protocol_code == "abdominal-pain" and case.protocol_version == "1"
    assert case.protocol_version_ref == active
    assert [(a["question"], a["answer"]) for a in case.answers] == [
        ("ab-shock", False),
        ("ab-severe", False),
        ("ab-right", True),
    ]
    assert case.answers[2]["text"].startswith("Is the pain in the lower right side")
    assert case.ehr_context_pending is False
    assert case.language == "en"

    sms = OutboundMessage.objects.get(case=case)
    assert sms.state == OutboundMessage.State.RECORDED  # TWILIO_ACCOUNT_SID is unset in tests
    assert sms.to == JERRY_PHONE and sms.from_number == personas.north.twilio_number
    assert "a nurse will call you back at (555) 303-1209" in sms.body
    assert "abdominal" not in sms.body.lower() and "pain" not in sms.body.lower()
    kinds = list(case.events.values_list("kind", flat=True))
    assert CaseEvent.Kind.SMS in kinds and CaseEvent.Kind.IVR in kinds and CaseEvent.Kind.ENQUEUED in kinds


def test_household_phone_birth_date_picks_the_right_patient(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="03112007")
    phone.press("0")  # straight to a nurse
    case = Case.objects.get()
    assert case.patient_fhir_id == fhir.patient("wiegand-celine")["server_id"]
    assert case.patient_fhir_id != fhir.patient("wiegand-jerry")["server_id"]


def test_spanish_caller_hears_every_later_prompt_in_es_mx(personas, fhir, client: Client):
    phone = Phone(client, from_number=PORRAS_PHONE)
    phone.dial()
    assert {"en-US", "es-MX"} <= phone.say_languages  # disclaimer and language menu in both
    spoken_after_choice = []
    phone.press("2")
    spoken_after_choice.append(phone.say_languages)
    assert "fecha de nacimiento" in " ".join(phone.says)
    phone.press("03301983")
    spoken_after_choice.append(phone.say_languages)
    assert "sobre un adulto, oprima 1" in " ".join(phone.says)
    phone.press(ADULT)
    spoken_after_choice.append(phone.say_languages)
    assert "Para dolor abdominal, oprima 4." in phone.says
    phone.press(ABDOMINAL_PAIN)
    spoken_after_choice.append(phone.say_languages)
    for _ in range(4):
        phone.press(NO)
        spoken_after_choice.append(phone.say_languages)
    phone.press("1")  # hold
    spoken_after_choice.append(phone.say_languages)
    assert all(languages == {"es-MX"} for languages in spoken_after_choice)
    case = Case.objects.get()
    assert case.language == "es"
    assert case.patient_fhir_id == fhir.patient("porras-cecilia")["server_id"]
    assert case.suggested_disposition == "clinician-3d" and case.acuity == 4  # all "no": protocol default
    assert case.answers[0]["text"].startswith("¿La persona se desmaya")
    assert "Recibimos su llamada" in OutboundMessage.objects.get(case=case).body


def test_red_flag_transfers_to_on_call_and_never_queues(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="02021995")
    _choose(phone, CHEST_PAIN)
    phone.press(YES)  # unconscious / struggling to breathe -> call-911, acuity 1
    dials = [a for a in phone.actions if a["verb"] == "dial"]
    assert dials and dials[0]["number"] == NORTH_ON_CALL
    assert dials[0]["callerId"] == personas.north.twilio_number
    assert any("dial 911" in s for s in phone.says)
    assert not Case.objects.filter(state=CaseState.QUEUED).exists()
    case = Case.objects.get()
    assert case.state == CaseState.TRANSFERRED and case.acuity == 1
    assert case.red_flags == ["cp-collapse"]
    assert case.patient_fhir_id == fhir.patient("wiegand-jerry")["server_id"]
    assert not OutboundMessage.objects.exists()
    assert CallLeg.objects.get(call_sid=phone.call_sid).step == Step.TRANSFERRED


def test_twilio_retry_of_a_step_creates_one_case_and_identical_twiml(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    first_answer = phone.dial().content
    assert phone.dial().content == first_answer  # retry of the answer webhook
    assert CallLeg.objects.count() == 1
    phone.press("1")
    phone.press("02021995")
    _choose(phone, ABDOMINAL_PAIN)
    phone.press(NO)
    phone.press(NO)
    action = phone.gather()["action"]
    params = phone._params("gather_digits", Digits=YES)
    first = phone.post(action, params).content
    second = phone.post(action, params).content  # Twilio retries the same request
    assert first == second
    assert Case.objects.count() == 1
    assert OutboundMessage.objects.count() == 1
    # A late retry of an earlier step replays the last TwiML and changes nothing.
    stale = phone.post("/ivr/voice/step/protocol/?seq=3", phone._params("gather_digits", Digits="1")).content
    assert stale == first
    assert Case.objects.count() == 1


def test_invalid_input_reprompts_twice_then_routes_to_a_nurse(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="02021995")
    phone.no_input()
    assert phone.step() == "protocol" and "did not get that" in phone.says[0]
    phone.press("9")  # not a menu digit
    assert phone.step() == "protocol"
    assert not Case.objects.exists()
    phone.no_input()  # third failure: routed to a nurse
    assert phone.enqueue()["queue"].startswith("case-")
    case = Case.objects.get()
    assert case.state == CaseState.QUEUED and case.acuity == 3
    assert case.patient_fhir_id == fhir.patient("wiegand-jerry")["server_id"]
    assert any("needs nurse assessment" in e.summary for e in case.events.filter(kind=CaseEvent.Kind.IVR))


def test_zero_reaches_a_nurse_from_a_question(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="02021995")
    _choose(phone, ABDOMINAL_PAIN)
    phone.press(NO)
    phone.press("0")
    phone.enqueue()
    case = Case.objects.get()
    assert case.state == CaseState.QUEUED and case.acuity == 3
    assert case.protocol_code == "abdominal-pain"
    assert case.answers == [{"question": "ab-shock", "text": case.answers[0]["text"], "answer": False}]
    assert any("caller pressed 0" in e.summary for e in case.events.all())


def test_zero_from_the_language_menu_reaches_a_nurse(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    phone.press("0")
    phone.enqueue()
    case = Case.objects.get()
    assert case.acuity == 3 and case.patient_fhir_id == "" and case.callback_number == JERRY_PHONE


def test_unknown_number_continues_unidentified_with_the_callback_number(personas, fhir, client: Client):
    phone = Phone(client, from_number=UNKNOWN_PHONE)
    phone.dial()
    phone.press("1")
    assert phone.step() == "protocol"  # nobody on this number: no birth date asked
    _choose(phone, ABDOMINAL_PAIN)
    for _ in range(4):
        phone.press(NO)
    case = Case.objects.get()
    assert case.patient_fhir_id == "" and case.patient_birth_date is None
    assert case.callback_number == UNKNOWN_PHONE
    assert case.ehr_context_pending is False
    assert case.state == CaseState.QUEUED


def test_wrong_birth_date_twice_continues_unidentified(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    phone.press("1")
    phone.press("01011990")
    assert phone.step() == "dob" and "does not match" in phone.says[0]
    phone.press("01011991")
    assert phone.step() == "protocol"
    phone.press("0")
    case = Case.objects.get()
    assert case.patient_fhir_id == "" and case.callback_number == JERRY_PHONE


def test_hold_enqueues_and_the_wait_url_announces_the_position_within_the_band(personas, fhir, client: Client):
    earlier_same_band = case_enqueue(clinic=personas.north, callback_number="+15550001111", acuity=3)
    case_enqueue(clinic=personas.north, callback_number="+15550002222", acuity=2)  # other band: not counted
    case_enqueue(clinic=personas.south, callback_number="+15550003333", acuity=3)  # other clinic
    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="02021995")
    _choose(phone, ABDOMINAL_PAIN)
    phone.press(NO)
    phone.press(NO)
    phone.press(YES)  # acuity 3
    phone.press("1")  # hold
    case = Case.objects.exclude(pk=earlier_same_band.pk).get(clinic=personas.north, acuity=3)
    enqueue = phone.enqueue()
    assert enqueue["queue"] == f"case-{case.uuid}"
    assert enqueue["waitUrl"] == f"/ivr/voice/wait/{case.uuid}/"
    assert case.contact_preference == Case.ContactPreference.HOLD
    phone.wait()
    assert "You are number 2 in line." in phone.says
    assert [a["verb"] for a in phone.actions][-2:] == ["play", "redirect"]
    assert phone.actions[-1]["url"] == enqueue["waitUrl"]


def test_callback_choice_keeps_the_place_and_hangs_up(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="02021995")
    _choose(phone, ABDOMINAL_PAIN)
    for _ in range(4):
        phone.press(NO)
    arrived_at = Case.objects.get().arrived_at
    phone.press("2")
    assert phone.actions[-1]["verb"] == "hangup"
    case = Case.objects.get()
    assert case.contact_preference == Case.ContactPreference.CALLBACK
    assert case.state == CaseState.QUEUED and case.arrived_at == arrived_at
    assert any("caller chose a callback" in e.summary for e in case.events.filter(kind=CaseEvent.Kind.CALL))


def test_hanging_up_while_holding_switches_the_case_to_callback(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="02021995")
    phone.press("0")
    phone.enqueue()
    assert Case.objects.get().contact_preference == Case.ContactPreference.HOLD
    assert phone.hang_up().status_code == 204
    phone.hang_up()  # Twilio may repeat a status callback: no second timeline entry
    case = Case.objects.get()
    assert case.contact_preference == Case.ContactPreference.CALLBACK
    assert case.state == CaseState.QUEUED
    assert sum("hung up while holding" in e.summary for e in case.events.all()) == 1
    assert sum(e.summary.startswith("Call ended (completed, 95 s)") for e in case.events.all()) == 1
    leg = CallLeg.objects.get(call_sid=phone.call_sid)
    assert leg.ended_at is not None and leg.call_status == "completed"


def test_call_ending_before_a_case_only_ends_the_leg(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    phone.press("1")
    phone.hang_up("canceled")
    leg = CallLeg.objects.get(call_sid=phone.call_sid)
    assert leg.ended_at is not None and leg.call_status == "canceled"
    assert not Case.objects.exists()


def test_ehr_down_call_completes_and_patient_is_attached_later(personas, fhir, client: Client):
    from ivr.tasks import resolve_pending_patients

    fhir.stop()
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    phone.press("1")
    assert phone.step() == "dob"  # still asks the birth date
    assert CallLeg.objects.get(call_sid=phone.call_sid).ehr_status == "unavailable"
    phone.press("02021995")
    _choose(phone, ABDOMINAL_PAIN)
    for _ in range(4):
        phone.press(NO)
    phone.press("2")
    case = Case.objects.get()
    assert case.state == CaseState.QUEUED
    assert case.ehr_context_pending is True
    assert case.patient_fhir_id == "" and case.patient_birth_date == date(1995, 2, 2)

    assert resolve_pending_patients.delay().get() == {"attached": 0, "cleared": 0, "deferred": 1}
    assert Case.objects.get().ehr_context_pending is True

    fhir.start()
    assert resolve_pending_patients.delay().get() == {"attached": 1, "cleared": 0, "deferred": 0}
    case.refresh_from_db()
    assert case.ehr_context_pending is False
    assert case.patient_fhir_id == fhir.patient("wiegand-jerry")["server_id"]
    assert case.events.filter(kind=CaseEvent.Kind.EHR).exists()


def test_pending_case_with_no_matching_birth_date_is_cleared(personas, fhir, client: Client):
    from ivr.tasks import resolve_pending_patients

    fhir.stop()
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    phone.press("1")
    phone.press("07041976")  # nobody on this number was born then
    phone.press("0")
    fhir.start()
    assert resolve_pending_patients.delay().get() == {"attached": 0, "cleared": 1, "deferred": 0}
    case = Case.objects.get()
    assert case.ehr_context_pending is False and case.patient_fhir_id == ""


def test_red_flag_while_ehr_is_down_marks_the_transferred_case_pending(personas, fhir, client: Client):
    fhir.stop()
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    phone.press("1")
    phone.press("02021995")
    _choose(phone, CHEST_PAIN)
    phone.press(YES)
    case = Case.objects.get()
    assert case.state == CaseState.TRANSFERRED and case.ehr_context_pending is True


def _topics(phone: Phone) -> list[str]:
    return [s for s in phone.says if s.startswith("For ") and not s.endswith("press 9.")]


def test_the_menu_pages_eight_topics_at_a_time_and_9_wraps_around(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="02021995")
    assert "If the call is about an adult, press 1." in " ".join(phone.says)
    phone.press(ADULT)
    first_page = _topics(phone)
    assert len(first_page) == 8 and first_page[0] == "For chest pain, press 1."
    assert "For more choices, press 9." in phone.says
    phone.press("9")
    second_page = _topics(phone)
    assert len(second_page) == 8 and not set(second_page) & set(first_page)
    phone.press("9")
    last_page = _topics(phone)
    assert 1 <= len(last_page) <= 8 and "To hear the first choices again, press 9." in phone.says
    phone.press("9")
    assert _topics(phone) == first_page
    phone.press("9")
    digit = next(s for s in phone.says if "a mental health crisis" in s).split("press ")[1].rstrip(".")
    phone.press(digit)
    assert phone.step() == "question"
    assert "thinking about suicide" not in " ".join(phone.says)  # the first question is the most serious one
    assert "hurt themselves or someone else" in " ".join(phone.says)


def test_the_child_menu_offers_pediatric_topics_not_adult_only_ones(personas, fhir, client: Client):
    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="02021995")
    phone.press("2")  # about a child
    spoken = " ".join(phone.says)
    assert "For a newborn concern, press 1." in spoken and "fever in a child" in spoken
    assert "chest pain" not in spoken and "abdominal pain" not in spoken
    phone.press("2")  # fever in a child
    phone.press(NO)  # limp / seizure
    phone.press(YES)  # younger than three months -> ED now
    case = Case.objects.get()
    assert case.protocol_code == "child-fever" and case.acuity == 2 and case.suggested_disposition == "ed-now"


def test_a_call_keeps_the_version_it_started_with_when_a_new_one_is_activated(personas, fhir, client: Client):
    from triage.models import Protocol
    from triage.protocol_versions import protocol_draft_create, protocol_version_activate

    phone = Phone(client, from_number=JERRY_PHONE)
    _call_to_protocol(phone, dob="02021995")
    _choose(phone, ABDOMINAL_PAIN)
    phone.press(NO)  # first question of version 1
    abdominal = Protocol.objects.get(clinic=personas.north, code="abdominal-pain")
    v1 = abdominal.versions.get()
    draft = protocol_draft_create(
        clinic=personas.north,
        protocol_id=abdominal.pk,
        author=personas.bob,
        title_en="abdominal pain",
        title_es="dolor abdominal",
        questions=[{"id": "ab-only", "text_en": "Only question?", "text_es": "¿Única?", "disposition": "home-care"}],
        default_disposition="home-care",
    )
    protocol_version_activate(clinic=personas.north, version_id=draft.pk, actor=personas.bob)
    phone.press(NO)
    phone.press(YES)  # ab-right in version 1
    case = Case.objects.get()
    assert case.protocol_version_ref == v1 and case.protocol_version == "1"
    assert [a["question"] for a in case.answers] == ["ab-shock", "ab-severe", "ab-right"]
    assert case.acuity == 3
