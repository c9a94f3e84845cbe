"""The triage outcome as one FHIR R4 transaction Bundle, and sending it (DESIGN §6.3).

Entries (every one keyed on the case so a resend never duplicates):

- Encounter: POST with `ifNoneExist=identifier=<case system>|<uuid>`; status finished, class v3 ActCode
  `VR` "virtual", type SNOMED CT 401267002 "Telephone triage encounter", period = the triage.
- QuestionnaireResponse: PUT `QuestionnaireResponse/<case-derived id>`; questionnaire
  `urn:careline:protocol:<code>|<version>`, one item per question (valueBoolean), then the acuity
  (valueInteger, CTAS 1-5) and the disposition (valueCoding).
- ClinicalImpression (the nurse's assessment): PUT `ClinicalImpression/<case-derived id>`; status completed,
  subject, encounter, date, assessor = the nurse, summary = disposition, CTAS acuity and the note's start.
- Observation (the disposition): POST with `ifNoneExist` on the case identifier; category `survey`, code
  `urn:careline:observation|triage-disposition`, valueCodeableConcept = the ladder's code/display
  (`urn:careline:disposition`), and the acuity as a *component* (`urn:careline:observation|triage-acuity`,
  valueInteger CTAS 1-5): one Observation, because disposition and acuity are one nurse decision made at
  one moment and should never be filed or amended apart.
- DocumentReference: POST with `ifNoneExist` on the case identifier; type LOINC 34748-4 "Telephone
  encounter Note", text/plain base64 attachment, context.encounter -> the Encounter.
- Communication, one per SMS sent to the caller (`Outcome.messages_sent`): POST with `ifNoneExist` on
  `urn:careline:sms|<case uuid>:<message id>`; status completed, medium v3 ParticipationMode `SMSWRIT`,
  recipient the Patient, payload the text sent, encounter -> the Encounter.
- Task, when the disposition needs a follow-up (`FOLLOW_UP_HOURS`): POST with `ifNoneExist` on the case
  identifier; status requested, intent order, code `urn:careline:task|follow-up-callback`, for the
  Patient, focus and encounter -> the Encounter, restriction.period.end = the time by which the clinic
  should call the patient back.
- Provenance: PUT `Provenance/<case-derived id>`; targets all of the above; agent author = the nurse,
  agent assembler = CareLine (Device).

Follow-up rule (`FOLLOW_UP_HOURS`): a Task is filed when the patient was told to see a clinician
(`clinician-today`, `clinician-24h`, `clinician-3d`, `clinician-2w`: the clinic calls back to book the visit
within that window: 12 h, 24 h, 3 d, 14 d) or to care for themselves at home (`home-care`: a check-in call
within 24 h so a worsening patient is not left alone). This is CareLine's default policy, not a cited
guideline: a clinic with another policy changes `FOLLOW_UP_HOURS`. Emergency dispositions (`call-911`,
`ed-now`, `ed-ucc-hours`) hand care to an emergency service and get no Task; nor does a clinic-specific
code not listed here.

Why a QuestionnaireResponse, not Observations: the caller's answers are question/answer pairs of a
versioned protocol that CareLine authors; a QuestionnaireResponse keeps them together with the protocol
version they were asked from, whereas Observations would need an `Observation.code` per question and no
standard terminology has codes for our own questions. Acuity and disposition ride along as items.

Why PUT for QuestionnaireResponse, ClinicalImpression and Provenance: Provenance has no `identifier` in R4,
and sekmet-fhir 0.1.1 lists no search parameters at all for QuestionnaireResponse and ClinicalImpression in
its CapabilityStatement (`?identifier=` ignores the parameter and returns every one, checked by hand), so
`ifNoneExist` cannot deduplicate them. Every other resource uses conditional create on a stable identifier.
An update to a client-chosen id derived from the case (update-as-create) is idempotent on any server that
allows it.
sekmet does not resolve `urn:uuid` references inside `ifNoneExist`, which is why no condition refers to one.

A duplicate conditional create answers `200 OK` with the existing resource (sekmet, per the FHIR spec), so a
resend stores nothing new. Every entry's `response.status` must be 2xx; otherwise, and for a 4xx on the
whole Bundle, the send raises EhrRejected. A 412 (the condition matched several resources: the EHR already
holds duplicates of this case) raises EhrRejected with `MULTIPLE_MATCHES`, which the console shows on the
case: retrying cannot help until someone merges the duplicates in the EHR.
"""

from __future__ import annotations

import base64
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from fhirclient.models.attachment import Attachment
from fhirclient.models.clinicalimpression import ClinicalImpression
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.communication import Communication, CommunicationPayload
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
from fhirclient.models.observation import Observation, ObservationComponent
from fhirclient.models.period import Period
from fhirclient.models.provenance import Provenance, ProvenanceAgent
from fhirclient.models.questionnaireresponse import (
    QuestionnaireResponse,
    QuestionnaireResponseItem,
    QuestionnaireResponseItemAnswer,
)
from fhirclient.models.task import Task, TaskRestriction

