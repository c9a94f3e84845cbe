"""SMS outbox (`ivr.services.messages`), tested without a Twilio account.

Twilio's REST API cannot be reached from tests, so these cover the `recorded` path, the on-commit dispatch
when an account is configured (captured, not executed), and the sweep's choice of rows. The real
`messages.create` call is not exercised.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ivr.models import OutboundMessage
from ivr.services.messages import (
    confirmation_record,
    outbound_message_record,
    outbound_message_send,
    outbound_messages_sweep,
)
from triage.models import CaseEvent
from triage.services import case_enqueue

pytestmark = pytest.mark.django_db


@pytest.fixture
def case(personas):
    return case_enqueue(clinic=personas.north, callback_number="+15553031209", acuity=4)


def test_without_an_account_the_message_is_recorded_and_never_sent(case, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        message = confirmation_record(case=case, to=case.callback_number, language="en")
    assert message.state == OutboundMessage.State.RECORDED
    assert callbacks == []  # nothing dispatched
    assert outbound_message_send(message_id=message.pk).state == OutboundMessage.State.RECORDED
    message.refresh_from_db()
    assert message.attempts == 0 and message.provider_sid == ""
    assert any("recorded" in e.summary for e in case.events.filter(kind=CaseEvent.Kind.SMS))


def test_with_an_account_the_message_is_queued_and_sent_after_commit(
    case, settings, django_capture_on_commit_callbacks
):
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        message = outbound_message_record(clinic=case.clinic, case=case, to="+15553031209", body="hello")
    assert message.state == OutboundMessage.State.QUEUED
    assert len(callbacks) == 1  # ivr.tasks.send_outbound_message, dispatched only once committed


def test_a_queued_message_stays_queued_when_no_account_is_configured(case):
    message = OutboundMessage.objects.create(
        clinic=case.clinic,
        case=case,
        to="+15553031209",
        from_number=case.clinic.twilio_number,
        body="hello",
        state=OutboundMessage.State.QUEUED,
    )
    assert outbound_message_send(message_id=message.pk).state == OutboundMessage.State.QUEUED
    message.refresh_from_db()
    assert message.attempts == 0


def test_sweep_picks_queued_messages_older_than_a_minute(case):
    def queued(age: timedelta, last_attempt: timedelta | None = None) -> OutboundMessage:
        message = OutboundMessage.objects.create(
            clinic=case.clinic,
            case=case,
            to="+15553031209",
            from_number=case.clinic.twilio_number,
            body="hello",
            state=OutboundMessage.State.QUEUED,
        )
        now = timezone.now()
        OutboundMessage.objects.filter(pk=message.pk).update(
            created_at=now - age, last_attempt_at=(now - last_attempt) if last_attempt else None
        )
        return message

    queued(timedelta(minutes=5))  # due
    queued(timedelta(seconds=10))  # too new: the on-commit send is handling it
    queued(timedelta(minutes=5), last_attempt=timedelta(seconds=20))  # tried moments ago
    OutboundMessage.objects.create(
        clinic=case.clinic, to="+1", from_number="+1", body="x", state=OutboundMessage.State.SENT
    )
    assert outbound_messages_sweep() == 1


def test_no_sms_for_a_withheld_caller_id(case):
    assert confirmation_record(case=case, to="anonymous", language="en") is None
    assert not OutboundMessage.objects.exists()


def test_spanish_confirmation_has_no_clinical_details(case):
    message = confirmation_record(case=case, to="+15553997740", language="es")
    assert message.body == (
        "North Clinic: Recibimos su llamada; una enfermera le devolverá la llamada al "
        "(555) 399-7740. Si la condición empeora, llame al 911."
    )
