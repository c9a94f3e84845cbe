"""`contactcenter.services`: claims through the user's clinic, and the disposition transaction (DESIGN §6.3)."""

from __future__ import annotations

import pytest

from clinics.models import AuditEvent
from clinics.selectors import NotStaff
from contactcenter import services
from ehr import services as ehr_services
from ehr.models import WriteBack
from triage.exceptions import NotYourCase, UnknownDisposition
from triage.models import Case, CaseState

pytestmark = pytest.mark.django_db


def test_claim_next_uses_the_nurses_own_clinic(personas, make_case):
    south_case = make_case(personas.south)
    assert services.claim_next(user=personas.alice) is None
    claimed = services.claim_next(user=personas.carol)
    assert claimed.pk == south_case.pk
    assert claimed.state == CaseState.RESERVED


def test_claim_next_refuses_users_of_no_clinic(db, django_user_model):
    outsider = django_user_model.objects.create_user("mallory", password="x" * 12)
    with pytest.raises(NotStaff):
        services.claim_next(user=outsider)


def test_accept_and_release_are_scoped_to_the_clinic(personas, make_case):
    case = make_case(personas.north)
    services.claim_next(user=personas.alice)
    with pytest.raises(Case.DoesNotExist):
        services.accept(user=personas.carol, case_id=case.pk)
    with pytest.raises(NotYourCase):
        services.accept(user=personas.dave, case_id=case.pk)
    released = services.release(user=personas.alice, case_id=case.pk)
    assert released.state == CaseState.QUEUED


def test_disposition_closes_the_case_and_writes_the_outbox_in_one_transaction(personas, make_case):
    case = make_case(personas.north, patient_fhir_id="pat-123", patient_display="Elodia Skiles")
    services.claim_next(user=personas.alice)

    closed = services.disposition_record(
        user=personas.alice, case_id=case.pk, disposition_code="clinician-today", note="Advised fluids."
    )

    assert closed.state == CaseState.CLOSED
    assert closed.disposition == "clinician-today"
    assert closed.closed_at is not None
    rows = WriteBack.objects.filter(source_id=case.pk, clinic=personas.north)
    assert rows.exists(), "the write-back outbox row is written with the disposition"
    audit = AuditEvent.objects.filter(action="case.disposition", object_id=str(case.pk), actor=personas.alice)
    assert audit.count() == 1


def test_outbox_failure_rolls_back_the_disposition(personas, make_case, monkeypatch):
    """Same transaction: if the outbox row cannot be written, the case is not closed either."""
    case = make_case(personas.north)
    services.claim_next(user=personas.alice)

    def broken(**kwargs):
        raise RuntimeError("outbox table unavailable")

    monkeypatch.setattr(ehr_services, "writeback_enqueue", broken)
    with pytest.raises(RuntimeError):
        services.disposition_record(user=personas.alice, case_id=case.pk, disposition_code="home-care", note="")
    case.refresh_from_db()
    assert case.state == CaseState.RESERVED
    assert case.disposition == ""
    assert not AuditEvent.objects.filter(action="case.disposition", object_id=str(case.pk)).exists()


def test_outcome_carries_the_case_the_nurse_and_the_answers(personas, make_case, monkeypatch):
    case = make_case(personas.north, acuity=2, patient_fhir_id="pat-9", patient_display="Jo Doe")
    services.claim_next(user=personas.alice)
    captured = {}

    def capture(*, clinic, outcome):
        captured.update(clinic=clinic, outcome=outcome)
        return []

    monkeypatch.setattr(ehr_services, "writeback_enqueue", capture)
    services.disposition_record(user=personas.alice, case_id=case.pk, disposition_code="ed-now", note="Go now.")

    outcome = captured["outcome"]
    case.refresh_from_db()
    assert captured["clinic"] == personas.north
    assert outcome.case_uuid == str(case.uuid) and outcome.case_id == case.pk
    assert (outcome.clinic_slug, outcome.clinic_name) == ("north", "North Clinic")
    assert (outcome.patient_fhir_id, outcome.patient_display) == ("pat-9", "Jo Doe")
    assert outcome.started_at == case.arrived_at and outcome.ended_at == case.closed_at
    assert (outcome.acuity, outcome.disposition_code) == (2, "ed-now")
    assert outcome.disposition_display == "Go to the emergency department now"
    assert outcome.note == "Go now."
    assert (outcome.nurse_username, outcome.nurse_display) == ("alice", "Alice Nurse")
    assert (outcome.protocol_code, outcome.protocol_title, outcome.protocol_version) == (
        "chest-pain",
        "chest pain",
        "2026.11.0",
    )
    assert [a.question_id for a in outcome.answers] == ["cp-collapse", "cp-crushing", "cp-ongoing"]
    assert outcome.answers[2].answer is True


def test_unknown_disposition_changes_nothing(personas, make_case):
    case = make_case(personas.north)
    services.claim_next(user=personas.alice)
    with pytest.raises(UnknownDisposition):
        services.disposition_record(user=personas.alice, case_id=case.pk, disposition_code="go-home-maybe")
    case.refresh_from_db()
    assert case.state == CaseState.RESERVED
    assert not WriteBack.objects.filter(source_id=case.pk).exists()


def test_only_the_nurse_holding_the_case_records_its_disposition(personas, make_case):
    case = make_case(personas.north)
    services.claim_next(user=personas.alice)
    with pytest.raises(NotYourCase):
        services.disposition_record(user=personas.dave, case_id=case.pk, disposition_code="home-care")
    with pytest.raises(Case.DoesNotExist):
        services.disposition_record(user=personas.carol, case_id=case.pk, disposition_code="home-care")
    assert not WriteBack.objects.filter(source_id=case.pk).exists()
