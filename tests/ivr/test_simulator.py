"""Phone simulator: TwiML reading, Twilio-exact signing, and the async endpoint over real HTTP."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest
from django.test import Client

from ivr.models import CallLeg
from ivr.simulator import SimulatorRequestError, parse_page_request, twilio_params
from ivr.twilio.signature import SIGNATURE_HEADER, compute_signature
from ivr.twilio.twiml_reader import InvalidTwiml, twiml_to_actions
from tests.conftest import NORTH_NUMBER
from tests.ivr.phone import new_call_sid

DISCLAIMER = "If this is a life-threatening emergency, hang up and dial 911."


def test_twiml_reader_reads_every_verb_in_order():
    document = (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Say language="es-MX">Hola</Say>'
        '<Gather action="/ivr/voice/step/dob/?seq=2" numDigits="8" timeout="8"><Say>Enter it</Say></Gather>'
        '<Enqueue waitUrl="/ivr/voice/wait/x/">case-x</Enqueue>'
        '<Dial callerId="+15550100100"><Number>+15550100199</Number></Dial>'
        '<Play>http://music.test/a.mp3</Play><Pause length="3"/><Redirect>/next/</Redirect><Hangup/>'
        "</Response>"
    )
    assert twiml_to_actions(document) == [
        {"verb": "say", "text": "Hola", "language": "es-MX"},
        {"verb": "say", "text": "Enter it", "language": "en-US"},
        {"verb": "gather", "action": "/ivr/voice/step/dob/?seq=2", "numDigits": 8, "timeout": 8},
        {"verb": "enqueue", "queue": "case-x", "waitUrl": "/ivr/voice/wait/x/"},
        {"verb": "dial", "number": "+15550100199", "callerId": "+15550100100"},
        {"verb": "play", "url": "http://music.test/a.mp3"},
        {"verb": "pause", "length": 3},
        {"verb": "redirect", "url": "/next/"},
        {"verb": "hangup"},
    ]
    with pytest.raises(InvalidTwiml):
        twiml_to_actions("<html></html>")


def test_page_requests_outside_the_ivr_are_not_signed():
    call = {"from": "+15553031209", "to": NORTH_NUMBER}
    for path in ("/admin/", "https://elsewhere.test/ivr/voice/", "/ivr/voice/../../admin/", "/api/v1/cases/"):
        with pytest.raises(SimulatorRequestError):
            parse_page_request(json.dumps({"path": path, "call": call}).encode())
    with pytest.raises(SimulatorRequestError):
        parse_page_request(json.dumps({"path": "/ivr/voice/", "call": {**call, "sid": "not-a-sid"}}).encode())
    path, parsed, params = parse_page_request(
        json.dumps(
            {
                "path": "/ivr/voice/step/dob/?seq=2",
                "call": call,
                "params": {"Digits": "02021995", "To": "+1999"},
            }
        ).encode()
    )
    assert path == "/ivr/voice/step/dob/?seq=2"
    assert parsed["sid"].startswith("CA") and len(parsed["sid"]) == 34
    assert params == {"Digits": "02021995"}  # the page cannot override the call's own parameters


@pytest.mark.django_db
def test_simulator_signature_is_accepted_by_the_webhook(personas, client: Client, settings):
    params = twilio_params(call_sid=new_call_sid(), from_number="+15550009999", to_number=NORTH_NUMBER, extra={})
    signature = compute_signature(settings.PUBLIC_BASE_URL + "/ivr/voice/", params)
    response = client.post("/ivr/voice/", params, **{f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}": signature})
    assert response.status_code == 200
    says = [a["text"] for a in twiml_to_actions(response.content) if a["verb"] == "say"]
    assert any(DISCLAIMER in s for s in says)


@pytest.mark.django_db
def test_simulator_page_has_the_stable_element_ids(personas, client: Client):
    html = client.get("/simulator/").content.decode()
    for element_id in (
        'id="sim-from"',
        'id="sim-to"',
        'id="sim-call"',
        'id="sim-hangup"',
        'id="sim-state"',
        'id="sim-log"',
        'data-digit="1"',
        'data-digit="#"',
        'id="sim-noinput"',
    ):
        assert element_id in html
    assert "+15553031209" in html and NORTH_NUMBER in html
    assert "ivr/simulator.js" in html


@pytest.mark.django_db(transaction=True)
def test_simulator_endpoint_calls_the_ivr_over_http(personas, live_server):
    """The async view signs like Twilio and posts over real HTTP to the (live) server, then reads the TwiML."""
    host = urlparse(live_server.url).netloc
    client = Client(HTTP_HOST=host)
    call = {"from": "+15550009999", "to": NORTH_NUMBER}
    response = client.post(
        "/simulator/api/post/", json.dumps({"path": "/ivr/voice/", "call": call}), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["status"] == 200 and data["error"] == ""
    assert any(DISCLAIMER in say["text"] for say in data["says"])
    assert {say["language"] for say in data["says"]} == {"en-US", "es-MX"}
    gather = data["actions"][-1]
    assert gather["verb"] == "gather" and gather["action"] == "/ivr/voice/step/language/?seq=1"
    assert CallLeg.objects.filter(call_sid=data["callSid"]).exists()

    # Follow the <Gather> with a digit: the same call continues (no FHIR needed: "0" goes to a nurse).
    response = client.post(
        "/simulator/api/post/",
        json.dumps(
            {
                "path": gather["action"],
                "call": {**call, "sid": data["callSid"]},
                "params": {"Digits": "0"},
            }
        ),
        content_type="application/json",
    )
    verbs = [a["verb"] for a in response.json()["actions"]]
    assert verbs[-1] == "enqueue"
