"""REST API (/api/v1/): token auth, clinic scoping, claims, dispositions with the outbox, the schema."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from ehr.models import WriteBack
from tests.conftest import PASSWORD, current_totp
from triage.models import Case, CaseState

pytestmark = pytest.mark.django_db

API = "/api/v1"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_token_auth_issues_a_token_that_authenticates(personas, make_case):
    make_case(personas.north)
    anonymous = APIClient()
    assert anonymous.get(f"{API}/cases/").status_code in (401, 403)

    credentials = {"username": "alice", "password": PASSWORD, "otp_token": current_totp(personas.alice)}
    response = anonymous.post(f"{API}/auth/token/", credentials, format="json")
    assert response.status_code == 200
    token = response.json()["token"]

    with_token = APIClient()
    with_token.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    listed = with_token.get(f"{API}/cases/")
    assert listed.status_code == 200
    assert len(listed.json()) == 1


def test_token_auth_refuses_a_wrong_password(personas):
    response = APIClient().post(
        f"{API}/auth/token/", {"username": "alice", "password": "nope", "otp_token": "000000"}, format="json"
    )
    assert response.status_code == 400
    assert "token" not in response.json()


def test_case_list_is_scoped_to_the_callers_clinic(personas, make_case):
    north = [make_case(personas.north, acuity=a) for a in (2, 4)]
    south = make_case(personas.south)

    alice_ids = {c["id"] for c in client_for(personas.alice).get(f"{API}/cases/").json()}
    carol_ids = {c["id"] for c in client_for(personas.carol).get(f"{API}/cases/").json()}

    assert alice_ids == {c.pk for c in north}
    assert carol_ids == {south.pk}, "carol sees none of North's cases"


def test_case_list_filters_by_state(personas, make_case):
    first = make_case(personas.north, acuity=2)
    make_case(personas.north, acuity=5)
    alice = client_for(personas.alice)
    alice.post(f"{API}/cases/next/")
    reserved = alice.get(f"{API}/cases/", {"state": "reserved"}).json()
    assert [c["id"] for c in reserved] == [first.pk]
    assert reserved[0]["acuity_label"] == "2 · Emergent"
    assert alice.get(f"{API}/cases/", {"state": "bogus"}).status_code == 400


def test_case_detail_has_timeline_acuity_state_patient_and_writebacks(personas, make_case):
    case = make_case(personas.north, patient_fhir_id="pat-1", patient_display="Jo Doe")
    body = client_for(personas.alice).get(f"{API}/cases/{case.pk}/").json()
    assert body["id"] == case.pk
    assert body["state"] == "queued"
    assert body["acuity"] == 2
    assert body["patient_fhir_id"] == "pat-1"
    assert [e["kind"] for e in body["timeline"]] == ["enqueued"]
    assert body["writebacks"] == []
    assert body["answers"][2] == {
        "question": "cp-ongoing",
        "text": "Has the pain lasted more than five minutes?",
        "answer": True,
    }


def test_another_clinics_case_is_404_everywhere(personas, make_case):
    case = make_case(personas.north)
    carol = client_for(personas.carol)
    assert carol.get(f"{API}/cases/{case.pk}/").status_code == 404
    assert carol.post(f"{API}/cases/{case.pk}/accept/").status_code == 404
    response = carol.post(f"{API}/cases/{case.pk}/disposition/", {"disposition": "home-care"}, format="json")
    assert response.status_code == 404
    assert client_for(personas.alice).get(f"{API}/cases/999999/").status_code == 404


def test_claim_next_returns_the_head_then_204_when_empty(personas, make_case):
    urgent = make_case(personas.north, acuity=2)
    alice = client_for(personas.alice)
    response = alice.post(f"{API}/cases/next/")
    assert response.status_code == 200
    assert response.json()["id"] == urgent.pk
    assert response.json()["state"] == "reserved"
    assert response.json()["reserved_by"] == "alice"

    assert client_for(personas.dave).post(f"{API}/cases/next/").status_code == 204


def test_accept_moves_my_reservation_to_in_progress_and_refuses_others(personas, make_case):
    case = make_case(personas.north)
    client_for(personas.alice).post(f"{API}/cases/next/")
    assert client_for(personas.dave).post(f"{API}/cases/{case.pk}/accept/").status_code == 409
    response = client_for(personas.alice).post(f"{API}/cases/{case.pk}/accept/")
    assert response.status_code == 200
    assert response.json()["state"] == "in_progress"


def test_disposition_completes_the_case_and_writes_the_outbox_row(personas, make_case):
    case = make_case(personas.north, patient_fhir_id="pat-1", patient_display="Jo Doe")
    alice = client_for(personas.alice)
    alice.post(f"{API}/cases/next/")

    response = alice.post(
        f"{API}/cases/{case.pk}/disposition/",
        {"disposition": "clinician-today", "note": "Seen by phone."},
        format="json",
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "closed"
    assert body["disposition"] == "clinician-today"
    assert [w["target"] for w in body["writebacks"]] == ["fhir"]
    case.refresh_from_db()
    assert case.state == CaseState.CLOSED and case.note == "Seen by phone."
    assert WriteBack.objects.filter(source_id=case.pk, clinic=personas.north, target="fhir").count() == 1


def test_disposition_with_an_unknown_code_is_400_and_changes_nothing(personas, make_case):
    case = make_case(personas.north)
    alice = client_for(personas.alice)
    alice.post(f"{API}/cases/next/")
    response = alice.post(f"{API}/cases/{case.pk}/disposition/", {"disposition": "maybe-fine"}, format="json")
    assert response.status_code == 400
    assert "disposition" in response.json()
    case.refresh_from_db()
    assert case.state == CaseState.RESERVED and case.disposition == ""
    assert not WriteBack.objects.filter(source_id=case.pk).exists()


def test_disposition_conflicts_when_not_mine_or_in_the_wrong_state(personas, make_case):
    case = make_case(personas.north)
    body = {"disposition": "home-care", "note": ""}
    url = f"{API}/cases/{case.pk}/disposition/"
    # Still queued (nobody holds it): 409.
    assert client_for(personas.alice).post(url, body, format="json").status_code == 409
    client_for(personas.alice).post(f"{API}/cases/next/")
    # Held by alice: dave gets 409.
    assert client_for(personas.dave).post(url, body, format="json").status_code == 409
    assert Case.objects.get(pk=case.pk).state == CaseState.RESERVED


def test_dispositions_lists_the_ladder(personas):
    body = client_for(personas.alice).get(f"{API}/dispositions/").json()
    assert body[0] == {"code": "call-911", "display": "Call 911 now", "display_es": "Llame al 911 ahora", "acuity": 1}
    assert [d["code"] for d in body][-1] == "home-care"


def test_users_of_no_clinic_are_refused(db, django_user_model):
    outsider = django_user_model.objects.create_user("mallory", password="x" * 12)
    assert client_for(outsider).get(f"{API}/cases/").status_code == 403
    assert client_for(outsider).post(f"{API}/cases/next/").status_code == 403


def test_schema_describes_every_operation(personas):
    response = client_for(personas.alice).get(f"{API}/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for path in (
        "/api/v1/auth/token/",
        "/api/v1/cases/",
        "/api/v1/cases/{case_id}/",
        "/api/v1/cases/next/",
        "/api/v1/cases/{case_id}/accept/",
        "/api/v1/cases/{case_id}/disposition/",
        "/api/v1/dispositions/",
    ):
        assert path in paths, path
    disposition = paths["/api/v1/cases/{case_id}/disposition/"]["post"]
    assert {"200", "400", "404", "409"} <= set(disposition["responses"])
    assert set(paths["/api/v1/cases/next/"]["post"]["responses"]) >= {"200", "204"}
    assert "DispositionInput" in schema["components"]["schemas"]
