"""Console pages (/console/): login, the queue board, next case, the case page, accept, disposition."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from clinics.models import AuditEvent
from ehr.models import WriteBack
from tests.conftest import PASSWORD
from triage.models import CaseState

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_console_needs_a_login_and_the_login_page_works(personas):
    response = Client().get("/console/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    page = Client().get("/accounts/login/")
    assert page.status_code == 200
    assert b'<label for="id_username">' in page.content
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/console/"


def test_users_of_no_clinic_get_403(db, django_user_model):
    outsider = django_user_model.objects.create_user("mallory", password="x" * 12)
    assert logged_in(outsider).get("/console/").status_code == 403


def test_empty_queue_shows_the_empty_state(personas):
    page = logged_in(personas.alice).get("/console/").content.decode()
    assert 'id="queue-empty"' in page
    assert 'id="next-case"' in page
    assert 'id="ws-status"' in page
    assert "No open cases" in page


def test_queue_lists_open_cases_of_my_clinic_with_acuity_as_colour_and_text(personas, make_case):
    urgent = make_case(personas.north, acuity=2)
    minor = make_case(personas.north, acuity=5, patient_fhir_id="p-1", patient_display="Jo Doe")
    south = make_case(personas.south, acuity=1)
    page = logged_in(personas.alice).get("/console/").content.decode()
    ids = [int(i) for i in re.findall(r'data-case-id="(\d+)"', page)]
    assert ids == [urgent.pk, minor.pk]
    assert south.pk not in ids
    assert '<span class="acuity acuity-2">2 · Emergent</span>' in page
    assert '<span class="acuity acuity-5">5 · Non-urgent</span>' in page
    assert "Unidentified" in page and "Identified" in page
    assert "chest pain" in page
    assert "Jo Doe" not in page, "the board shows identified/unidentified, not names"


def test_queue_partial_carries_the_summary_out_of_band(personas, make_case):
    make_case(personas.north)
    partial = logged_in(personas.alice).get("/console/queue/").content.decode()
    assert 'id="queue-table"' in partial
    assert 'hx-swap-oob="innerHTML"' in partial and "1 open case" in partial
    assert "<html" not in partial


def test_next_case_claims_the_head_and_opens_it(personas, make_case):
    case = make_case(personas.north)
    alice = logged_in(personas.alice)
    response = alice.post("/console/next/")
    assert response.status_code == 302 and response["Location"] == f"/console/cases/{case.pk}/"
    case.refresh_from_db()
    assert case.state == CaseState.RESERVED and case.reserved_by == personas.alice

    empty = logged_in(personas.dave).post("/console/next/", follow=True)
    assert b"The queue is empty." in empty.content


def test_case_page_of_an_unidentified_caller(personas, make_case):
    case = make_case(personas.north)
    alice = logged_in(personas.alice)
    alice.post("/console/next/")
    page = alice.get(f"/console/cases/{case.pk}/").content.decode()
    assert 'id="accept-case"' in page
    assert 'id="chart-unidentified"' in page
    assert 'id="case-state" data-state="reserved"' in page
    assert 'id="writeback-state"' in page
    assert "Has the pain lasted more than five minutes?" in page
    # The suggested disposition is the default choice.
    assert '<option value="ed-now" selected>' in page
    assert 'id="disposition-note"' in page and 'id="complete-case"' in page
    assert not AuditEvent.objects.filter(action="chart.read").exists(), "no chart, nothing to audit"


def test_case_page_with_ehr_context_pending(personas, make_case):
    case = make_case(personas.north, ehr_context_pending=True)
    page = logged_in(personas.alice).get(f"/console/cases/{case.pk}/").content.decode()
    assert 'id="chart-pending"' in page
    assert 'id="disposition-select"' not in page, "only the nurse holding the case documents it"


def test_another_clinics_case_page_is_404(personas, make_case):
    case = make_case(personas.north)
    carol = logged_in(personas.carol)
    assert carol.get(f"/console/cases/{case.pk}/").status_code == 404
    assert carol.get(f"/console/cases/{case.pk}/status/").status_code == 404
    assert carol.post(f"/console/cases/{case.pk}/accept/").status_code == 404
    assert carol.post(f"/console/cases/{case.pk}/disposition/", {"disposition": "home-care"}).status_code == 404


def test_accept_then_disposition_closes_the_case_and_returns_to_the_queue(personas, make_case):
    case = make_case(personas.north)
    alice = logged_in(personas.alice)
    alice.post("/console/next/")
    assert alice.post(f"/console/cases/{case.pk}/accept/").status_code == 302
    case.refresh_from_db()
    assert case.state == CaseState.IN_PROGRESS

    response = alice.post(f"/console/cases/{case.pk}/disposition/", {"disposition": "home-care", "note": "Rest."})
    assert response.status_code == 302 and response["Location"] == "/console/"
    case.refresh_from_db()
    assert case.state == CaseState.CLOSED and case.disposition == "home-care" and case.note == "Rest."
    assert WriteBack.objects.filter(source_id=case.pk).exists()
    status = alice.get(f"/console/cases/{case.pk}/status/").content.decode()
    assert 'data-state="closed"' in status
    assert 'data-target="fhir" data-state="skipped"' in status  # unidentified caller: nothing to file


def test_someone_elses_case_cannot_be_accepted_or_documented(personas, make_case):
    case = make_case(personas.north)
    logged_in(personas.alice).post("/console/next/")
    dave = logged_in(personas.dave)
    response = dave.post(f"/console/cases/{case.pk}/accept/", follow=True)
    assert b"held by another nurse" in response.content
    dave.post(f"/console/cases/{case.pk}/disposition/", {"disposition": "home-care"})
    case.refresh_from_db()
    assert case.state == CaseState.RESERVED


def test_unknown_disposition_changes_nothing(personas, make_case):
    case = make_case(personas.north)
    alice = logged_in(personas.alice)
    alice.post("/console/next/")
    response = alice.post(f"/console/cases/{case.pk}/disposition/", {"disposition": "nope"}, follow=True)
    assert b"Choose a disposition from the list." in response.content
    case.refresh_from_db()
    assert case.state == CaseState.RESERVED
    assert not WriteBack.objects.filter(source_id=case.pk).exists()


def test_release_returns_the_case_to_the_queue(personas, make_case):
    case = make_case(personas.north)
    alice = logged_in(personas.alice)
    alice.post("/console/next/")
    alice.post(f"/console/cases/{case.pk}/release/")
    case.refresh_from_db()
    assert case.state == CaseState.QUEUED


def test_static_assets_exist(personas):
    from django.contrib.staticfiles import finders

    for asset in ("console/console.css", "console/console.js", "vendor/htmx.min.js"):
        assert finders.find(asset), asset
