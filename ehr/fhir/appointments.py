"""FHIR `Appointment` search for reminder campaigns: booked appointments starting in a time window.

`GET [base]/Appointment?date=ge<start>&date=lt<end>&status=booked&_include=Appointment:patient&_count=N`,
following the Bundle's `next` links (FHIR R4 search, "Paging"). The patient's phone is the first
`telecom` with `system=phone` (a `use=mobile` one preferred: reminders are texts), normalised to E.164.
An appointment with no patient participant, or whose patient is not in the Bundle, has phone "".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings

from ehr.fhir.client import call, server_for
from ehr.phone import InvalidPhoneNumber, to_e164
from ehr.types import AppointmentDue

MAX_PAGES = 1000


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _phone(patient: dict[str, Any]) -> str:
    phones = [t for t in patient.get("telecom", []) or [] if t.get("system") == "phone" and t.get("value")]
    phones.sort(key=lambda t: 0 if t.get("use") == "mobile" else 1)
    for telecom in phones:
        try:
            return to_e164(str(telecom["value"]))
        except InvalidPhoneNumber:
            continue
    return ""


def _language(patient: dict[str, Any]) -> str:
    for communication in patient.get("communication", []) or []:
        for coding in (communication.get("language") or {}).get("coding", []) or []:
            if coding.get("code"):
                return str(coding["code"])[:2].lower()
    return ""


def _patient_ref(appointment: dict[str, Any]) -> str:
    for participant in appointment.get("participant", []) or []:
        reference = str((participant.get("actor") or {}).get("reference", ""))
        if reference.startswith("Patient/"):
            return reference.split("/", 1)[1]
    return ""


def booked_appointments(*, start: datetime, end: datetime, timeout: float | None = None) -> list[AppointmentDue]:
    """Booked appointments with `start <= Appointment.start < end` (aware datetimes), oldest first.

    Raises EhrUnavailable (transport, 5xx, circuit open) and EhrRejected (4xx).
    """
    server = server_for(timeout)
    session = server.session
    base = settings.FHIR_BASE_URL.rstrip("/")
    url: str | None = f"{base}/Appointment"
    params: dict[str, Any] | None = {
        "date": [f"ge{_iso(start)}", f"lt{_iso(end)}"],
        "status": "booked",
        "_include": "Appointment:patient",
        "_count": 100,
    }
    appointments: list[dict[str, Any]] = []
    patients: dict[str, dict[str, Any]] = {}
    for _ in range(MAX_PAGES):
        if url is None:
            break
        page_url, page_params = url, params

        def fetch(page_url: str = page_url, page_params: dict[str, Any] | None = page_params) -> dict[str, Any]:
            response = session.get(page_url, params=page_params, headers={"Accept": "application/fhir+json"})
            response.raise_for_status()
            return dict(response.json())

        bundle = call(fetch)
        for entry in bundle.get("entry", []) or []:
            resource = entry.get("resource") or {}
            if resource.get("resourceType") == "Appointment":
                appointments.append(resource)
            elif resource.get("resourceType") == "Patient":
                patients[str(resource.get("id"))] = resource
        url = next((link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"), None)
        params = None
    due = []
    for appointment in appointments:
        patient_id = _patient_ref(appointment)
        patient = patients.get(patient_id, {})
        starts = datetime.fromisoformat(str(appointment["start"]).replace("Z", "+00:00"))
        due.append(
            AppointmentDue(
                appointment_id=str(appointment["id"]),
                patient_fhir_id=patient_id,
                start=starts,
                phone=_phone(patient),
                language=_language(patient),
            )
        )
    return sorted(due, key=lambda a: (a.start, a.appointment_id))
