"""FHIR `Patient` search by phone (`phone` or `telecom`, whichever the server's CapabilityStatement lists)."""

from __future__ import annotations

import time
from datetime import date

from fhirclient.models.patient import Patient

from ehr.fhir.capability import server_capabilities
from ehr.fhir.client import call, server_for
from ehr.phone import search_variants
from ehr.types import EhrRejected, EhrUnavailable, PatientMatch


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


def phone_search_param(*, timeout: float) -> str:
    """`phone` when the server lists it for Patient, else `telecom` (FHIR R4 Patient search parameters:
    `phone` is the token on `telecom.where(system='phone')`, `telecom` on every ContactPoint; a number
    matches both the same way). Raises EhrRejected when the server lists neither."""
    capabilities = server_capabilities(timeout=timeout)
    for param in ("phone", "telecom"):
        if capabilities.supports("Patient", param):
            return param
    raise EhrRejected("the FHIR server supports neither Patient?phone= nor Patient?telecom=")


def search_by_phone(phone: str, *, timeout: float) -> list[PatientMatch]:
    """`GET Patient?phone=<variants, comma-separated>` (or `telecom=`, see `phone_search_param`); every
    variant of the number (`ehr.phone.search_variants`, normalised with `phonenumbers`) in one OR search.
    `timeout` in seconds for the whole lookup (a CapabilityStatement read on a cold cache included).
    Raises EhrUnavailable / EhrRejected (ehr.fhir.client.call)."""
    deadline = time.monotonic() + timeout
    param = phone_search_param(timeout=timeout)
    remaining = deadline - time.monotonic()
    if remaining <= 0.05:
        raise EhrUnavailable("time budget spent reading the CapabilityStatement")
    server = server_for(remaining)
    query = Patient.where(struct={param: ",".join(search_variants(phone)), "_count": "50"})
    patients = call(lambda: query.perform_resources(server))
    return [to_match(p) for p in patients if isinstance(p, Patient)]
