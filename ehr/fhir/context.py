"""The patient context (chart) from FHIR R4: one Patient read plus five section searches run in parallel.

Which searches: the server's CapabilityStatement (`ehr.fhir.capability`) decides. Every parameter below is
sent only when the server lists it for that resource type; a filter the server cannot apply is applied in
Python to the results instead (`Section.keep`), so the chart means the same on every server.

Section searches (US Core 3.1.1 forms; `<id>` the Patient id) and what is kept:

- `allergies`: `AllergyIntolerance?patient=<id>`; all.
- `conditions`: `Condition?patient=<id>&category=problem-list-item,encounter-diagnosis&clinical-status=active`;
  the active ones.
- `medications`: `MedicationRequest?patient=<id>&intent=order&status=active`
  (`&_include=MedicationRequest:medication` when listed); active orders.
- `encounters`: `Encounter?patient=<id>&date=ge<today - FHIR_CONTEXT_ENCOUNTER_MONTHS>&_sort=-date&_count=5`;
  the newest 5 (first page only).
- `vitals`: `Observation?patient=<id>&category=vital-signs&_sort=-date&_count=50`; the newest set.

Conditions, a clinical choice: US Core's "problems" search is `category=problem-list-item`, but EHRs (and
the Synthea data CareLine tests with) record many active problems only as `encounter-diagnosis` — e.g.
"Normal pregnancy", which the pregnancy risk rule (`triage.risk`) reads from this section. Hiding them
would hide risk, so CareLine asks for both US Core categories, problem-list items first in the list
(their `detail` says "problem list"). A server without the `category` parameter gets
`clinical-status=active` alone (every active Condition); one without `clinical-status` either gets
`patient` only and the active ones are kept in Python.

Medications: `_include=MedicationRequest:medication` is added when the server lists it, so a request that
names its drug by reference (`medicationReference`) shows the drug's name without a second read.

A vital-sign "set" is the Observations sharing the newest `effectiveDateTime` (as the shared data's
README defines it). A section that fails (transport error, 4xx/5xx, an unparsable resource, or the time
budget running out) is reported in `PatientContext.unavailable`; only the Patient read is fatal.
Nothing here logs resource content: log lines carry section names and exception types only.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from fhirclient.models.allergyintolerance import AllergyIntolerance
from fhirclient.models.condition import Condition
from fhirclient.models.encounter import Encounter
from fhirclient.models.medication import Medication
from fhirclient.models.medicationrequest import MedicationRequest
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient

from ehr.fhir.capability import Capabilities, server_capabilities
from ehr.fhir.client import call, server_for
from ehr.fhir.patients import patient_display, patient_language
from ehr.types import ChartEntry, EhrRejected, PatientContext

logger = logging.getLogger(__name__)

# FHIR R4 `id` datatype: [A-Za-z0-9\-\.]{1,64}. Checked so an id can never change the request path.
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# v2 table 0203 identifier type "MR" (medical record number), as used in Patient.identifier.type.
MRN_TYPE_CODE = "MR"
ENCOUNTERS_SHOWN = 5


@dataclass(frozen=True)
class Section:
    """One chart section: the resource type searched, its search parameters, how results become lines,
    and `keep`, the filter applied in Python for what the server could not filter itself."""

    name: str
    resource: type[Any]
    params: dict[str, str]
    summarise: Callable[[list[Any]], list[ChartEntry]]
    first_page_only: bool = False
    keep: Callable[[Any], bool] = lambda resource: True
    patient_param: str = "patient"


# --- summaries ---------------------------------------------------------------------------------------------


def _concept(concept: Any) -> str:
    """A CodeableConcept as a person reads it: its text, else the first coding's display, else its code."""
    if concept is None:
        return ""
    if concept.text:
        return str(concept.text)
    for coding in concept.coding or []:
        if coding.display or coding.code:
            return str(coding.display or coding.code)
    return ""


