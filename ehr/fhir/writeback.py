"""The triage outcome as one FHIR R4 transaction Bundle, and sending it (DESIGN §6.3).

Entries (every one keyed on the case so a resend never duplicates):

- Encounter: POST with `ifNoneExist=identifier=<case system>|<uuid>`; status finished, class v3 ActCode
  `VR` "virtual", type SNOMED CT 401267002 "Telephone triage encounter", period = the triage.
- QuestionnaireResponse: PUT `QuestionnaireResponse/<case-derived id>`; questionnaire
  `urn:careline:protocol:<code>|<version>`, one item per question (valueBoolean), then the acuity
  (valueInteger, CTAS 1-5) and the disposition (valueCoding).
- DocumentReference: POST with `ifNoneExist` on the case identifier; type LOINC 34748-4 "Telephone
  encounter Note", text/plain base64 attachment, context.encounter -> the Encounter.
- Provenance: PUT `Provenance/<case-derived id>`; targets all of the above; agent author = the nurse,
  agent assembler = CareLine (Device).

Why a QuestionnaireResponse, not Observations: the caller's answers are question/answer pairs of a
versioned protocol that CareLine authors; a QuestionnaireResponse keeps them together with the protocol
version they were asked from, whereas Observations would need an `Observation.code` per question and no
standard terminology has codes for our own questions. Acuity and disposition ride along as items.

Why PUT for QuestionnaireResponse and Provenance: Provenance has no `identifier` in R4, and sekmet-fhir 0.1.1
offers no search parameters at all on QuestionnaireResponse (`QuestionnaireResponse?identifier=` ignores the
parameter and returns every one, checked by hand), so `ifNoneExist` cannot deduplicate either. An update to a
client-chosen id derived from the case (update-as-create) is idempotent on any server that allows it.
sekmet does not resolve `urn:uuid` references inside `ifNoneExist`, which is why no condition refers to one.

A duplicate conditional create answers `200 OK` with the existing resource (sekmet, per the FHIR spec), so a
resend stores nothing new. Every entry's `response.status` must be 2xx; otherwise, and for a 4xx on the
whole Bundle (412: several matches), the send raises EhrRejected.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

from fhirclient.models.attachment import Attachment
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.documentreference import (
    DocumentReference,
    DocumentReferenceContent,
    DocumentReferenceContext,
)
from fhirclient.models.encounter import Encounter, EncounterParticipant
from fhirclient.models.fhirdatetime import FHIRDateTime
from fhirclient.models.fhirinstant import FHIRInstant
from fhirclient.models.fhirreference import FHIRReference as Reference
from fhirclient.models.identifier import Identifier
from fhirclient.models.period import Period
from fhirclient.models.provenance import Provenance, ProvenanceAgent
from fhirclient.models.questionnaireresponse import (
    QuestionnaireResponse,
    QuestionnaireResponseItem,
    QuestionnaireResponseItemAnswer,
)

from ehr.fhir.client import call, server_for
from ehr.types import EhrRejected, Outcome

CASE_IDENTIFIER_SYSTEM = "urn:careline:triage-case"
STAFF_IDENTIFIER_SYSTEM = "urn:careline:staff"
DISPOSITION_SYSTEM = "urn:careline:disposition"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
PROVENANCE_AGENT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
TELEPHONE_TRIAGE = ("401267002", "Telephone triage encounter")  # SNOMED CT
TELEPHONE_NOTE = ("34748-4", "Telephone encounter Note")  # LOINC
# Namespace for the bundle's urn:uuid fullUrls and the PUT ids: stable per case, so a resend is byte-equal.
_NAMESPACE = uuid.UUID("6f1c1f7e-0d55-4c55-9d0e-2d5b0b8a4c11")


def _coding(system: str, code: str, display: str) -> Coding:
    return Coding({"system": system, "code": code, "display": display})


def _concept(system: str, code: str, display: str) -> CodeableConcept:
    return CodeableConcept({"coding": [_coding(system, code, display).as_json()], "text": display})


def _when(value: datetime) -> str:
    return value.isoformat()


def _case_identifier(outcome: Outcome) -> dict[str, str]:
    return {"system": CASE_IDENTIFIER_SYSTEM, "value": outcome.case_uuid}


def _nurse_reference(outcome: Outcome) -> dict[str, Any]:
    """A logical reference to the nurse (CareLine staff have no Practitioner id in the EHR)."""
    return {
        "display": outcome.nurse_display or outcome.nurse_username,
        "identifier": {"system": STAFF_IDENTIFIER_SYSTEM, "value": outcome.nurse_username},
    }


def resource_ids(outcome: Outcome) -> dict[str, str]:
    """Deterministic ids per case: `urn:uuid:` fullUrls and the PUT ids of QuestionnaireResponse / Provenance."""

    def derived(kind: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{outcome.case_uuid}:{kind}"))

    return {
        "encounter": f"urn:uuid:{derived('Encounter')}",
        "answers": f"urn:uuid:{derived('QuestionnaireResponse')}",
        "note": f"urn:uuid:{derived('DocumentReference')}",
        "provenance": f"urn:uuid:{derived('Provenance')}",
        "answers_id": f"careline-triage-{outcome.case_uuid}",
        "provenance_id": f"careline-triage-{outcome.case_uuid}",
    }


def _encounter(outcome: Outcome) -> Encounter:
    encounter = Encounter()
    encounter.status = "finished"
    encounter.class_fhir = _coding(ACT_CODE_SYSTEM, "VR", "virtual")
    encounter.type = [_concept(SNOMED, *TELEPHONE_TRIAGE)]
    encounter.identifier = [Identifier(_case_identifier(outcome))]
    encounter.subject = Reference({"reference": f"Patient/{outcome.patient_fhir_id}"})
    encounter.period = Period({"start": _when(outcome.started_at), "end": _when(outcome.ended_at)})
    encounter.participant = [EncounterParticipant({"individual": _nurse_reference(outcome)})]
    return encounter


def _answers(outcome: Outcome, ids: dict[str, str]) -> QuestionnaireResponse:
    response = QuestionnaireResponse()
    response.id = ids["answers_id"]
    response.status = "completed"
    response.identifier = Identifier(_case_identifier(outcome))
    response.questionnaire = (
        f"urn:careline:protocol:{outcome.protocol_code or 'none'}|{outcome.protocol_version or '0'}"
    )
    response.subject = Reference({"reference": f"Patient/{outcome.patient_fhir_id}"})
    response.encounter = Reference({"reference": ids["encounter"]})
    response.authored = FHIRDateTime(_when(outcome.ended_at))
    response.author = Reference(_nurse_reference(outcome))
    items = [
        QuestionnaireResponseItem(
            {"linkId": answer.question_id, "text": answer.text, "answer": [{"valueBoolean": answer.answer}]}
        )
        for answer in outcome.answers
    ]
    items.append(
        QuestionnaireResponseItem(
            {"linkId": "acuity", "text": "Triage acuity (CTAS 1-5)", "answer": [{"valueInteger": outcome.acuity}]}
        )
    )
    disposition = _coding(DISPOSITION_SYSTEM, outcome.disposition_code, outcome.disposition_display)
    items.append(
        QuestionnaireResponseItem(
            {
                "linkId": "disposition",
                "text": "Disposition (nurse-confirmed)",
                "answer": [QuestionnaireResponseItemAnswer({"valueCoding": disposition.as_json()}).as_json()],
            }
        )
    )
    response.item = items
    return response


def _note(outcome: Outcome, ids: dict[str, str]) -> DocumentReference:
    document = DocumentReference()
    document.status = "current"
    document.identifier = [Identifier(_case_identifier(outcome))]
    document.type = _concept(LOINC, *TELEPHONE_NOTE)
    document.subject = Reference({"reference": f"Patient/{outcome.patient_fhir_id}"})
    document.date = FHIRInstant(_when(outcome.ended_at))
    document.author = [Reference(_nurse_reference(outcome))]
    attachment = Attachment()
    attachment.contentType = "text/plain; charset=utf-8"
    attachment.data = base64.b64encode(outcome.note.encode("utf-8")).decode("ascii")
    attachment.title = f"Nurse triage note: {outcome.protocol_title or outcome.protocol_code}".strip()
    attachment.creation = FHIRDateTime(_when(outcome.ended_at))
    document.content = [DocumentReferenceContent({"attachment": attachment.as_json()})]
    document.context = DocumentReferenceContext(
        {
            "encounter": [{"reference": ids["encounter"]}],
            "period": {"start": _when(outcome.started_at), "end": _when(outcome.ended_at)},
        }
    )
    return document


def _provenance(outcome: Outcome, ids: dict[str, str], targets: list[str]) -> Provenance:
    provenance = Provenance()
    provenance.id = ids["provenance_id"]
    provenance.target = [Reference({"reference": target}) for target in targets]
    provenance.recorded = FHIRInstant(_when(outcome.ended_at))
    provenance.agent = [
        ProvenanceAgent(
            {"type": _concept(PROVENANCE_AGENT_TYPE, "author", "Author").as_json(), "who": _nurse_reference(outcome)}
        ),
        ProvenanceAgent(
            {
                "type": _concept(PROVENANCE_AGENT_TYPE, "assembler", "Assembler").as_json(),
                "who": {"type": "Device", "display": "CareLine nurse triage"},
            }
        ),
    ]
    return provenance


def build_bundle(outcome: Outcome) -> dict[str, Any]:
    """The transaction Bundle (FHIR R4 JSON) for `outcome`; requires `outcome.patient_fhir_id`.

    Each resource goes through fhirclient's R4 model and `.as_json()`, which raises FHIRValidationError for
    a missing required element or a wrong type before anything is sent. The DocumentReference is left out
    when the note is empty (there is nothing to file).
    """
    if not outcome.patient_fhir_id:
        raise ValueError("a FHIR write-back needs the patient's FHIR id")
    ids = resource_ids(outcome)
    condition = f"identifier={CASE_IDENTIFIER_SYSTEM}|{outcome.case_uuid}"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": ids["encounter"],
            "resource": _encounter(outcome).as_json(),
            "request": {"method": "POST", "url": "Encounter", "ifNoneExist": condition},
        },
        {
            "fullUrl": ids["answers"],
            "resource": _answers(outcome, ids).as_json(),
            "request": {"method": "PUT", "url": f"QuestionnaireResponse/{ids['answers_id']}"},
        },
    ]
    if outcome.note.strip():
        entries.append(
            {
                "fullUrl": ids["note"],
                "resource": _note(outcome, ids).as_json(),
                "request": {"method": "POST", "url": "DocumentReference", "ifNoneExist": condition},
            }
        )
    targets = [entry["fullUrl"] for entry in entries]
    entries.append(
        {
            "fullUrl": ids["provenance"],
            "resource": _provenance(outcome, ids, targets).as_json(),
            "request": {"method": "PUT", "url": f"Provenance/{ids['provenance_id']}"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def send_bundle(bundle: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """POST `bundle` to the FHIR base; returns `{"entries": [{"resourceType", "status", "location"}]}`.

    Raises EhrUnavailable (transport, timeout, 5xx) or EhrRejected (4xx such as 412 "several matches",
    a non-2xx entry status, or a reply that is not a transaction-response Bundle).
    """
    server = server_for(timeout)
    response = call(lambda: server.post_json("", bundle))
    try:
        body = response.json()
    except ValueError as exc:
        raise EhrRejected("FHIR server answered a transaction with a body that is not JSON") from exc
    replies = body.get("entry") or []
    if body.get("resourceType") != "Bundle" or len(replies) != len(bundle["entry"]):
        raise EhrRejected("FHIR server answered a transaction without one response per entry")
    entries = []
    for sent, reply in zip(bundle["entry"], replies, strict=True):
        status = str((reply.get("response") or {}).get("status", ""))
        resource_type = sent["resource"]["resourceType"]
        if not status[:1] == "2":
            raise EhrRejected(f"FHIR server refused the {resource_type} entry: {status or 'no status'}")
        entries.append(
            {
                "resourceType": resource_type,
                "status": status,
                "location": (reply.get("response") or {}).get("location", ""),
            }
        )
    return {"entries": entries}
