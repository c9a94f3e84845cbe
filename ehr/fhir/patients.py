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


def patient_state(patient: Patient) -> str:
    """The US state of the patient's home address (else the first address with a state), upper case; "" if none.

    FHIR R4 `Address.state` holds the USPS code for US addresses (US Core); a value that is not two letters
    (a spelled-out name, a foreign region) gives "".
    """
    addresses = list(patient.address or [])
    addresses.sort(key=lambda a: 0 if a.use == "home" else 1)
    for address in addresses:
        state = (address.state or "").strip().upper()
        if state:
            return state if len(state) == 2 and state.isalpha() else ""
    return ""


def to_match(patient: Patient) -> PatientMatch:
    """Summarise a fhirclient `Patient` as a `PatientMatch`."""
    birth: date | None = patient.birthDate.date if patient.birthDate else None
    return PatientMatch(
        fhir_id=str(patient.id),
        display=patient_display(patient),
        birth_date=birth,
        language=patient_language(patient),
        state=patient_state(patient),
    )


def search_by_phone(phone: str, *, timeout: float) -> list[PatientMatch]:
    """`GET Patient?phone=<variants, comma-separated>`; every variant of the number in one OR search."""
    server = server_for(timeout)
    query = Patient.where(struct={"phone": ",".join(search_variants(phone)), "_count": "50"})
    patients = call(lambda: query.perform_resources(server))
    return [to_match(p) for p in patients if isinstance(p, Patient)]