def _iso(value: Any) -> str:
    """A fhirclient FHIRDate/FHIRDateTime as the string the server sent, or ""."""
    if value is None:
        return ""
    text = value.as_json()
    return str(text) if text else ""


def _instant(value: Any) -> datetime:
    """Sort key for a FHIRDate/FHIRDateTime: an aware datetime (naive and date-only read as UTC)."""
    raw = getattr(value, "datetime", None) or getattr(value, "date", None)
    if raw is None:
        return datetime.min.replace(tzinfo=UTC)
    if not isinstance(raw, datetime):
        raw = datetime(raw.year, raw.month, raw.day)
    return raw if raw.tzinfo else raw.replace(tzinfo=UTC)


def _quantity(quantity: Any) -> str:
    if quantity is None or quantity.value is None:
        return ""
    value = f"{quantity.value:g}" if isinstance(quantity.value, float) else str(quantity.value)
    return f"{value} {quantity.unit or quantity.code or ''}".strip()


def _allergies(resources: list[Any]) -> list[ChartEntry]:
    entries = []
    for allergy in resources:
        reactions = [_concept(m) for r in allergy.reaction or [] for m in r.manifestation or []]
        severity = allergy.criticality or next((r.severity for r in allergy.reaction or [] if r.severity), "")
        entries.append(
            ChartEntry(
                text=_concept(allergy.code),
                detail=", ".join(filter(None, reactions)),
                date=_iso(allergy.recordedDate or allergy.onsetDateTime),
                severity=str(severity or ""),
            )
        )
    return sorted(entries, key=lambda e: e.text.lower())


def _conditions(resources: list[Any]) -> list[ChartEntry]:
    ordered = sorted(resources, key=lambda c: _instant(c.onsetDateTime or c.recordedDate), reverse=True)
    return [ChartEntry(text=_concept(c.code), date=_iso(c.onsetDateTime or c.recordedDate)) for c in ordered]


def _medications(resources: list[Any]) -> list[ChartEntry]:
    ordered = sorted(resources, key=lambda m: _instant(m.authoredOn), reverse=True)
    entries = []
    for request in ordered:
        text = _concept(request.medicationCodeableConcept)
        if not text and request.medicationReference is not None:
            text = str(request.medicationReference.display or "")
        dosage = "; ".join(d.text for d in request.dosageInstruction or [] if d.text)
        entries.append(ChartEntry(text=text, detail=dosage, date=_iso(request.authoredOn)))
    return entries


def _encounters(resources: list[Any]) -> list[ChartEntry]:
    def start(encounter: Any) -> Any:
        return encounter.period.start if encounter.period else None

    ordered = sorted(resources, key=lambda e: _instant(start(e)), reverse=True)[:ENCOUNTERS_SHOWN]
    return [
        ChartEntry(
            text=", ".join(filter(None, (_concept(t) for t in e.type or []))) or (e.class_fhir.display or ""),
            detail=", ".join(filter(None, (_concept(r) for r in e.reasonCode or []))),
            date=_iso(start(e)),
        )
        for e in ordered
    ]


def _observation_value(observation: Any) -> str:
    if observation.valueQuantity is not None:
        return _quantity(observation.valueQuantity)
    if observation.valueCodeableConcept is not None:
        return _concept(observation.valueCodeableConcept)
    if observation.valueString:
        return str(observation.valueString)
    parts = [f"{_concept(c.code)} {_quantity(c.valueQuantity)}".strip() for c in observation.component or []]
    return "; ".join(parts)


def _latest_vitals(resources: list[Any]) -> list[ChartEntry]:
    if not resources:
        return []
    newest = max(_instant(o.effectiveDateTime) for o in resources)
    latest = [o for o in resources if _instant(o.effectiveDateTime) == newest]
    return sorted(
        (
            ChartEntry(text=_concept(o.code), detail=_observation_value(o), date=_iso(o.effectiveDateTime))
            for o in latest
        ),
        key=lambda e: e.text.lower(),
    )