from ehr.fhir.client import call, server_for
from ehr.types import EhrRejected, Outcome, SentMessage

CASE_IDENTIFIER_SYSTEM = "urn:careline:triage-case"
STAFF_IDENTIFIER_SYSTEM = "urn:careline:staff"
DISPOSITION_SYSTEM = "urn:careline:disposition"
OBSERVATION_CODE_SYSTEM = "urn:careline:observation"
TASK_CODE_SYSTEM = "urn:careline:task"
SMS_IDENTIFIER_SYSTEM = "urn:careline:sms"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
# Dispositions that need a follow-up callback, and within how many hours of the call (see the module text).
FOLLOW_UP_HOURS: dict[str, int] = {
    "clinician-today": 12,
    "clinician-24h": 24,
    "clinician-3d": 72,
    "clinician-2w": 336,
    "home-care": 24,
}
NOTE_EXCERPT_CHARACTERS = 200
MULTIPLE_MATCHES = (
    "the EHR holds several {kind} records for this case (HTTP 412): merge the duplicates in the EHR, then retry"
)
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
        "impression": f"urn:uuid:{derived('ClinicalImpression')}",
        "disposition": f"urn:uuid:{derived('Observation')}",
        "note": f"urn:uuid:{derived('DocumentReference')}",
        "task": f"urn:uuid:{derived('Task')}",
        "provenance": f"urn:uuid:{derived('Provenance')}",
        "answers_id": f"careline-triage-{outcome.case_uuid}",
        "impression_id": f"careline-triage-{outcome.case_uuid}",
        "provenance_id": f"careline-triage-{outcome.case_uuid}",
    }


def _message_key(outcome: Outcome, index: int, message: SentMessage) -> str:
    return f"{outcome.case_uuid}:{message.message_id or index}"


def _message_full_url(outcome: Outcome, index: int, message: SentMessage) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, 'Communication:' + _message_key(outcome, index, message))}"


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


def _patient(outcome: Outcome) -> Reference:
    return Reference({"reference": f"Patient/{outcome.patient_fhir_id}"})


def assessment_summary(outcome: Outcome) -> str:
    """The ClinicalImpression summary: disposition, CTAS acuity, then the note's first
    `NOTE_EXCERPT_CHARACTERS` characters (the whole note is in the DocumentReference)."""
    summary = f"{outcome.disposition_display} ({outcome.disposition_code}); CTAS {outcome.acuity}."
    note = " ".join(outcome.note.split())
    if note:
        excerpt = note if len(note) <= NOTE_EXCERPT_CHARACTERS else note[: NOTE_EXCERPT_CHARACTERS - 1] + "…"
        summary = f"{summary} {excerpt}"
    return summary


def _impression(outcome: Outcome, ids: dict[str, str]) -> ClinicalImpression:
    impression = ClinicalImpression()
    impression.id = ids["impression_id"]
    impression.identifier = [Identifier(_case_identifier(outcome))]
    impression.status = "completed"
    impression.code = _concept(SNOMED, *TELEPHONE_TRIAGE)
    impression.subject = _patient(outcome)
    impression.encounter = Reference({"reference": ids["encounter"]})
    impression.effectivePeriod = Period({"start": _when(outcome.started_at), "end": _when(outcome.ended_at)})
    impression.date = FHIRDateTime(_when(outcome.ended_at))
    impression.assessor = Reference(_nurse_reference(outcome))
    impression.summary = assessment_summary(outcome)
    impression.protocol = [f"urn:careline:protocol:{outcome.protocol_code or 'none'}|{outcome.protocol_version or '0'}"]
    return impression


def _disposition(outcome: Outcome, ids: dict[str, str]) -> Observation:
    observation = Observation()
    observation.identifier = [Identifier(_case_identifier(outcome))]
    observation.status = "final"
    observation.category = [_concept(OBSERVATION_CATEGORY, "survey", "Survey")]
    observation.code = _concept(OBSERVATION_CODE_SYSTEM, "triage-disposition", "Nurse triage disposition")
    observation.subject = _patient(outcome)
    observation.encounter = Reference({"reference": ids["encounter"]})
    observation.effectiveDateTime = FHIRDateTime(_when(outcome.ended_at))
    observation.issued = FHIRInstant(_when(outcome.ended_at))
    observation.performer = [Reference(_nurse_reference(outcome))]
    observation.valueCodeableConcept = _concept(
        DISPOSITION_SYSTEM, outcome.disposition_code, outcome.disposition_display
    )
    observation.component = [
        ObservationComponent(
            {
                "code": _concept(OBSERVATION_CODE_SYSTEM, "triage-acuity", "Triage acuity (CTAS 1-5)").as_json(),
                "valueInteger": outcome.acuity,
            }
        )
    ]
    return observation


