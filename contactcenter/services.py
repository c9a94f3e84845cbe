"""Nurse work at the console: take the next case, accept it, hand it back, record the disposition.

Each function resolves the caller's clinic from their staff membership (`clinics.selectors.staff_for_user`)
and calls the triage services with it, so a nurse can only ever act on her own clinic's cases. Errors are
the domain's: `clinics.selectors.NotStaff`, `triage.models.Case.DoesNotExist` (unknown id or another
clinic's case), `triage.exceptions.NotYourCase`, `InvalidTransition`, `UnknownDisposition`. The edges
(`contactcenter.views`, `contactcenter.api`) map them to HTTP replies, each in one place.

Every refused mutation (an unknown or another clinic's case or acuity change, a case reserved by someone
else, a role that may not co-sign) appends `access.denied` to the user's own clinic log, like a refused
`triage.selectors.access_case` look-up, and outside the refused transaction, so the row survives its
rollback (`refusals_audited`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.db import transaction

from clinics.models import StaffMember
from clinics.selectors import staff_for_user
from clinics.services import audit_record
from contactcenter import visits
from ehr import services as ehr_services
from ehr.types import Answer, Outcome, SentMessage
from ivr.models import OutboundMessage
from triage import services as triage_services
from triage.dispositions import disposition_for
from triage.exceptions import NotYourCase, OverrideNotAllowed
from triage.models import AcuityOverride, Case
from triage.protocols import case_protocol

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@contextlib.contextmanager
def refusals_audited(*, staff: StaffMember, user: User, object_type: str, object_id: int) -> Iterator[None]:
    """Append `access.denied` (object `object_type`/`object_id` as asked, the user's clinic) when the block
    raises `Case.DoesNotExist` / `AcuityOverride.DoesNotExist` (unknown id or another clinic's: one reason,
    "not found", so the log does not tell them apart), `NotYourCase` ("not reserved by you") or
    `OverrideNotAllowed` ("role"); then re-raise. Use it outside the block's transaction: the audit row is
    written after that transaction rolled back (HIPAA 164.312(b); ASVS 5.0 V16.3.2). A row of no other
    clinic's data is written: only the id the user sent."""
    try:
        yield
    except (Case.DoesNotExist, AcuityOverride.DoesNotExist, NotYourCase, OverrideNotAllowed) as exc:
        if isinstance(exc, NotYourCase):
            reason = "not reserved by you"
        elif isinstance(exc, OverrideNotAllowed):
            reason = "role"
        else:
            reason = "not found"
        audit_record(
            clinic=staff.clinic,
            actor=user,
            action="access.denied",
            object_type=object_type,
            object_id=object_id,
            reason=reason,
        )
        raise


def claim_next(*, user: User) -> Case | None:
    """Reserve the head of the user's clinic queue for the user (DESIGN §5); None when the queue is empty.

    A nurse who already holds a reserved or in-progress case gets that case back. Raises NotStaff.
    """
    staff = staff_for_user(user)
    return triage_services.case_claim_next(clinic=staff.clinic, nurse=user)


def accept(*, user: User, case_id: int) -> Case:
    """Accept the user's reservation of `case_id` (`reserved -> in_progress`).

    Raises NotStaff, Case.DoesNotExist, NotYourCase, InvalidTransition.
    """
    staff = staff_for_user(user)
    with refusals_audited(staff=staff, user=user, object_type="case", object_id=case_id):
        return triage_services.case_accept(case_id=case_id, clinic=staff.clinic, nurse=user)


def release(*, user: User, case_id: int) -> Case:
    """Hand a reserved case back to the queue; the caller keeps their place (original arrival time).

    Raises NotStaff, Case.DoesNotExist, NotYourCase, InvalidTransition.
    """
    staff = staff_for_user(user)
    with refusals_audited(staff=staff, user=user, object_type="case", object_id=case_id):
        return triage_services.case_release(case_id=case_id, clinic=staff.clinic, nurse=user)


def outcome_for_case(*, case: Case, nurse: User) -> Outcome:
    """The EHR's view of a closed `case` (`ehr.types.Outcome`), documented by `nurse`.

    `started_at` is when the case entered the queue (`arrived_at`, else `created_at`); `ended_at` is
    `closed_at`. Protocol title in English ("" for an unknown or absent protocol). `messages_sent`: the
    case's SMS to the caller (`ivr.models.OutboundMessage`) in state `sent` (Twilio accepted it) or
    `recorded` (demo without a Twilio account: shown to the patient by the demo outbox), oldest first,
    `sent_at` falling back to `created_at`; queued and failed messages never reached the patient.
    """

    disposition = disposition_for(case.clinic, case.disposition)
    protocol = case_protocol(case)
    full_name = nurse.get_full_name()
    username = nurse.get_username()
    assert case.closed_at is not None, "outcome_for_case needs a closed case"
    return Outcome(
        case_uuid=str(case.uuid),
        case_id=case.pk,
        clinic_slug=case.clinic.slug,
        clinic_name=case.clinic.name,
        patient_fhir_id=case.patient_fhir_id,
        patient_display=case.patient_display,
        patient_pending=case.ehr_context_pending,
        started_at=case.arrived_at or case.created_at,
        ended_at=case.closed_at,
        acuity=case.acuity,
        disposition_code=disposition.code,
        disposition_display=disposition.display,
        note=case.note,
        nurse_username=username,
        nurse_display=full_name or username,
        protocol_code=case.protocol_code,
        protocol_title=protocol.title("en") if protocol else "",
        protocol_version=case.protocol_version,
        answers=tuple(
            Answer(question_id=str(a.get("question", "")), text=str(a.get("text", "")), answer=bool(a.get("answer")))
            for a in case.answers
        ),
        channel=case.channel,
        messages_sent=tuple(
            SentMessage(sent_at=message.sent_at or message.created_at, body=message.body, message_id=str(message.pk))
            for message in OutboundMessage.objects.filter(
                clinic=case.clinic,
                case=case,
                state__in=(OutboundMessage.State.SENT, OutboundMessage.State.RECORDED),
            ).order_by("created_at", "pk")
        ),
    )


def disposition_record(
    *, user: User, case_id: int, disposition_code: str, note: str = "", source_ip: str | None = None
) -> Case:
    """Record the nurse-confirmed disposition and note, close the case and queue the EHR write-back.

    One transaction (DESIGN §6.3): the case is closed (`triage.services.case_complete`), an audit row
    `case.disposition` is appended, and the write-back outbox rows are written
    (`ehr.services.writeback_enqueue`); either all of it is stored or none. Sending happens after commit.
    A video visit of the case still open is ended in the same transaction (`contactcenter.visits`).
    `disposition_code` is a code of `triage.dispositions.DISPOSITIONS`; `note` free text (may be "").
    Raises NotStaff, Case.DoesNotExist, NotYourCase, InvalidTransition, UnknownDisposition (the first two
    audited as `access.denied`, `refusals_audited`).
    """
    staff = staff_for_user(user)
    with refusals_audited(staff=staff, user=user, object_type="case", object_id=case_id):
        return _disposition_record(
            staff=staff, user=user, case_id=case_id, disposition_code=disposition_code, note=note, source_ip=source_ip
        )


@transaction.atomic
def _disposition_record(
    *, staff: StaffMember, user: User, case_id: int, disposition_code: str, note: str, source_ip: str | None
) -> Case:
    case = triage_services.case_complete(
        case_id=case_id, clinic=staff.clinic, nurse=user, disposition_code=disposition_code, note=note
    )
    audit_record(
        clinic=staff.clinic,
        actor=user,
        action="case.disposition",
        object_type="case",
        object_id=case.pk,
        patient_ref=case.patient_fhir_id,
        source_ip=source_ip,
    )
    ehr_services.writeback_enqueue(clinic=staff.clinic, outcome=outcome_for_case(case=case, nurse=user))
    visits.visits_end_for_case(case=case, actor=user)
    return case


def acuity_change(*, user: User, case_id: int, to_acuity: int, reason: str) -> AcuityOverride:
    """The user changes a case's acuity (`triage.services.acuity_override_request`): raising applies at once,
    lowering waits for a supervisor's co-sign. Raises NotStaff, Case.DoesNotExist, OverrideNotAllowed,
    InvalidOverride."""
    staff = staff_for_user(user)
    with refusals_audited(staff=staff, user=user, object_type="case", object_id=case_id):
        return triage_services.acuity_override_request(
            case_id=case_id, clinic=staff.clinic, user=user, to_acuity=to_acuity, reason=reason
        )


def acuity_cosign(*, user: User, override_id: int, approve: bool) -> AcuityOverride:
    """A supervisor co-signs (applies) or declines a pending lowering (`triage.services.acuity_override_cosign`).
    Raises NotStaff, AcuityOverride.DoesNotExist, OverrideNotAllowed, InvalidOverride."""
    staff = staff_for_user(user)
    with refusals_audited(staff=staff, user=user, object_type="acuity_override", object_id=override_id):
        return triage_services.acuity_override_cosign(
            override_id=override_id, clinic=staff.clinic, supervisor=user, approve=approve
        )
