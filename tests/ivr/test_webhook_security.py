"""`ivr.twilio.signature.twilio_webhook`: signature over the public URL, malformed requests, no PHI in logs."""

from __future__ import annotations

import logging

import pytest
from django.test import Client

from ivr.models import CallLeg, OutboundMessage
from tests.ivr.phone import twilio_form
from tests.twilio import sign, signed_post
from triage.models import Case

CALLER = "+15553031209"

pytestmark = pytest.mark.django_db


def _counts() -> tuple[int, int, int]:
    return CallLeg.objects.count(), Case.objects.count(), OutboundMessage.objects.count()


def test_signed_inbound_call_is_answered(personas, client: Client):
    response = signed_post(client, "/ivr/voice/", twilio_form("voice_inbound"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    assert CallLeg.objects.count() == 1


def test_forged_signature_is_refused_and_nothing_written(personas, client: Client, caplog):
    params = twilio_form("voice_inbound")
    before = _counts()
    with caplog.at_level(logging.WARNING):
        response = client.post(
            "/ivr/voice/", params, HTTP_X_TWILIO_SIGNATURE=sign("/ivr/voice/", params, token="someone-elses-token")
        )
    assert response.status_code == 403
    assert _counts() == before
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused and "invalid signature" in refused[0]
    # The log line names the CallSid, never the caller's number.
    assert params["CallSid"] in refused[0]
    assert "3031209" not in caplog.text


def test_unsigned_request_is_refused(personas, client: Client):
    before = _counts()
    response = client.post("/ivr/voice/", twilio_form("voice_inbound"))
    assert response.status_code == 403
    assert _counts() == before


def test_signature_for_another_url_is_refused(personas, client: Client):
    params = twilio_form("voice_inbound")
    before = _counts()
    # Signed for the status callback but posted to the voice URL.
    response = client.post("/ivr/voice/", params, HTTP_X_TWILIO_SIGNATURE=sign("/ivr/voice/status/", params))
    assert response.status_code == 403
    # Signed for another host.
    response = client.post(
        "/ivr/voice/", params, HTTP_X_TWILIO_SIGNATURE=sign("/ivr/voice/", params, base="https://elsewhere.test")
    )
    assert response.status_code == 403
    assert _counts() == before


def test_tampered_parameters_are_refused(personas, client: Client):
    params = twilio_form("gather_digits", Digits="1")
    signature = sign("/ivr/voice/", params)
    response = client.post("/ivr/voice/", {**params, "Digits": "2"}, HTTP_X_TWILIO_SIGNATURE=signature)
    assert response.status_code == 403


@pytest.mark.parametrize("missing", ["CallSid", "From", "To"])
def test_signed_but_malformed_is_400_and_nothing_written(personas, client: Client, missing):
    params = twilio_form("voice_inbound")
    del params[missing]
    before = _counts()
    assert signed_post(client, "/ivr/voice/", params).status_code == 400
    assert _counts() == before


def test_unknown_clinic_number_is_400_and_nothing_written(personas, client: Client):
    params = twilio_form("voice_inbound", To="+15550999999", Called="+15550999999")
    before = _counts()
    assert signed_post(client, "/ivr/voice/", params).status_code == 400
    assert signed_post(client, "/ivr/voice/status/", params).status_code == 400
    assert _counts() == before


def test_every_webhook_is_verified(personas, client: Client):
    params = twilio_form("gather_digits")
    for path in (
        "/ivr/voice/status/",
        "/ivr/voice/step/language/?seq=1",
        "/ivr/voice/wait/9b3e5a8e-52f4-4e44-a8f3-5c7b8a1f2d3c/",
    ):
        assert client.post(path, params).status_code == 403, path


def test_get_is_not_allowed(personas, client: Client):
    assert client.get("/ivr/voice/").status_code == 405


def test_without_public_base_url_the_request_url_is_verified(personas, client: Client, settings):
    """No proxy: the signature is checked against the URL this server saw (build_absolute_uri)."""
    settings.PUBLIC_BASE_URL = ""
    params = twilio_form("voice_inbound")
    good = sign("/ivr/voice/", params, base="http://testserver")
    assert client.post("/ivr/voice/", params, HTTP_X_TWILIO_SIGNATURE=good).status_code == 200
    params = twilio_form("voice_inbound", CallSid="CA" + "1" * 32)
    public = sign("/ivr/voice/", params, base="https://careline.test")
    assert client.post("/ivr/voice/", params, HTTP_X_TWILIO_SIGNATURE=public).status_code == 403
