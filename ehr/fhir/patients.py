"""FHIR `Patient` search by phone."""

from __future__ import annotations

from datetime import date

from fhirclient.models.patient import Patient

from ehr.fhir.client import call, server_for
from ehr.phone import search_variants
from ehr.types import PatientMatch


def patient_display(patient: Patient) -> str:
    for name in patient.name or []:
        if name.text:
            return str(name.text)
        given = " ".join(name.given or [])
        return f"{given} {name.family or ''}".strip()
    return ""


def patient_language(patient: Patient) -> str:
    for communication in patient.communication or []:
        for coding in communication.language.coding or []:
            if coding.code:
                return str(coding.code)
    return ""


def to_match(patient: Patient) -> PatientMatch:
    """Summarise a fhirclient `Patient` as a `PatientMatch`."""
    birth: date | None = patient.birthDate.date if patient.birthDate else None
    return PatientMatch(
        fhir_id=str(patient.id), display=patient_display(patient), birth_date=birth, language=patient_language(patient)
    )


def search_by_phone(phone: str, *, timeout: float) -> list[PatientMatch]:
    """`GET Patient?phone=<variants, comma-separated>`; every variant of the number in one OR search."""
    server = server_for(timeout)
    query = Patient.where(struct={"phone": ",".join(search_variants(phone)), "_count": "50"})
    patients = call(lambda: query.perform_resources(server))
    return [to_match(p) for p in patients if isinstance(p, Patient)]
