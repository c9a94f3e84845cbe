"""The full write-back transaction Bundle against the real FHIR server (sekmet-fhir): every resource type
once, references that resolve to the created Encounter and the Patient, a resend that creates nothing new,
a follow-up Task only when the disposition needs one, and a 412 (duplicates in the EHR) as a clear error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from ehr.fhir.writeback import (
    CASE_IDENTIFIER_SYSTEM,
    MULTIPLE_MATCHES,
    SMS_IDENTIFIER_SYSTEM,
    build_bundle,
    resource_ids,
)
from ehr.models import WriteBack
from ehr.services import writeback_enqueue, writeback_send
from ehr.types import SentMessage

pytestmark = pytest.mark.django_db

SMS = (
    SentMessage(datetime(2026, 11, 21, 3, 16, tzinfo=UTC), "North Clinic: see a clinician within 24 hours.", "11"),
    SentMessage(datetime(2026, 11, 21, 3, 17, tzinfo=UTC), "North Clinic: call back if worse.", "12"),
)


def _by_identifier(fhir, resource_type: str, system: str, value: str) -> list[dict]:
    return [e["resource"] for e in fhir.search(f"{resource_type}?identifier={system}|{value}").get("entry", [])]


def _send(personas, outcome) -> WriteBack:
    [row] = writeback_enqueue(clinic=personas.north, outcome=outcome)  # on-commit dispatch does not run here
    return writeback_send(writeback_id=row.pk)


def _stored(fhir, outcome) -> dict[str, list[dict]]:
    """Everything the EHR holds for the case, by resource type."""
    ids = resource_ids(outcome)
    found = {
        kind: _by_identifier(fhir, kind, CASE_IDENTIFIER_SYSTEM, outcome.case_uuid)
        for kind in ("Encounter", "Observation", "DocumentReference", "Task")
    }
    found["Communication"] = [
        r
        for message in outcome.messages_sent
        for r in _by_identifier(
            fhir, "Communication", SMS_IDENTIFIER_SYSTEM, f"{outcome.case_uuid}:{message.message_id}"
        )
    ]
    found["QuestionnaireResponse"] = [fhir.search(f"QuestionnaireResponse/{ids['answers_id']}")]
    found["ClinicalImpression"] = [fhir.search(f"ClinicalImpression/{ids['impression_id']}")]
    found["Provenance"] = [fhir.search(f"Provenance/{ids['provenance_id']}")]
    return found


def test_the_full_bundle_files_every_resource_once_with_resolving_references(fhir, personas, make_outcome) -> None:
    patient_id = fhir.patient("oconner-betty")["server_id"]
    outcome = make_outcome(patient_id, disposition_code="clinician-24h", messages_sent=SMS)

    row = _send(personas, outcome)

    assert row.state == WriteBack.State.SENT, row.last_error
    stored = _stored(fhir, outcome)
    counts = {kind: len(resources) for kind, resources in stored.items()}
    assert counts == {
        "Encounter": 1,
        "Observation": 1,
        "DocumentReference": 1,
        "Task": 1,
        "Communication": 2,
        "QuestionnaireResponse": 1,
        "ClinicalImpression": 1,
        "Provenance": 1,
    }
    encounter = stored["Encounter"][0]
    assert encounter["class"]["code"] == "VR"
    at_encounter = f"Encounter/{encounter['id']}"
    at_patient = f"Patient/{patient_id}"
    requests.get(f"{fhir.base_url}/{at_patient}", timeout=5).raise_for_status()  # the subject exists

    impression = stored["ClinicalImpression"][0]
    assert impression["status"] == "completed"
    assert impression["encounter"]["reference"] == at_encounter
    assert impression["subject"]["reference"] == at_patient
    assert impression["assessor"]["identifier"]["value"] == "alice"
    assert impression["summary"].startswith("See your doctor within 24 hours (clinician-24h); CTAS 3. Fever 38.9 C")

    disposition = stored["Observation"][0]
    assert disposition["code"]["coding"][0]["code"] == "triage-disposition"
    assert disposition["valueCodeableConcept"]["coding"][0] == {
        "system": "urn:careline:disposition",
        "code": "clinician-24h",
        "display": "See your doctor within 24 hours",
    }
    assert disposition["component"][0]["code"]["coding"][0]["code"] == "triage-acuity"
    assert disposition["component"][0]["valueInteger"] == 3
    assert disposition["encounter"]["reference"] == at_encounter

    assert stored["QuestionnaireResponse"][0]["questionnaire"] == "urn:careline:protocol:fever-adult|2"
    assert stored["QuestionnaireResponse"][0]["encounter"]["reference"] == at_encounter
    assert stored["DocumentReference"][0]["type"]["coding"][0]["code"] == "34748-4"
    assert stored["DocumentReference"][0]["context"]["encounter"][0]["reference"] == at_encounter

    bodies = sorted(c["payload"][0]["contentString"] for c in stored["Communication"])
    assert bodies == sorted(m.body for m in SMS)
    for communication in stored["Communication"]:
        assert communication["encounter"]["reference"] == at_encounter
        assert communication["recipient"][0]["reference"] == at_patient
        assert communication["medium"][0]["coding"][0]["code"] == "SMSWRIT"

    task = stored["Task"][0]
    assert (task["status"], task["intent"]) == ("requested", "order")
    assert task["for"]["reference"] == at_patient
    assert task["focus"]["reference"] == at_encounter
    due = datetime.fromisoformat(task["restriction"]["period"]["end"])
    assert due == outcome.ended_at + timedelta(hours=24)

    provenance = stored["Provenance"][0]
    created = {
        f"{kind}/{resource['id']}"
        for kind, resources in stored.items()
        if kind != "Provenance"
        for resource in resources
    }
    assert {t["reference"] for t in provenance["target"]} == created
    assert [a["type"]["coding"][0]["code"] for a in provenance["agent"]] == ["author", "assembler"]
    assert provenance["agent"][1]["who"]["type"] == "Device"

    # Resend (a redelivered task after a worker crash): every entry answers 200 and nothing new is stored.
    WriteBack.objects.filter(pk=row.pk).update(state=WriteBack.State.PENDING)
    resent = writeback_send(writeback_id=row.pk)

    assert resent.state == WriteBack.State.SENT
    assert {e["status"][:3] for e in resent.response["entries"]} == {"200"}
    again = _stored(fhir, outcome)
    assert {kind: len(resources) for kind, resources in again.items()} == counts
    assert {f"{k}/{r['id']}" for k, rs in again.items() if k != "Provenance" for r in rs} == created


@pytest.mark.parametrize(
    ("disposition", "task_expected"),
    [("ed-now", False), ("call-911", False), ("home-care", True), ("clinician-2w", True)],
)
def test_a_follow_up_task_only_when_the_disposition_needs_one(make_outcome, disposition, task_expected) -> None:
    bundle = build_bundle(make_outcome("p1", disposition_code=disposition))

    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]

    assert ("Task" in kinds) is task_expected
    assert "Communication" not in kinds  # no SMS was sent
    assert kinds[-1] == "Provenance"


def test_duplicates_in_the_ehr_fail_the_writeback_with_a_clear_message(fhir, personas, make_outcome) -> None:
    outcome = make_outcome(fhir.patient("oconner-betty")["server_id"])
    duplicate = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
        "identifier": [{"system": CASE_IDENTIFIER_SYSTEM, "value": outcome.case_uuid}],
    }
    for _ in range(2):  # e.g. an interface that filed the case twice without a condition
        requests.post(f"{fhir.base_url}/Encounter", json=duplicate, timeout=5).raise_for_status()

    row = _send(personas, outcome)

    assert row.state == WriteBack.State.FAILED
    assert row.last_error == MULTIPLE_MATCHES.format(kind="Encounter")
    assert len(row.last_error) <= 120  # the console shows the first 120 characters of the error
    assert _by_identifier(fhir, "Observation", CASE_IDENTIFIER_SYSTEM, outcome.case_uuid) == []  # rolled back


def test_outcome_for_case_lists_the_sms_the_caller_received(personas) -> None:
    from django.utils import timezone

    from contactcenter.services import outcome_for_case
    from ivr.models import OutboundMessage
    from triage.services import case_enqueue

    case = case_enqueue(
        clinic=personas.north,
        acuity=4,
        callback_number="+15555550100",
        protocol_code="chest-pain",
        protocol_version="2026.11.0",
        answers=[],
        suggested_disposition="clinician-24h",
    )
    case.closed_at, case.disposition = timezone.now(), "clinician-24h"
    case.save(update_fields=["closed_at", "disposition"])
    common = {"clinic": personas.north, "to": "+15555550100", "from_number": "+15555550000"}
    sent = OutboundMessage.objects.create(
        case=case, body="sent one", state=OutboundMessage.State.SENT, sent_at=timezone.now(), **common
    )
    recorded = OutboundMessage.objects.create(case=case, body="recorded one", **common)
    OutboundMessage.objects.create(case=case, body="still queued", state=OutboundMessage.State.QUEUED, **common)
    OutboundMessage.objects.create(case=case, body="failed", state=OutboundMessage.State.FAILED, **common)
    OutboundMessage.objects.create(case=None, body="another case", state=OutboundMessage.State.SENT, **common)

    outcome = outcome_for_case(case=case, nurse=personas.alice)

    assert [(m.body, m.message_id) for m in outcome.messages_sent] == [
        ("sent one", str(sent.pk)),
        ("recorded one", str(recorded.pk)),
    ]
    assert outcome.messages_sent[0].sent_at == sent.sent_at
    assert outcome.messages_sent[1].sent_at == recorded.created_at
