"""API: protocols list, FHIR Questionnaire export, the clinic's ladder, acuity change and co-sign."""

from __future__ import annotations

import pytest
from fhirclient.models.questionnaire import Questionnaire
from rest_framework.test import APIClient

from triage.dispositions import DISPOSITIONS
from triage.models import DispositionRung, Protocol
from triage.protocol_versions import protocol_library_install

pytestmark = pytest.mark.django_db
API = "/api/v1"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_protocols_list_and_questionnaire_export(personas):
    protocol_library_install(clinic=personas.north)
    listed = client_for(personas.alice).get(f"{API}/protocols/").json()
    assert len(listed) >= 20
    chest = next(p for p in listed if p["code"] == "chest-pain")
    assert chest["active_version"] == 1 and chest["audience"] == "adult"

    response = client_for(personas.alice).get(chest["questionnaire_url"])
    assert response.status_code == 200
    body = response.json()
    Questionnaire(body)  # parses as a FHIR R4 Questionnaire (fhirclient validates the structure)
    assert body["resourceType"] == "Questionnaire"
    assert (body["url"], body["version"], body["status"]) == ("urn:careline:protocol:chest-pain", "1", "active")
    assert [i["linkId"] for i in body["item"]] == ["cp-collapse", "cp-crushing", "cp-ongoing", "cp-breath"]
    assert {i["type"] for i in body["item"]} == {"boolean"}
    first = body["item"][0]["extension"]
    disposition = next(e for e in first if e["url"].endswith("yes-disposition"))["valueCoding"]
    assert disposition == {"system": "urn:careline:disposition", "code": "call-911", "display": "Call 911 now"}
    assert next(e for e in first if e["url"].endswith("yes-acuity"))["valueInteger"] == 1


def test_questionnaire_of_another_clinic_is_404_and_bad_version_400(personas):
    protocol_library_install(clinic=personas.north)
    chest = Protocol.objects.get(clinic=personas.north, code="chest-pain")
    assert client_for(personas.carol).get(f"{API}/protocols/{chest.pk}/questionnaire/").status_code == 404
    assert client_for(personas.alice).get(f"{API}/protocols/{chest.pk}/questionnaire/?version=7").status_code == 404
    assert client_for(personas.alice).get(f"{API}/protocols/{chest.pk}/questionnaire/?version=x").status_code == 400
    assert client_for(personas.alice).get(f"{API}/protocols/{chest.pk}/questionnaire/?version=1").status_code == 200
    assert client_for(personas.carol).get(f"{API}/protocols/").json() == []


def test_dispositions_show_the_clinics_own_ladder(personas):
    DispositionRung.objects.create(
        clinic=personas.south, code="telehealth", display="Video visit tonight", display_es="Video", acuity=3
    )
    south = client_for(personas.carol).get(f"{API}/dispositions/").json()
    assert [d["code"] for d in south] == ["telehealth"]
    north = client_for(personas.alice).get(f"{API}/dispositions/").json()
    assert [d["code"] for d in north] == [d.code for d in DISPOSITIONS]


def test_acuity_raise_lower_and_cosign_through_the_api(personas, make_case):
    case = make_case(personas.north, acuity=3)
    raised = client_for(personas.alice).post(f"{API}/cases/{case.pk}/acuity/", {"acuity": 2, "reason": "worse"})
    assert raised.status_code == 201 and raised.json()["status"] == "applied"
    lowered = client_for(personas.alice).post(f"{API}/cases/{case.pk}/acuity/", {"acuity": 4, "reason": "better"})
    assert lowered.status_code == 201 and lowered.json()["status"] == "pending"
    case.refresh_from_db()
    assert case.acuity == 2
    override_id = lowered.json()["id"]
    denied = client_for(personas.dave).post(f"{API}/acuity-overrides/{override_id}/cosign/", {"approve": True})
    assert denied.status_code == 403
    assert (
        client_for(personas.carol).post(f"{API}/acuity-overrides/{override_id}/cosign/", {"approve": True}).status_code
        == 404
    )
    ok = client_for(personas.bob).post(f"{API}/acuity-overrides/{override_id}/cosign/", {"approve": True})
    assert ok.status_code == 200 and ok.json()["status"] == "applied" and ok.json()["cosigned_by"] == "bob"
    case.refresh_from_db()
    assert case.acuity == 4


def test_acuity_change_needs_a_reason_and_the_clinic(personas, make_case):
    case = make_case(personas.north, acuity=3)
    assert client_for(personas.alice).post(f"{API}/cases/{case.pk}/acuity/", {"acuity": 2}).status_code == 400
    assert (
        client_for(personas.alice).post(f"{API}/cases/{case.pk}/acuity/", {"acuity": 3, "reason": "x"}).status_code
        == 400
    )
    assert (
        client_for(personas.carol).post(f"{API}/cases/{case.pk}/acuity/", {"acuity": 2, "reason": "x"}).status_code
        == 404
    )
