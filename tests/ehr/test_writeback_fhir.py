"""FHIR write-back through the outbox against the real FHIR server (sekmet-fhir): create once, resend
without duplicates, retry with backoff while the EHR is down, skip an unidentified caller."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.utils import timezone

from ehr.fhir.writeback import CASE_IDENTIFIER_SYSTEM, resource_ids
from ehr.models import WriteBack
from ehr.selectors import writebacks_for_case
from ehr.services import NOT_IDENTIFIED, writeback_enqueue, writeback_send, writeback_sweep
from tests.ehr.conftest import NOTE

pytestmark = pytest.mark.django_db


def _by_case(fhir, resource_type: str, case_uuid: str) -> list[dict]:
    bundle = fhir.search(f"{resource_type}?identifier={CASE_IDENTIFIER_SYSTEM}|{case_uuid}")
    return [e["resource"] for e in bundle.get("entry", [])]


def _enqueue(personas, outcome, capture):
    with capture(execute=True):
        rows = writeback_enqueue(clinic=personas.north, outcome=outcome)
    return [WriteBack.objects.get(pk=row.pk) for row in rows]


def test_writeback_creates_each_resource_once_and_a_resend_duplicates_nothing(
    fhir, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    patient_id = fhir.patient("oconner-betty")["server_id"]
    outcome = make_outcome(patient_id)

    [row] = _enqueue(personas, outcome, django_capture_on_commit_callbacks)

    assert row.target == "fhir" and row.state == "sent" and row.attempts == 1 and row.sent_at
    assert row.idempotency_key == f"{outcome.case_uuid}:fhir"
    [encounter] = _by_case(fhir, "Encounter", outcome.case_uuid)
    assert encounter["status"] == "finished"
    assert encounter["class"]["code"] == "VR"
    assert encounter["type"][0]["coding"][0] == {
        "system": "http://snomed.info/sct",
        "code": "401267002",
        "display": "Telephone triage encounter",
    }
    assert encounter["subject"]["reference"] == f"Patient/{patient_id}"
    [note] = _by_case(fhir, "DocumentReference", outcome.case_uuid)
    assert note["type"]["coding"][0]["code"] == "34748-4"
    assert base64.b64decode(note["content"][0]["attachment"]["data"]).decode() == NOTE
    assert note["context"]["encounter"][0]["reference"] == f"Encounter/{encounter['id']}"
    ids = resource_ids(outcome)
    answers = fhir.search(f"QuestionnaireResponse/{ids['answers_id']}")
    assert answers["questionnaire"] == "urn:careline:protocol:fever-adult|2"
    assert [(i["linkId"], i["answer"][0]) for i in answers["item"]] == [
        ("breathing", {"valueBoolean": False}),
        ("fever3d", {"valueBoolean": True}),
        ("acuity", {"valueInteger": 3}),
        (
            "disposition",
            {
                "valueCoding": {
                    "system": "urn:careline:disposition",
                    "code": "see_pcp_24h",
                    "display": "See your doctor within 24 hours",
                }
            },
        ),
    ]
    provenance = fhir.search(f"Provenance?target=Encounter/{encounter['id']}")
    assert provenance["total"] == 1
    [disposition] = _by_case(fhir, "Observation", outcome.case_uuid)
    assert {t["reference"] for t in provenance["entry"][0]["resource"]["target"]} == {
        f"Encounter/{encounter['id']}",
        f"QuestionnaireResponse/{ids['answers_id']}",
        f"ClinicalImpression/{ids['impression_id']}",
        f"Observation/{disposition['id']}",
        f"DocumentReference/{note['id']}",
    }
    assert [e["status"][:3] for e in row.response["entries"]] == ["201"] * 6

    # Resend, as a redelivered task after a worker crash would: the EHR keeps one of each.
    WriteBack.objects.filter(pk=row.pk).update(state=WriteBack.State.PENDING)
    resent = writeback_send(writeback_id=row.pk)

    assert resent.state == "sent" and resent.attempts == 2
    assert [e["status"][:3] for e in resent.response["entries"]] == ["200"] * 6
    assert len(_by_case(fhir, "Encounter", outcome.case_uuid)) == 1
    assert len(_by_case(fhir, "DocumentReference", outcome.case_uuid)) == 1
    assert fhir.search(f"Provenance?target=Encounter/{encounter['id']}")["total"] == 1


def test_enqueue_twice_keeps_one_row(fhir, personas, make_outcome, django_capture_on_commit_callbacks) -> None:
    outcome = make_outcome(fhir.patient("oconner-betty")["server_id"])
    first = _enqueue(personas, outcome, django_capture_on_commit_callbacks)
    again = _enqueue(personas, outcome, django_capture_on_commit_callbacks)
    assert [r.pk for r in again] == [r.pk for r in first]
    assert (
        WriteBack.objects.filter(source_id=outcome.case_id, idempotency_key__startswith=outcome.case_uuid).count() == 1
    )


def test_ehr_down_retries_with_backoff_then_the_sweep_delivers_once(
    fhir, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    outcome = make_outcome(fhir.patient("oconner-betty")["server_id"])
    fhir.stop()
    before = timezone.now()

    [row] = _enqueue(personas, outcome, django_capture_on_commit_callbacks)

    assert row.state == "retrying" and row.attempts == 1
    assert row.last_error == "ConnectionError"
    assert row.next_attempt_at is not None and row.next_attempt_at > before
    assert row.lease_until is None
    assert writeback_sweep(now=before) == 0  # not due yet

    fhir.start()
    assert writeback_sweep(now=timezone.now() + timedelta(days=1)) >= 1

    row.refresh_from_db()
    assert row.state == "sent" and row.attempts == 2
    assert len(_by_case(fhir, "Encounter", outcome.case_uuid)) == 1
    assert len(_by_case(fhir, "DocumentReference", outcome.case_uuid)) == 1


def test_a_leased_row_is_not_sent_twice(fhir, personas, make_outcome) -> None:
    outcome = make_outcome(fhir.patient("oconner-betty")["server_id"])
    [row] = writeback_enqueue(clinic=personas.north, outcome=outcome)  # on-commit dispatch never runs here
    WriteBack.objects.filter(pk=row.pk).update(lease_until=timezone.now() + timedelta(minutes=1))

    untouched = writeback_send(writeback_id=row.pk)

    assert untouched.state == "pending" and untouched.attempts == 0
    assert _by_case(fhir, "Encounter", outcome.case_uuid) == []


def test_unidentified_caller_skips_the_fhir_row(personas, make_outcome, django_capture_on_commit_callbacks) -> None:
    outcome = make_outcome("")

    [row] = _enqueue(personas, outcome, django_capture_on_commit_callbacks)

    assert row.state == "skipped" and row.last_error == NOT_IDENTIFIED and row.attempts == 0


def test_writebacks_for_case_is_scoped_to_the_clinic(personas, make_outcome) -> None:
    outcome = make_outcome("")
    writeback_enqueue(clinic=personas.north, outcome=outcome)

    assert [r.target for r in writebacks_for_case(clinic=personas.north, case_id=outcome.case_id)] == ["fhir"]
    assert writebacks_for_case(clinic=personas.south, case_id=outcome.case_id) == []


def test_state_changes_reach_the_clinic_consoles(personas, make_outcome, django_capture_on_commit_callbacks) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from clinics.events import group_name

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name(personas.north.pk), channel)
    outcome = make_outcome("")

    _enqueue(personas, outcome, django_capture_on_commit_callbacks)

    message = async_to_sync(layer.receive)(channel)
    assert message["event"] == "writeback.changed"
    assert message["payload"] == {"case_id": outcome.case_id, "target": "fhir", "state": "skipped"}
