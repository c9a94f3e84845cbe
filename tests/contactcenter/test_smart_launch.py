"""SMART EHR launch of the nurse console (contactcenter/smart_views.py, ehr.fhir.smart.launch_*).

The EHR side is `LaunchPeer` (tests/fixtures/smart_peers.py), a small real OAuth 2 authorization server
written for these tests, because sekmet-fhir implements no authorization-code flow. It checks every
parameter CareLine sends (response_type, client_id, redirect_uri, aud, launch, PKCE S256) and verifies the
PKCE verifier at its token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from clinics.models import AuditEvent
from tests.conftest import PASSWORD, current_totp
from tests.fixtures.smart_peers import LaunchPeer
from triage.services import case_enqueue

CALLBACK = "https://careline.test/smart/callback/"  # PUBLIC_BASE_URL of the test settings


@pytest.fixture
def ehr(settings: Any) -> Any:
    peer = LaunchPeer(client_id="careline-console", redirect_uri=CALLBACK).start()
    settings.FHIR_SMART_LAUNCH_CLIENT_ID = "careline-console"
    settings.FHIR_SMART_LAUNCH_ISS = [peer.iss]
    yield peer
    peer.stop()


def cases_for(personas: Any) -> dict[str, Any]:
    def enqueue(clinic: Any, patient: str) -> Any:
        return case_enqueue(clinic=clinic, callback_number="+15555550123", acuity=3, patient_fhir_id=patient)

    return {
        "north_pat": enqueue(personas.north, "pat-1"),
        "north_other": enqueue(personas.north, "pat-2"),
        "south_pat": enqueue(personas.south, "pat-1"),
    }


def launch_through_the_ehr(client: Any, ehr: LaunchPeer, patient: str) -> tuple[Any, dict[str, str]]:
    """EHR opens /smart/launch/, the browser follows to the EHR's authorize endpoint and back to the callback."""
    response = client.get("/smart/launch/", {"iss": ehr.iss, "launch": ehr.new_launch(patient)})
    assert response.status_code == 302, response.content
    authorize = requests.get(response["Location"], allow_redirects=False, timeout=5)
    assert authorize.status_code == 302, authorize.text
    back = urlparse(authorize.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    return client.get("/smart/callback/", query), query


def test_ehr_launch_opens_the_patients_cases_of_the_nurses_clinic(client: Any, personas: Any, ehr: LaunchPeer) -> None:
    cases = cases_for(personas)
    client.login(username="alice", password=PASSWORD)
    response, _ = launch_through_the_ehr(client, ehr, "pat-1")

    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-case-id="{cases["north_pat"].pk}"' in page
    assert f'data-case-id="{cases["north_other"].pk}"' not in page  # another patient
    assert f'data-case-id="{cases["south_pat"].pk}"' not in page  # another clinic
    assert client.session["smart_launch"] == {"iss": ehr.iss, "patient": "pat-1"}
    assert AuditEvent.objects.filter(clinic=personas.north, action="smart.launch", patient_ref="pat-1").count() == 1

    sent = ehr.authorize_requests[-1]
    assert sent["response_type"] == "code" and sent["client_id"] == "careline-console"
    assert sent["aud"] == ehr.iss and sent["redirect_uri"] == CALLBACK
    assert set(sent["scope"].split()) == {"launch", "openid", "fhirUser", "patient/*.read"}
    assert sent["code_challenge_method"] == "S256"
    verifier = ehr.token_requests[-1]["code_verifier"]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == sent["code_challenge"] and 43 <= len(verifier) <= 128


def test_a_nurse_of_another_clinic_sees_only_her_clinics_cases(client: Any, personas: Any, ehr: LaunchPeer) -> None:
    cases = cases_for(personas)
    client.login(username="carol", password=PASSWORD)
    response, _ = launch_through_the_ehr(client, ehr, "pat-1")
    page = response.content.decode()
    assert f'data-case-id="{cases["south_pat"].pk}"' in page
    assert f'data-case-id="{cases["north_pat"].pk}"' not in page


def test_a_used_or_forged_state_is_refused(client: Any, personas: Any, ehr: LaunchPeer) -> None:
    client.login(username="alice", password=PASSWORD)
    response, query = launch_through_the_ehr(client, ehr, "pat-1")
    assert response.status_code == 200
    replay = client.get("/smart/callback/", query)  # same state again
    assert replay.status_code == 400 and b"already used" in replay.content

    response = client.get("/smart/launch/", {"iss": ehr.iss, "launch": ehr.new_launch("pat-1")})
    forged = client.get("/smart/callback/", {"code": "x", "state": "not-the-state"})
    assert forged.status_code == 400
    assert len(ehr.token_requests) == 1  # neither reached the EHR's token endpoint


def test_a_wrong_code_is_reported_from_the_ehr(client: Any, personas: Any, ehr: LaunchPeer) -> None:
    client.login(username="alice", password=PASSWORD)
    response = client.get("/smart/launch/", {"iss": ehr.iss, "launch": ehr.new_launch("pat-1")})
    state = parse_qs(urlparse(response["Location"]).query)["state"][0]
    refused = client.get("/smart/callback/", {"code": "made-up", "state": state})
    assert refused.status_code == 400 and b"invalid_grant" in refused.content


def test_an_iss_not_on_the_allow_list_is_refused(client: Any, personas: Any, ehr: LaunchPeer, settings: Any) -> None:
    client.login(username="alice", password=PASSWORD)
    settings.FHIR_SMART_LAUNCH_ISS = ["https://other-ehr.example/fhir"]
    response = client.get("/smart/launch/", {"iss": ehr.iss, "launch": ehr.new_launch("pat-1")})
    assert response.status_code == 400 and b"allow-list" in response.content
    settings.FHIR_SMART_LAUNCH_ISS = [ehr.iss + "/"]  # trailing slash ignored
    assert client.get("/smart/launch/", {"iss": ehr.iss, "launch": ehr.new_launch("pat-1")}).status_code == 302


def test_a_signed_out_nurse_logs_in_and_comes_back_to_the_launch(client: Any, personas: Any, ehr: LaunchPeer) -> None:
    launch = ehr.new_launch("pat-1")
    response = client.get("/smart/launch/", {"iss": ehr.iss, "launch": launch})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    next_url = parse_qs(urlparse(response["Location"]).query)["next"][0]
    logged_in = client.post(f"/accounts/login/?next={requests.utils.quote(next_url)}",
                            {"username": "alice", "password": PASSWORD, "next": next_url})  # fmt: skip
    assert logged_in.status_code == 302 and logged_in["Location"] == next_url
    second_step = client.get(next_url)  # the OTP step first, then back to the launch
    assert second_step.status_code == 302 and second_step["Location"].startswith("/accounts/otp/?")
    assert parse_qs(urlparse(second_step["Location"]).query)["next"][0] == next_url
    verified = client.post("/accounts/otp/", {"otp_token": current_totp(personas.alice), "next": next_url})
    assert verified.status_code == 302 and verified["Location"] == next_url
    resumed = client.get(next_url)
    assert resumed.status_code == 302 and resumed["Location"].startswith(f"{ehr.root}/authorize?")


def test_a_user_who_is_not_staff_is_refused(
    client: Any, personas: Any, ehr: LaunchPeer, django_user_model: Any
) -> None:
    django_user_model.objects.create_user(username="visitor", password=PASSWORD)
    client.login(username="visitor", password=PASSWORD)
    response = client.get("/smart/launch/", {"iss": ehr.iss, "launch": ehr.new_launch("pat-1")})
    assert response.status_code == 403