def _codes(concepts: Any) -> set[str]:
    """Every coding code of a CodeableConcept or a list of them."""
    if concepts is None:
        return set()
    items = concepts if isinstance(concepts, list) else [concepts]
    return {str(c.code) for concept in items for c in concept.coding or [] if c.code}


def _conditions_problem_list_first(resources: list[Any]) -> list[ChartEntry]:
    entries = _conditions(resources)
    problems = {id(c) for c in resources if "problem-list-item" in _codes(c.category)}
    ordered = sorted(resources, key=lambda c: _instant(c.onsetDateTime or c.recordedDate), reverse=True)
    flagged = [(id(c) in problems) for c in ordered]
    for entry, problem in zip(entries, flagged, strict=True):
        if problem:
            entry.detail = "problem list"
    return [e for e, p in zip(entries, flagged, strict=True) if p] + [
        e for e, p in zip(entries, flagged, strict=True) if not p
    ]


def months_before(today: date, months: int) -> date:
    """The same day `months` calendar months earlier (clamped to the month's last day: 31 Mar - 1 = 28/29 Feb)."""
    index = today.year * 12 + today.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for day in (today.day, 30, 29, 28):
        try:
            return date(year, month, min(today.day, day))
        except ValueError:
            continue
    raise AssertionError("unreachable: every month has a 28th")


def build_sections(capabilities: Capabilities, *, today: date, encounter_months: int) -> tuple[Section, ...]:
    """The five sections with the search parameters `capabilities` supports (see the module table).

    `today` is the local date the encounter look-back counts from; `encounter_months` its length.
    """

    def params(resource_type: str, wanted: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in wanted.items() if capabilities.supports(resource_type, k)}

    def patient_param(resource_type: str) -> str:
        return "patient" if capabilities.supports(resource_type, "patient") or capabilities.assumed else "subject"

    condition_params = params(
        "Condition", {"category": "problem-list-item,encounter-diagnosis", "clinical-status": "active"}
    )
    medication_params = params("MedicationRequest", {"intent": "order", "status": "active"})
    if capabilities.can_include("MedicationRequest", "MedicationRequest:medication"):
        medication_params["_include"] = "MedicationRequest:medication"
    since = months_before(today, encounter_months)
    encounter_params = params("Encounter", {"date": f"ge{since.isoformat()}"})
    encounter_params.update({"_sort": "-date", "_count": str(ENCOUNTERS_SHOWN)})
    vitals_params = params("Observation", {"category": "vital-signs"})
    vitals_params.update({"_sort": "-date", "_count": "50"})

    def active_condition(c: Any) -> bool:
        return "active" in _codes(c.clinicalStatus) or c.clinicalStatus is None

    def active_order(m: Any) -> bool:
        return bool(m.status == "active" and m.intent == "order")

    def recent(e: Any) -> bool:
        start = e.period.start if e.period else None
        return start is None or _instant(start).date() >= since

    def vital_sign(o: Any) -> bool:
        return "vital-signs" in _codes(o.category)

    return (
        Section("allergies", AllergyIntolerance, {}, _allergies, patient_param=patient_param("AllergyIntolerance")),
        Section(
            "conditions",
            Condition,
            condition_params,
            _conditions_problem_list_first,
            keep=active_condition,
            patient_param=patient_param("Condition"),
        ),
        Section(
            "medications",
            MedicationRequest,
            medication_params,
            _medications,
            keep=active_order,
            patient_param=patient_param("MedicationRequest"),
        ),
        Section(
            "encounters",
            Encounter,
            encounter_params,
            _encounters,
            True,
            keep=recent,
            patient_param=patient_param("Encounter"),
        ),
        Section(
            "vitals",
            Observation,
            vitals_params,
            _latest_vitals,
            True,
            keep=vital_sign,
            patient_param=patient_param("Observation"),
        ),
    )


# --- reads ---------------------------------------------------------------------------------------------------


