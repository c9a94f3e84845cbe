"""Every PHI read and write through the console and the API leaves an audit row (who, role, clinic, patient,
case, request id, source address), another clinic's attempt leaves none, and clinic admins can search and
export their clinic's log (and only theirs); the export is audited too. HIPAA 45 CFR 164.312(b)."""

from __future__ import annotations

import csv
import io
import logging

import pytest
from django.test import Client

from careline.middleware import RequestIdLogFilter
from clinics import request_id
from clinics.models import AuditEvent
from clinics.services import audit_record, staff_create
from tests.conftest import PASSWORD
from tests.contactcenter.conftest import CHEST_PAIN_ANSWERS

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def make_case():
    """`make_case(clinic, **fields)` -> a queued acuity-2 chest-pain Case."""
    from triage.services import case_enqueue

    def make(clinic, **fields):
        values = {
            "callback_number": "+15555550100",
            "protocol_code": "chest-pain",
            "protocol_version": "2026.11.0",
            "answers": CHEST_PAIN_ANSWERS,
            "suggested_disposition": "ed-now",
            **fields,
        }
        return case_enqueue(clinic=clinic, acuity=2, **values)

    return make


@pytest.fixture
def erin(personas):
    """A clinic admin of North."""
    return staff_create(clinic=personas.north, role="admin", username="erin", password=PASSWORD).user


def test_case_page_read_is_audited_with_role_request_id_and_address(personas, make_case):
    case = make_case(personas.north, patient_fhir_id="pat-canary-1")

    response = client_for(personas.alice).get(f"/console/cases/{case.pk}/", HTTP_X_REQUEST_ID="lb-req-0001abcd")

    assert response.status_code == 200
    assert response["X-Request-ID"] == "lb-req-0001abcd"
    row = AuditEvent.objects.get(action="case.read")
    assert (row.clinic, row.actor, row.role) == (personas.north, personas.alice, "nurse")
    assert (row.object_type, row.object_id, row.patient_ref) == ("case", str(case.pk), "pat-canary-1")
    assert (row.request_id, row.source_ip) == ("lb-req-0001abcd", "127.0.0.1")


def test_a_request_without_a_usable_id_gets_a_fresh_one(personas, make_case):
    case = make_case(personas.north)
    response = client_for(personas.alice).get(f"/console/cases/{case.pk}/", HTTP_X_REQUEST_ID="bad id; <x>")
    generated = response["X-Request-ID"]
    assert len(generated) == 32 and generated != "bad id; <x>"
    assert AuditEvent.objects.get(action="case.read").request_id == generated


def test_api_case_detail_is_audited_and_another_clinic_leaves_no_row(personas, make_case):
    case = make_case(personas.north, patient_fhir_id="pat-canary-2")

    assert client_for(personas.alice).get(f"/api/v1/cases/{case.pk}/").status_code == 200
    assert client_for(personas.carol).get(f"/api/v1/cases/{case.pk}/").status_code == 404
    assert client_for(personas.carol).get(f"/console/cases/{case.pk}/").status_code == 404

    rows = AuditEvent.objects.filter(action="case.read")
    assert [(r.actor, r.patient_ref, r.clinic) for r in rows] == [(personas.alice, "pat-canary-2", personas.north)]


def test_api_disposition_is_audited_in_its_transaction(personas, make_case):
    case = make_case(personas.north, patient_fhir_id="pat-canary-3")
    api = client_for(personas.alice)
    assert api.post("/api/v1/cases/next/").status_code == 200
    assert api.post(f"/api/v1/cases/{case.pk}/accept/").status_code == 200

    done = api.post(
        f"/api/v1/cases/{case.pk}/disposition/", {"disposition": "ed-now", "note": "ok"}, "application/json"
    )

    assert done.status_code == 200, done.content
    row = AuditEvent.objects.get(action="case.disposition")
    assert (row.actor, row.role, row.patient_ref, row.object_id) == (
        personas.alice,
        "nurse",
        "pat-canary-3",
        str(case.pk),
    )
    assert row.request_id == done["X-Request-ID"]


def test_log_records_carry_the_request_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    token = request_id.bind(request_id="abc123def456", source_ip="10.0.0.1")
    try:
        RequestIdLogFilter().filter(record)
    finally:
        request_id.unbind(token)
    assert record.request_id == "abc123def456"
    RequestIdLogFilter().filter(record)
    assert record.request_id == "-"


def seed(personas):
    audit_record(clinic=personas.north, actor=personas.alice, action="chart.read", patient_ref="pat-north-a")
    audit_record(clinic=personas.north, actor=personas.dave, action="chart.read", patient_ref="pat-north-b")
    audit_record(clinic=personas.north, actor=personas.alice, action="case.disposition", patient_ref="pat-north-b")
    audit_record(clinic=personas.south, actor=personas.carol, action="chart.read", patient_ref="pat-south-z")


def test_audit_page_is_for_clinic_admins_only(personas, erin):
    seed(personas)
    assert client_for(personas.alice).get("/console/admin/audit/").status_code == 403
    assert client_for(personas.bob).get("/console/admin/audit/").status_code == 403
    page = client_for(erin).get("/console/admin/audit/").content.decode()
    assert page.count("data-audit-seq=") == 3
    assert "pat-north-a" in page and "pat-north-b" in page
    assert "pat-south-z" not in page and "carol" not in page


def test_audit_page_filters_by_patient_and_user(personas, erin):
    seed(personas)
    admin = client_for(erin)
    by_patient = admin.get("/console/admin/audit/", {"patient": "pat-north-b"}).content.decode()
    assert by_patient.count("data-audit-seq=") == 2
    by_user = admin.get("/console/admin/audit/", {"user": "alice"}).content.decode()
    assert by_user.count("data-audit-seq=") == 2 and "pat-north-a" in by_user
    other_clinic = admin.get("/console/admin/audit/", {"patient": "pat-south-z"}).content.decode()
    assert other_clinic.count("data-audit-seq=") == 0


def test_csv_export_is_clinic_scoped_and_itself_audited(personas, erin):
    seed(personas)
    response = client_for(erin).get("/console/admin/audit/", {"patient": "pat-north-b", "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["user"], r["action"], r["patient_ref"]) for r in rows] == [
        ("dave", "chart.read", "pat-north-b"),
        ("alice", "case.disposition", "pat-north-b"),
        ("erin", "audit.export", "pat-north-b"),  # the export is recorded before it is read out
    ]
    assert all(r["clinic"] == "north" and len(r["hash"]) == 64 for r in rows)
    export = AuditEvent.objects.get(action="audit.export")
    assert (export.clinic, export.actor, export.role, export.patient_ref) == (
        personas.north,
        erin,
        "admin",
        "pat-north-b",
    )
    assert export.reason == "filters: patient=pat-north-b"
    assert "pat-south-z" not in client_for(erin).get("/console/admin/audit/", {"format": "csv"}).getvalue().decode()


def test_csv_cells_cannot_become_spreadsheet_formulas(personas, erin):
    audit_record(clinic=personas.north, actor=personas.alice, action="writeback.skip", reason='=HYPERLINK("x")')
    body = client_for(erin).get("/console/admin/audit/", {"format": "csv"}).getvalue().decode()
    assert "'=HYPERLINK" in body
