"""The EHR facade: find a patient, load a patient context, submit an outcome (DESIGN §7).

Everything else in CareLine calls these functions; the FHIR and HL7 details stay in `ehr/fhir/` and
`ehr/hl7/`.
"""

from __future__ import annotations

from django.conf import settings

from clinics.models import Clinic
from ehr.fhir.patients import search_by_phone
from ehr.models import WriteBack
from ehr.types import Outcome, PatientContext, PatientMatch


def find_patients_by_phone(phone: str, *, timeout: float | None = None) -> list[PatientMatch]:
    """FHIR `Patient` search by phone number (any format; normalised to the formats EHRs store).

    `timeout` in seconds (default `FHIR_TIMEOUT_SECONDS`; the IVR passes `FHIR_IVR_TIMEOUT_SECONDS`).
    Returns every match (several for a household sharing a number), [] when none.
    Raises EhrUnavailable when the server cannot be reached in time or answers 5xx.
    """
    return search_by_phone(phone, timeout=timeout if timeout is not None else settings.FHIR_TIMEOUT_SECONDS)


def load_patient_context(fhir_id: str) -> PatientContext:
    """The chart of FHIR `Patient/<fhir_id>`; cached for `FHIR_CONTEXT_CACHE_SECONDS`.

    Does not audit: callers go through an `access_*` selector that writes the audit row.
    Raises EhrUnavailable when the Patient read itself fails; a failed section is listed in
    `PatientContext.unavailable` instead.
    """
    raise NotImplementedError


def writeback_enqueue(*, clinic: Clinic, outcome: Outcome) -> list[WriteBack]:
    """Write the outbox rows for `outcome` in the caller's transaction; dispatch sending on commit."""
    raise NotImplementedError
