"""The EHR goes down: nothing is lost (issue 2: "FHIR server stopped -> call still completes, case flagged,
write-back retried after restart").

Whole flows through the real edges: signed Twilio webhooks (`tests.ivr.phone.Phone`), the REST API as nurse
alice, the Celery tasks (eager in tests) and a real sekmet-fhir that the tests stop and start.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from ehr.models import WriteBack
from ehr.services import writeback_sweep
from ivr.tasks import resolve_pending_patients
from tests.ivr.phone import Phone
from triage.models import Case, CaseState

pytestmark = [pytest.mark.fhir, pytest.mark.django_db(transaction=True)]

JERRY_PHONE = "+15553031209"
ADULT, ABDOMINAL_PAIN, YES, NO, CALLBACK = "1", "4", "1", "2", "2"  # adult menu, page 1: 4 abdominal pain


def _call_jerry_with_abdominal_pain(client: Client) -> Case:
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    phone.press("1")  # English
    phone.press("02021995")
    phone.press(ADULT)
    phone.press(ABDOMINAL_PAIN)
    phone.press(NO)
    phone.press(NO)
    phone.press(YES)  # lower right side / fever -> ED or urgent care within hours (acuity 3)
    phone.press(CALLBACK)
    return Case.objects.get()


def _nurse_closes_next_case(alice, case: Case) -> None:
    api = APIClient()
    api.force_authenticate(alice)
    claimed = api.post("/api/v1/cases/next/")
    assert claimed.status_code == 200 and claimed.json()["id"] == case.pk
    done = api.post(
        f"/api/v1/cases/{case.pk}/disposition/", {"disposition": "ed-ucc-hours", "note": "RLQ pain"}, format="json"
    )
    assert done.status_code == 200, done.content


def _encounters_for(fhir, case: Case) -> list[dict]:
    bundle = fhir.search(f"Encounter?identifier=urn:careline:triage-case|{case.uuid}")
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_ehr_down_for_the_call_and_the_disposition_the_outcome_still_reaches_the_chart(personas, fhir, client):
    fhir.stop()
    case = _call_jerry_with_abdominal_pain(client)
    assert case.state == CaseState.QUEUED and case.acuity == 3
    assert case.ehr_context_pending is True and case.patient_fhir_id == ""

    # The nurse works the case while the EHR is still down: the FHIR write-back waits for the patient.
    _nurse_closes_next_case(personas.alice, case)
    row = WriteBack.objects.get(source_id=case.pk, target=WriteBack.Target.FHIR)
    assert row.state == WriteBack.State.HELD
    assert resolve_pending_patients.delay().get()["deferred"] == 1
    row.refresh_from_db()
    assert row.state == WriteBack.State.HELD

    # The EHR is back: the beat resolves the caller and releases the write-back, which is sent.
    fhir.start()
    assert resolve_pending_patients.delay().get()["attached"] == 1
    case.refresh_from_db()
    jerry = fhir.patient("wiegand-jerry")["server_id"]
    assert case.patient_fhir_id == jerry and case.ehr_context_pending is False
    row.refresh_from_db()
    assert row.state == WriteBack.State.SENT, row.last_error
    encounters = _encounters_for(fhir, case)
    assert len(encounters) == 1
    assert encounters[0]["subject"]["reference"] == f"Patient/{jerry}"
    assert encounters[0]["class"]["code"] == "VR"


def test_ehr_down_only_at_disposition_write_back_retries_after_restart_without_duplicates(personas, fhir, client):
    case = _call_jerry_with_abdominal_pain(client)
    assert case.ehr_context_pending is False and case.patient_fhir_id

    fhir.stop()
    _nurse_closes_next_case(personas.alice, case)
    row = WriteBack.objects.get(source_id=case.pk, target=WriteBack.Target.FHIR)
    assert row.state == WriteBack.State.RETRYING and row.attempts == 1 and row.next_attempt_at is not None
    assert Case.objects.get(pk=case.pk).state == CaseState.CLOSED  # the nurse is never blocked by the EHR

    fhir.start()
    later = timezone.now() + timedelta(hours=1)
    assert writeback_sweep(now=later) == 1
    assert writeback_sweep(now=later) == 0  # sent rows are not sent again
    row.refresh_from_db()
    assert row.state == WriteBack.State.SENT
    assert len(_encounters_for(fhir, case)) == 1


def test_no_patient_matches_after_the_outage_the_held_write_back_is_skipped_not_lost_silently(personas, fhir, client):
    fhir.stop()
    phone = Phone(client, from_number=JERRY_PHONE)
    phone.dial()
    phone.press("1")
    phone.press("07041976")  # no one on this number was born then
    phone.press("0")  # straight to a nurse
    case = Case.objects.get()
    _nurse_closes_next_case(personas.alice, case)
    fhir.start()
    assert resolve_pending_patients.delay().get()["cleared"] == 1
    row = WriteBack.objects.get(source_id=case.pk, target=WriteBack.Target.FHIR)
    assert row.state == WriteBack.State.SKIPPED
    assert "not identified" in row.last_error