def _resolve_medications(resources: list[Any]) -> None:
    """Give each `medicationReference` the name of the `_include`d Medication it points at (in place)."""
    names = {
        f"Medication/{r.id}": _concept(r.code) for r in resources if isinstance(r, Medication) and r.id is not None
    }
    for request in resources:
        reference = getattr(request, "medicationReference", None)
        if isinstance(request, MedicationRequest) and reference is not None and not reference.display:
            reference.display = names.get(str(reference.reference or "")) or None


def _search(section: Section, fhir_id: str, timeout: float) -> list[ChartEntry]:
    """Run one section's search (its own server object: a requests.Session is not shared across threads)."""
    server = server_for(timeout)
    subject = fhir_id if section.patient_param == "patient" else f"Patient/{fhir_id}"
    search = section.resource.where(struct={section.patient_param: subject, **section.params})

    def run() -> list[Any]:
        if section.first_page_only:  # `_count` caps a page, not the result: don't follow `next` links
            bundle = next(search.perform_iter(server))
            return [entry.resource for entry in bundle.entry or [] if entry.resource is not None]
        return list(search.perform_resources_iter(server))

    resources = call(run)
    _resolve_medications(resources)
    return section.summarise([r for r in resources if isinstance(r, section.resource) and section.keep(r)])


def _mrn(patient: Patient) -> str:
    for identifier in patient.identifier or []:
        codes = {coding.code for coding in (identifier.type.coding or [] if identifier.type else [])}
        if MRN_TYPE_CODE in codes and identifier.value:
            return str(identifier.value)
    return ""


def read_patient_context(fhir_id: str, *, budget: float) -> PatientContext:
    """Read `Patient/<fhir_id>` then every section in parallel, all within `budget` seconds in total.

    The searches follow the server's CapabilityStatement (read from cache, or within the same budget).

    Returns a `PatientContext`; sections not answered within the budget, or failed, are named in
    `unavailable`. Raises EhrUnavailable (transport, timeout, 5xx) or EhrRejected (404 unknown patient,
    other 4xx, or an id that is not a FHIR id) when the Patient read fails.
    """
    if not FHIR_ID.match(fhir_id):
        raise EhrRejected("not a FHIR resource id")
    deadline = time.monotonic() + budget
    patient = call(lambda: Patient.read(fhir_id, server_for(budget)))
    capabilities = server_capabilities(timeout=max(deadline - time.monotonic(), 0.1))
    sections = build_sections(
        capabilities, today=timezone.localdate(), encounter_months=settings.FHIR_CONTEXT_ENCOUNTER_MONTHS
    )
    context = PatientContext(
        fhir_id=fhir_id,
        name=patient_display(patient),
        birth_date=_iso(patient.birthDate),
        gender=str(patient.gender or ""),
        phones=[str(t.value) for t in patient.telecom or [] if t.system == "phone" and t.value],
        language=patient_language(patient),
        mrn=_mrn(patient),
        fetched_at=timezone.now(),
    )
    remaining = max(deadline - time.monotonic(), 0.1)
    pool = ThreadPoolExecutor(max_workers=len(sections), thread_name_prefix="fhir-context")
    try:
        futures = {pool.submit(_search, section, fhir_id, remaining): section for section in sections}
        wait(futures, timeout=remaining, return_when=ALL_COMPLETED)
        for future, section in futures.items():
            if not future.done():
                logger.warning("FHIR context section %s: no answer within the time budget", section.name)
                context.unavailable.append(section.name)
                continue
            try:
                setattr(context, section.name, future.result())
            except Exception as exc:  # noqa: BLE001 - any failure degrades this one section only
                logger.warning("FHIR context section %s unavailable: %s", section.name, type(exc).__name__)
                context.unavailable.append(section.name)
    finally:
        # Late threads finish on their own request timeout; the nurse is not kept waiting for them.
        pool.shutdown(wait=False, cancel_futures=True)
    return context
