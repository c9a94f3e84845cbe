"""Re-triage while holding: the wait document's "press 9" re-asks the more urgent protocol questions
(`ivr.flow`, `triage.retriage`), through signed webhooks against the real FHIR server."""

from __future__ import annotations

import pytest
from django.test import Client

from ivr.models import CallLeg, Step
from tests.conftest import NORTH_ON_CALL
from tests.ivr.phone import Phone
from tests.twilio import signed_post
from triage.models import Case, CaseEvent, CaseState

JERRY_PHONE = "+15553031209"
ADULT, ABDOMINAL_PAIN = "1", "4"  # adult menu, first page: 4 is abdominal pain
YES, NO = "1", "2"

pytestmark = [pytest.mark.django_db, pytest.mark.fhir]


def _holding_at_acuity_3(client: Client) -> tuple[Phone, Case]:
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    phone.press("1")
    phone.press("02021995")
    phone.press(ADULT)
    phone.press(ABDOMINAL_PAIN)
    phone.press(NO)  # ab-shock (red flag)
    phone.press(NO)  # ab-severe (acuity 2)
    phone.press(YES)  # ab-right: acuity 3
    phone.press("1")  # hold
    phone.wait()
    return phone, Case.objects.get()


def test_hold_loop_offers_9_and_other_keys_keep_holding(personas, fhir, client: Client):
    phone, case = _holding_at_acuity_3(client)
    assert "If the symptoms are getting worse, press 9." in phone.says
    assert phone.step() == "hold"
    assert f'action="/ivr/voice/queue-left/{case.uuid}/"' in CallLeg.objects.get().last_twiml
    phone.press("5")
    assert [a["verb"] for a in phone.actions][-2:] == ["play", "redirect"]
    assert Case.objects.get().acuity == 3


def test_press_9_yes_to_a_more_urgent_question_raises_acuity_and_keeps_the_place(personas, fhir, client: Client):
    phone, case = _holding_at_acuity_3(client)
    phone.press("9")
    assert phone.step() == "retriage"
    assert any("Please answer a few questions again." in s for s in phone.says)
    phone.press(NO)  # red flag: no
    phone.press(YES)  # ab-severe: acuity 2
    raised = Case.objects.get()
    assert raised.acuity == 2 and raised.state == CaseState.QUEUED and raised.arrived_at == case.arrived_at
    assert any("acuity 3 -> 2" in e.summary for e in raised.events.filter(kind=CaseEvent.Kind.RETRIAGE))
    assert [a for a in raised.answers if a.get("retriage")] == [
        {"question": "ab-shock", "text": raised.answers[-2]["text"], "answer": False, "retriage": True},
        {"question": "ab-severe", "text": raised.answers[-1]["text"], "answer": True, "retriage": True},
    ]
    assert any("moved up" in s for s in phone.says)
    assert [a["verb"] for a in phone.actions][-2:] == ["play", "redirect"]  # still holding, same queue
    assert CallLeg.objects.get().step == Step.HOLD


def test_press_9_all_no_records_and_keeps_holding(personas, fhir, client: Client):
    phone, _ = _holding_at_acuity_3(client)
    phone.press("9")
    phone.press(NO)
    phone.press(NO)
    case = Case.objects.get()
    assert case.acuity == 3 and case.state == CaseState.QUEUED
    assert any("no change" in e.summary for e in case.events.filter(kind=CaseEvent.Kind.RETRIAGE))


def test_press_9_red_flag_leaves_the_queue_and_dials_on_call(personas, fhir, client: Client):
    phone, case = _holding_at_acuity_3(client)
    phone.press("9")
    phone.press(YES)  # ab-shock: red flag
    assert phone.actions[-1] == {"verb": "leave"}
    assert any("may be an emergency" in s for s in phone.says)
    transferred = Case.objects.get()
    assert transferred.state == CaseState.TRANSFERRED and transferred.acuity == 1
    assert transferred.red_flags == ["ab-shock"] and transferred.escalated
    assert transferred.events.filter(kind=CaseEvent.Kind.TRANSFERRED).exists()

    # Twilio then requests the <Enqueue action> with QueueResult=leave: the on-call line is dialled.
    params = phone._params("queue_wait", QueueResult="leave")
    phone.post(f"/ivr/voice/queue-left/{case.uuid}/", params)
    dials = [a for a in phone.actions if a["verb"] == "dial"]
    assert dials and dials[0]["number"] == NORTH_ON_CALL
    again = signed_post(client, f"/ivr/voice/queue-left/{case.uuid}/", params)
    assert again.content == phone.last.content, "a retried request is answered with the same TwiML"


def test_bridged_call_leaving_the_queue_just_hangs_up(personas, fhir, client: Client):
    phone, case = _holding_at_acuity_3(client)
    phone.post(f"/ivr/voice/queue-left/{case.uuid}/", phone._params("queue_wait", QueueResult="bridged"))
    assert phone.actions == [{"verb": "hangup"}]
    assert Case.objects.get().state == CaseState.QUEUED
