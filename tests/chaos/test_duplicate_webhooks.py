"""Fault injection: Twilio delivers every webhook of a call twice (issue 7).

Twilio retries a webhook it got no timely answer for, and may repeat status callbacks, so any request can
arrive twice. A call whose every request (the answer webhook, each `<Gather>` step, the `<Enqueue>`
waitUrl and action, the status callback) is delivered twice must leave exactly what the same call delivered
once leaves: one call leg, one case, one SMS, the same timeline; and each repeat is answered with the same
TwiML as the first delivery (the `<Enqueue>` waitUrl announces a live position, so only its effects count).
"""

from __future__ import annotations

from collections import Counter

import pytest
from django.test import Client

from ivr.models import CallLeg, OutboundMessage
from tests.ivr.phone import Phone
from tests.twilio import signed_post
from triage.models import Case, CaseEvent, RoutingLedgerEntry
from triage.protocol_versions import protocol_library_install

pytestmark = [pytest.mark.django_db, pytest.mark.fhir, pytest.mark.chaos]

JERRY_PHONE = "+15553031209"  # a household phone in the shared FHIR data (Jerry: 02021995)
ENGLISH, ADULT, ABDOMINAL_PAIN, YES, NO, HOLD = "1", "1", "4", "1", "2", "1"


class TwicePhone(Phone):
    """Delivers every webhook twice, as a Twilio retry would, and checks the second answer."""

    def post(self, path: str, params: dict[str, str]):
        first = signed_post(self.client, path, params)
        second = super().post(path, params)
        assert second.status_code == first.status_code, path
        if "/ivr/voice/wait/" not in path:
            assert second.content == first.content, f"a repeated {path} answered differently"
        return second


def _call(phone: Phone) -> Case:
    phone.dial()
    phone.press(ENGLISH)
    phone.press("02021995")
    phone.press(ADULT)
    phone.press(ABDOMINAL_PAIN)
    phone.press(NO)
    phone.press(NO)
    phone.press(YES)  # acuity 3
    phone.press(HOLD)
    case = Case.objects.get(pk=CallLeg.objects.get(call_sid=phone.call_sid).case_id)
    phone.wait()
    phone.post(
        f"/ivr/voice/queue-left/{case.uuid}/",
        phone._params("queue_wait", QueueResult="hangup"),
    )
    phone.hang_up()
    return case


def _effects(case: Case) -> dict[str, object]:
    case.refresh_from_db()
    return {
        "state": case.state,
        "contact_preference": case.contact_preference,
        "timeline": Counter((e.kind, e.summary) for e in case.events.all()),
        "ledger": Counter(RoutingLedgerEntry.objects.filter(case=case).values_list("kind", flat=True)),
        "sms": OutboundMessage.objects.filter(case=case).count(),
    }


def test_every_webhook_delivered_twice_has_the_effect_of_one_delivery(personas, fhir, client: Client):
    protocol_library_install(clinic=personas.north)
    once = _call(Phone(client, from_number=JERRY_PHONE))
    twice_phone = TwicePhone(client, from_number=JERRY_PHONE)
    twice = _call(twice_phone)

    assert Case.objects.count() == 2
    assert CallLeg.objects.filter(call_sid=twice_phone.call_sid).count() == 1
    assert OutboundMessage.objects.count() == 2
    assert CaseEvent.objects.filter(case=twice, kind=CaseEvent.Kind.ENQUEUED).count() == 1
    assert _effects(twice) == _effects(once)
