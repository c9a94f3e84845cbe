"""From a call to a triage case: enqueue, red-flag transfer, contact preference, call ended.

Every function runs inside the caller's transaction (the step's, which holds the `CallLeg` lock), so the
case, its timeline, the SMS outbox row and the leg commit together or not at all.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.db import transaction

from clinics.models import Clinic
from ivr.models import CallLeg, EhrStatus
from ivr.services import messages
from triage import risk
from triage.models import Case, CaseEvent, CaseState
from triage.protocols import Protocol, TriageResult
from triage.services import (
    case_add_event,
    case_apply_risk,
    case_enqueue,
    case_record_transfer,
    case_set_contact_preference,
)

# Acuity of a call routed to a nurse before the protocol decided (caller pressed 0, or gave no valid input):
# CTAS 3 ("urgent") until a nurse assesses it, so an undecided caller is never parked at a low level.
NURSE_ASSESSMENT_ACUITY = 3

CALL_ENDED_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


def queue_name(case: Case) -> str:
    """The Twilio `<Enqueue>` queue holding this case's caller; a nurse's `<Dial><Queue>` uses the same name."""
    return f"case-{case.uuid}"


def _patient_fields(leg: CallLeg) -> dict[str, Any]:
    """The patient fields of the case: the confirmed patient, or the entered birth date when the EHR was down."""
    patient = leg.collected.get("patient")
    if patient:
        birth = patient.get("birth_date")
        return {
            "patient_fhir_id": patient["fhir_id"],
            "patient_display": patient.get("display", ""),
            "patient_birth_date": date.fromisoformat(birth) if birth else None,
        }
    if leg.ehr_status == EhrStatus.UNAVAILABLE and leg.collected.get("dob"):
        return {"patient_birth_date": date.fromisoformat(leg.collected["dob"])}
    return {}


def _caller_state(leg: CallLeg) -> str:
    """Routing's "caller's state": the US state of the confirmed patient's FHIR address, else "" (unknown)."""
    patient = leg.collected.get("patient") or {}
    return str(patient.get("state") or "")


def ehr_pending(leg: CallLeg) -> bool:
    """True when the EHR could not be searched during the call and no patient was confirmed."""
    return leg.ehr_status == EhrStatus.UNAVAILABLE and not leg.collected.get("patient")


def _ivr_summary(leg: CallLeg, protocol: Protocol | None, reason: str) -> str:
    identity = {
        "identified": "identified by birth date",
        "pending": "EHR unavailable, birth date recorded",
    }.get(leg.collected.get("identity", ""), "unidentified")
    what = f"{protocol.title_en} protocol, {len(leg.answers)} answer(s)" if protocol else "no protocol completed"
    return f"IVR ({leg.language}): {what}; caller {identity}" + (f"; {reason}" if reason else "")


@transaction.atomic
def case_enqueue_from_leg(
    *, leg: CallLeg, acuity: int, suggested_disposition: str, protocol: Protocol | None, reason: str = ""
) -> Case:
    """Queue the call's case (`triage.services.case_enqueue`) with everything the IVR collected.

    `acuity` CTAS 1-5 (the protocol's, or `NURSE_ASSESSMENT_ACUITY` with `reason` such as "needs nurse
    assessment: caller pressed 0"). The caller is on the line, so the contact preference starts as `hold`.
    Also writes the IVR timeline entry and the SMS confirmation (outbox) in the same transaction, and sets
    `leg.case` (the caller saves the leg).
    """
    case = case_enqueue(
        clinic=leg.clinic,
        callback_number=leg.from_number,
        acuity=acuity,
        language=leg.language,
        channel=Case.Channel.VOICE,
        protocol_code=protocol.code if protocol else "",
        protocol_version=protocol.version if protocol else "",
        protocol_version_id=protocol.version_id if protocol else None,
        answers=list(leg.answers),
        suggested_disposition=suggested_disposition,
        ehr_context_pending=ehr_pending(leg),
        contact_preference=Case.ContactPreference.HOLD,
        caller_state=_caller_state(leg),
        **_patient_fields(leg),
    )
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.IVR,
        summary=_ivr_summary(leg, protocol, reason),
        detail={"call_sid": leg.call_sid, "reason": reason, "identity": leg.collected.get("identity", "unidentified")},
    )
    messages.confirmation_record(case=case, to=leg.from_number, language=leg.language)
    # Risk modifiers: the age rules now (birth date known, no EHR call in the request path); the chart rules
    # after commit in a Celery task, so the EHR never delays the caller (`ivr.services.risk`).
    if case.patient_birth_date is not None:
        case_apply_risk(
            case_id=case.pk,
            clinic=case.clinic,
            facts=risk.age_facts(birth_date=case.patient_birth_date, today=date.today()),
        )
        case.refresh_from_db()
    if case.patient_fhir_id:
        from ivr.tasks import apply_chart_risk  # ivr.tasks imports ivr.services

        apply_chart_risk.delay_after_commit(case.pk, case.clinic_id)
    leg.case = case
    return case


@transaction.atomic
def case_transfer_from_leg(*, leg: CallLeg, protocol: Protocol, result: TriageResult) -> Case:
    """Record a red-flag call (`triage.services.case_record_transfer`): acuity 1, warm transfer to the
    clinic's `on_call_number`, never queued. Sets `leg.case`."""
    case = case_record_transfer(
        clinic=leg.clinic,
        callback_number=leg.from_number,
        language=leg.language,
        protocol_code=protocol.code,
        protocol_version=protocol.version,
        protocol_version_id=protocol.version_id,
        answers=list(leg.answers),
        red_flags=[result.deciding_question] if result.deciding_question else [],
        suggested_disposition=result.disposition,
        transferred_to=leg.clinic.on_call_number,
        ehr_context_pending=ehr_pending(leg),
        **_patient_fields(leg),
    )
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.IVR,
        summary=_ivr_summary(leg, protocol, "red flag"),
        detail={"call_sid": leg.call_sid, "identity": leg.collected.get("identity", "unidentified")},
    )
    leg.case = case
    return case


def case_choose_hold(*, case: Case) -> Case:
    """The caller holds on the line (`<Enqueue>`); their place in line is unchanged."""
    return case_set_contact_preference(
        case_id=case.pk, clinic=case.clinic, preference=Case.ContactPreference.HOLD, reason="caller is holding"
    )


def case_choose_callback(*, case: Case) -> Case:
    """The caller takes a callback and hangs up; their place in line is unchanged."""
    return case_set_contact_preference(
        case_id=case.pk,
        clinic=case.clinic,
        preference=Case.ContactPreference.CALLBACK,
        reason="caller chose a callback",
    )


@transaction.atomic
def case_call_ended(*, case_id: int, clinic: Clinic, call_status: str, duration_seconds: int | None) -> Case:
    """The call of this case ended (`call_status` one of `CALL_ENDED_STATUSES`).

    A caller who was holding while the case is still queued is switched to callback and keeps their place
    (DESIGN §6.1). Every ended call is noted on the timeline with its status and duration (seconds).
    """
    case = Case.objects.select_for_update().get(pk=case_id, clinic=clinic)
    if case.state == CaseState.QUEUED and case.contact_preference == Case.ContactPreference.HOLD:
        case = case_set_contact_preference(
            case_id=case.pk,
            clinic=clinic,
            preference=Case.ContactPreference.CALLBACK,
            reason="caller hung up while holding; place in line kept",
        )
    duration = f", {duration_seconds} s" if duration_seconds is not None else ""
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.CALL,
        summary=f"Call ended ({call_status}{duration})",
        detail={"call_status": call_status, "duration_seconds": duration_seconds},
    )
    return case
