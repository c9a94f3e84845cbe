"""Identifying the caller in the EHR: by caller ID during the call, by number + birth date afterwards."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from ehr.phone import InvalidPhoneNumber
from ehr.services import find_patients_by_phone, writeback_patient_resolved
from ehr.types import EhrError, EhrRejected, EhrUnavailable, PatientMatch
from ivr.models import EhrStatus
from triage.models import Case
from triage.services import case_attach_patient, case_clear_ehr_pending

logger = logging.getLogger(__name__)


def _schedule_chart_risk(case_id: int, clinic_id: int) -> None:
    """Check the newly attached patient's chart for risk modifiers once this transaction commits."""
    from ivr.tasks import apply_chart_risk  # ivr.tasks imports this module

    apply_chart_risk.delay_after_commit(case_id, clinic_id)


@dataclass(frozen=True)
class PhoneLookup:
    """Result of the caller-ID search: `status` (an `EhrStatus` value) and the `candidates`, each
    `{"fhir_id", "display", "birth_date": "YYYY-MM-DD" | None, "state": "MA" | ""}` (JSON-ready for
    `CallLeg.candidate_patients`)."""

    status: str
    candidates: list[dict[str, Any]] = field(default_factory=list)


def candidate_of(match: PatientMatch) -> dict[str, Any]:
    """A `PatientMatch` as stored on the leg."""
    return {
        "fhir_id": match.fhir_id,
        "display": match.display,
        "birth_date": match.birth_date.isoformat() if match.birth_date else None,
        "state": match.state,
    }


def lookup_by_phone(phone: str, *, call_sid: str) -> PhoneLookup:
    """Search the EHR for patients whose phone is the caller ID `phone` (E.164 as Twilio sends it).

    Waits at most `FHIR_IVR_TIMEOUT_SECONDS` (Twilio allows 15 s for the whole webhook). A caller ID that is
    not a phone number (withheld, "anonymous") is treated as no match. Any EHR error (`EhrUnavailable`,
    `EhrRejected`) gives status `unavailable`: the call continues and the case is marked "EHR context
    pending". Never raises for EHR trouble. Must be called outside a database transaction (no row lock is
    held while the EHR is slow).
    """
    try:
        matches = find_patients_by_phone(phone, timeout=settings.FHIR_IVR_TIMEOUT_SECONDS)
    except InvalidPhoneNumber:
        return PhoneLookup(EhrStatus.NONE)
    except EhrError as exc:
        logger.warning(
            "ivr %s: EHR lookup failed (%s); continuing without patient context", call_sid, type(exc).__name__
        )
        return PhoneLookup(EhrStatus.UNAVAILABLE)
    if not matches:
        return PhoneLookup(EhrStatus.NONE)
    return PhoneLookup(EhrStatus.FOUND, [candidate_of(match) for match in matches])


def _clear(case: Case, *, summary: str) -> None:
    """No unique patient: the case stays unidentified, and a FHIR write-back held for it is skipped."""
    with transaction.atomic():
        case_clear_ehr_pending(case_id=case.pk, clinic=case.clinic, summary=summary)
        writeback_patient_resolved(clinic=case.clinic, source_id=case.pk, patient_fhir_id="")


def pending_patients_resolve(*, limit: int = 50) -> dict[str, int]:
    """Retry the EHR lookup of cases marked `ehr_context_pending` (the EHR was down during their call).

    For each case (oldest first, at most `limit`): search by `callback_number`, keep the patients whose
    birth date equals the birth date the caller entered (`patient_birth_date`); exactly one ->
    `case_attach_patient`; none, several, no birth date, or a caller ID that is not a number ->
    `case_clear_ehr_pending` with the reason on the timeline (the case stays unidentified; a nurse
    confirms). Stops at the first `EhrUnavailable` and leaves the rest pending for the next beat.
    Returns counts `{"attached", "cleared", "deferred"}`.
    """
    counts = {"attached": 0, "cleared": 0, "deferred": 0}
    pending = list(
        Case.objects.filter(ehr_context_pending=True).select_related("clinic").order_by("created_at", "pk")[:limit]
    )
    for index, case in enumerate(pending):
        try:
            matches = find_patients_by_phone(case.callback_number, timeout=settings.FHIR_TIMEOUT_SECONDS)
        except InvalidPhoneNumber:
            _clear(case, summary="Caller ID is not a phone number; patient not looked up")
            counts["cleared"] += 1
            continue
        except EhrRejected:
            _clear(case, summary="The EHR refused the patient search; nurse to confirm")
            counts["cleared"] += 1
            continue
        except EhrUnavailable:
            counts["deferred"] += len(pending) - index
            logger.info("EHR still unavailable; %d pending case(s) deferred", counts["deferred"])
            break
        if case.patient_birth_date is None:
            _clear(case, summary="No birth date was entered; patient not attached")
            counts["cleared"] += 1
            continue
        same_birth_date = [m for m in matches if m.birth_date == case.patient_birth_date]
        if len(same_birth_date) == 1:
            match = same_birth_date[0]
            with transaction.atomic():
                case_attach_patient(
                    case_id=case.pk,
                    clinic=case.clinic,
                    patient_fhir_id=match.fhir_id,
                    patient_display=match.display,
                    patient_birth_date=match.birth_date,
                )
                _schedule_chart_risk(case.pk, case.clinic_id)
                # A case closed while the lookup was pending has its FHIR write-back held for this.
                writeback_patient_resolved(
                    clinic=case.clinic, source_id=case.pk, patient_fhir_id=match.fhir_id, patient_display=match.display
                )
            counts["attached"] += 1
        else:
            reason = "several patients match" if same_birth_date else "no patient matches"
            _clear(case, summary=f"EHR reached after the call: {reason} the caller's number and birth date")
            counts["cleared"] += 1
    return counts