def _communication(outcome: Outcome, ids: dict[str, str], index: int, message: SentMessage) -> Communication:
    communication = Communication()
    communication.identifier = [
        Identifier({"system": SMS_IDENTIFIER_SYSTEM, "value": _message_key(outcome, index, message)})
    ]
    communication.status = "completed"
    communication.medium = [_concept(PARTICIPATION_MODE, "SMSWRIT", "SMS message")]
    communication.subject = _patient(outcome)
    communication.recipient = [_patient(outcome)]
    communication.sender = Reference({"display": outcome.clinic_name or "CareLine"})
    communication.encounter = Reference({"reference": ids["encounter"]})
    communication.sent = FHIRDateTime(_when(message.sent_at))
    communication.payload = [CommunicationPayload({"contentString": message.body})]
    return communication


def follow_up_due(outcome: Outcome) -> datetime | None:
    """When the clinic should have called the patient back (`FOLLOW_UP_HOURS` after the call), or None."""
    hours = FOLLOW_UP_HOURS.get(outcome.disposition_code)
    return None if hours is None else outcome.ended_at + timedelta(hours=hours)


def _task(outcome: Outcome, ids: dict[str, str], due: datetime) -> Task:
    task = Task()
    task.identifier = [Identifier(_case_identifier(outcome))]
    task.status = "requested"
    task.intent = "order"
    task.priority = "routine"
    task.code = _concept(TASK_CODE_SYSTEM, "follow-up-callback", "Follow-up callback")
    task.description = f"Call the patient back: {outcome.disposition_display}."
    task.focus = Reference({"reference": ids["encounter"]})
    task.for_fhir = _patient(outcome)
    task.encounter = Reference({"reference": ids["encounter"]})
    task.authoredOn = FHIRDateTime(_when(outcome.ended_at))
    task.requester = Reference(_nurse_reference(outcome))
    task.reasonCode = _concept(DISPOSITION_SYSTEM, outcome.disposition_code, outcome.disposition_display)
    task.restriction = TaskRestriction({"period": {"end": _when(due)}})
    return task


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
        {
            "fullUrl": ids["impression"],
            "resource": _impression(outcome, ids).as_json(),
            "request": {"method": "PUT", "url": f"ClinicalImpression/{ids['impression_id']}"},
        },
        {
            "fullUrl": ids["disposition"],
            "resource": _disposition(outcome, ids).as_json(),
            "request": {"method": "POST", "url": "Observation", "ifNoneExist": condition},
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
    for index, message in enumerate(outcome.messages_sent):
        key = _message_key(outcome, index, message)
        entries.append(
            {
                "fullUrl": _message_full_url(outcome, index, message),
                "resource": _communication(outcome, ids, index, message).as_json(),
                "request": {
                    "method": "POST",
                    "url": "Communication",
                    "ifNoneExist": f"identifier={SMS_IDENTIFIER_SYSTEM}|{key}",
                },
            }
        )
    due = follow_up_due(outcome)
    if due is not None:
        entries.append(
            {
                "fullUrl": ids["task"],
                "resource": _task(outcome, ids, due).as_json(),
                "request": {"method": "POST", "url": "Task", "ifNoneExist": condition},
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


def _conflicting_kind(bundle: dict[str, Any], reply: Any) -> str:
    """The resource type a 412 is about, from the OperationOutcome's "Entry <n>" diagnostics, else "".

    sekmet says `Transaction rolled back: Entry 0 conditional create: criteria matched 2 resources`; other
    servers word it differently, and then the message names no type.
    """
    try:
        issues = reply.json().get("issue") or []
    except ValueError:
        return ""
    for issue in issues:
        found = re.search(r"\bEntry (\d+)\b", str(issue.get("diagnostics", "")))
        if found and int(found.group(1)) < len(bundle["entry"]):
            return str(bundle["entry"][int(found.group(1))]["resource"]["resourceType"])
    return ""


def send_bundle(bundle: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """POST `bundle` to the FHIR base; returns `{"entries": [{"resourceType", "status", "location"}]}`.

    Raises EhrUnavailable (transport, timeout, 5xx, circuit open) or EhrRejected (412 "several matches"
    with `MULTIPLE_MATCHES`, another 4xx, a non-2xx entry status, or a reply that is not a
    transaction-response Bundle).
    """
    server = server_for(timeout)
    try:
        response = call(lambda: server.post_json("", bundle))
    except EhrRejected as exc:
        reply = getattr(exc.__cause__, "response", None)
        if getattr(reply, "status_code", None) == 412:
            raise EhrRejected(MULTIPLE_MATCHES.format(kind=_conflicting_kind(bundle, reply))) from exc
        raise
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
