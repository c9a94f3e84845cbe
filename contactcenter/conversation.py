"""The case as one conversation across channels: the nurse calls the patient, or texts them, from the case.

Services (STYLE habit 1) called by the console views; each resolves the nurse's clinic from her staff
membership, locks the case, checks it is hers, and writes the outbox row (`ivr`) in the same transaction
as the timeline entry. Errors: NotStaff, Case.DoesNotExist (unknown or another clinic's case: 404),
NotYourCase, InvalidTransition, `ivr.services.outbound_calls.CallNotPossible` and `MessageNotPossible`
(a message for the nurse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from clinics.selectors import staff_for_user
from clinics.services import audit_record
from ehr.phone import InvalidPhoneNumber, to_e164
from ivr.models import OutboundCall, OutboundMessage
from ivr.services import optout
from ivr.services.messages import outbound_message_record
from ivr.services.outbound_calls import outbound_call_record
from triage.exceptions import InvalidTransition, NotYourCase
from triage.models import Case, CaseState

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# A phone call needs an accepted case (the nurse is working it); a reply may also go out during wrap-up.
CALLABLE_STATES = frozenset({CaseState.IN_PROGRESS})
REPLYABLE_STATES = frozenset({CaseState.IN_PROGRESS, CaseState.WRAP_UP})
MAX_REPLY_CHARACTERS = 640  # four SMS segments; `OutboundMessage.body` holds at most this


class MessageNotPossible(Exception):
    """The text cannot be sent; the message says why, for the nurse."""


def _own_case(*, user: User, case_id: int, states: frozenset[str]) -> Case:
    staff = staff_for_user(user)
    case = Case.objects.select_for_update().select_related("clinic").get(pk=case_id, clinic=staff.clinic)
    if case.reserved_by_id != user.pk:
        raise NotYourCase(f"case {case_id} is not reserved by you")
    if case.state not in states:
        raise InvalidTransition(f"case {case_id} is {case.state}")
    return case


@transaction.atomic
def call_patient(
    *, user: User, case_id: int, nurse_number: str = "", reason: str = "console", source_ip: str | None = None
) -> OutboundCall:
    """Call the case's patient from the nurse's phone: Twilio rings `nurse_number` (else her desk number,
    else her staff phone) and bridges the patient when she answers (`ivr.services.outbound_calls`).

    Only the nurse holding the case, once accepted (`in_progress`). A number typed by the nurse is kept as
    her desk number. `reason`: "console", or "video_failed" for the video visit's fallback. Audited
    (`case.call`: the patient's number is used). Raises NotStaff, Case.DoesNotExist, NotYourCase,
    InvalidTransition, CallNotPossible.
    """
    staff = staff_for_user(user)
    case = _own_case(user=user, case_id=case_id, states=CALLABLE_STATES)
    typed = nurse_number.strip()
    if typed:
        try:
            typed = to_e164(typed)
        except InvalidPhoneNumber:
            pass  # outbound_call_record refuses it with a message
        else:
            if staff.desk_number != typed:
                staff.desk_number = typed
                staff.save(update_fields=["desk_number"])
    number = typed or staff.desk_number or staff.phone
    call = outbound_call_record(case=case, nurse=user, nurse_number=number, reason=reason)
    audit_record(
        clinic=case.clinic,
        actor=user,
        action="case.call",
        object_type="case",
        object_id=case.pk,
        patient_ref=case.patient_fhir_id,
        source_ip=source_ip,
    )
    return call


@transaction.atomic
def sms_reply(*, user: User, case_id: int, body: str) -> OutboundMessage:
    """Text the case's patient from the console (the nurse's own words, encrypted at rest), via the outbox.

    Only the nurse holding the case, in progress or wrap-up. Refused (MessageNotPossible, nothing written)
    for an empty or too long text (over 640 characters), a callback number that is not a phone number,
    or a patient who replied STOP to this clinic. Raises NotStaff, Case.DoesNotExist, NotYourCase,
    InvalidTransition, MessageNotPossible.
    """
    case = _own_case(user=user, case_id=case_id, states=REPLYABLE_STATES)
    text = body.strip()
    if not text:
        raise MessageNotPossible("Write a message first.")
    if len(text) > MAX_REPLY_CHARACTERS:
        raise MessageNotPossible(f"A text can hold at most {MAX_REPLY_CHARACTERS} characters.")
    try:
        number = to_e164(case.callback_number)
    except InvalidPhoneNumber as exc:
        raise MessageNotPossible("The patient's number is not a phone number (caller ID withheld).") from exc
    if optout.is_opted_out(clinic=case.clinic, number=number):
        raise MessageNotPossible("The patient replied STOP: no text can be sent. Call the patient instead.")
    return outbound_message_record(
        clinic=case.clinic, case=case, to=number, body=text, purpose="Nurse reply", sent_by=user, announce=True
    )
