"""`VisitConsumer` (/ws/visit/<room>/) through `careline.asgi.application` on the real Redis channel layer:
who may join, relaying of presence and signaling, quality reports, supersede on reload, end of visit."""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from careline.asgi import application
from clinics.models import AuditEvent
from contactcenter import services, visits
from contactcenter.models import QualitySample, VideoVisit, VisitMessage
from contactcenter.visit_consumers import CLOSE_ENDED, CLOSE_FORBIDDEN, CLOSE_SUPERSEDED
from ivr.models import OutboundMessage

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


def cookie_of(client: Client) -> bytes:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@database_sync_to_async
def visit_setup(personas, make_case):
    """alice holds an accepted case and started a visit; a patient browser redeemed the link.
    Returns (visit, nurse cookie, patient cookie)."""
    case = make_case(personas.north, acuity=3)
    services.claim_next(user=personas.alice)
    services.accept(user=personas.alice, case_id=case.pk)
    nurse = Client()
    nurse.force_login(personas.alice)
    nurse.post(f"/console/cases/{case.pk}/video/")
    body = OutboundMessage.objects.get(case=case).body
    path = re.search(r"(/visit/join/[^/\s]+/)", body).group(1)
    patient = Client()
    assert patient.post(path).status_code == 302
    return VideoVisit.objects.get(case=case), cookie_of(nurse), cookie_of(patient)


@database_sync_to_async
def login_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return cookie_of(client)


def communicator(visit, cookie: bytes | None) -> WebsocketCommunicator:
    headers = [ORIGIN, (b"cookie", cookie)] if cookie else [ORIGIN]
    return WebsocketCommunicator(application, f"/ws/visit/{visit.room}/", headers=headers)


async def join(visit, cookie: bytes | None) -> WebsocketCommunicator:
    ws = communicator(visit, cookie)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    return ws


async def test_nurse_and_patient_relay_presence_and_signals(personas, make_case):
    visit, nurse_cookie, patient_cookie = await visit_setup(personas, make_case)
    nurse = await join(visit, nurse_cookie)
    patient = await join(visit, patient_cookie)
    try:
        assert await nurse.receive_json_from(timeout=5) == {"type": "welcome", "role": "nurse"}
        assert await patient.receive_json_from(timeout=5) == {"type": "welcome", "role": "patient"}
        await patient.send_json_to({"type": "hello", "pc": "p1"})
        assert await nurse.receive_json_from(timeout=5) == {
            "type": "peer",
            "state": "joined",
            "pc": "p1",
            "role": "patient",
        }
        await nurse.send_json_to({"type": "here", "pc": "n1"})
        assert await patient.receive_json_from(timeout=5) == {
            "type": "peer",
            "state": "here",
            "pc": "n1",
            "role": "nurse",
        }

        offer = {"type": "offer", "sdp": "v=0\r\n"}
        await nurse.send_json_to({"type": "signal", "pc": "n1", "description": offer})
        assert await patient.receive_json_from(timeout=5) == {
            "type": "signal",
            "pc": "n1",
            "description": offer,
            "role": "nurse",
        }
        candidate = {"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ relay", "sdpMid": "0", "sdpMLineIndex": 0}
        await patient.send_json_to({"type": "signal", "pc": "p1", "candidate": candidate})
        assert await nurse.receive_json_from(timeout=5) == {
            "type": "signal",
            "pc": "p1",
            "candidate": candidate,
            "role": "patient",
        }
        await patient.send_json_to({"type": "signal", "pc": "p1", "candidate": None})  # end of candidates
        assert (await nurse.receive_json_from(timeout=5))["candidate"] is None
        # Nothing echoes back to the sender; junk is ignored.
        await nurse.send_to(text_data="not json")
        await nurse.send_json_to({"type": "signal", "pc": "n1", "description": "not an object"})
        await nurse.send_json_to({"type": "ping"})
        assert await nurse.receive_json_from(timeout=5) == {"type": "pong"}
        assert await patient.receive_nothing(timeout=0.5)

        await patient.disconnect()
        assert await nurse.receive_json_from(timeout=5) == {"type": "peer", "state": "left", "role": "patient"}
    finally:
        await nurse.disconnect()


async def test_quality_reports_are_stored_and_shown_to_both(personas, make_case):
    visit, nurse_cookie, patient_cookie = await visit_setup(personas, make_case)
    nurse = await join(visit, nurse_cookie)
    patient = await join(visit, patient_cookie)
    try:
        await nurse.receive_json_from(timeout=5)
        await patient.receive_json_from(timeout=5)
        report = {
            "rtt_ms": 12.5,
            "jitter_ms": 1.2,
            "packet_loss_pct": 0.0,
            "fps": 29.0,
            "frames_decoded": 300,
            "outgoing_kbps": 1200.0,
            "candidate_type": "relay",
            "audio_only": False,
        }
        await patient.send_json_to({"type": "stats", "pc": "p1", **report})
        for ws in (nurse, patient):
            assert await ws.receive_json_from(timeout=5) == {"type": "quality", "role": "patient", **report}
        await patient.send_json_to({"type": "stats", "pc": "p1", **report})  # a flood is dropped
        assert await nurse.receive_nothing(timeout=0.5)
        sample = await database_sync_to_async(QualitySample.objects.get)()
        assert (sample.role, sample.rtt_ms, sample.candidate_type, sample.frames_decoded) == (
            "patient",
            12.5,
            "relay",
            300,
        )
    finally:
        await nurse.disconnect()
        await patient.disconnect()


async def test_only_the_two_participants_may_join_and_refusals_are_audited(personas, make_case):
    visit, _, _ = await visit_setup(personas, make_case)
    for user in (None, personas.dave, personas.bob, personas.carol):
        cookie = await login_cookie(user) if user else None
        ws = communicator(visit, cookie)
        connected, code = await ws.connect(timeout=5)
        assert not connected and code == CLOSE_FORBIDDEN, user
    # A browser that never redeemed the link (an unknown session) is refused too.
    ws = communicator(visit, f"{settings.SESSION_COOKIE_NAME}=nonexistent".encode())
    assert (await ws.connect(timeout=5)) == (False, CLOSE_FORBIDDEN)

    @database_sync_to_async
    def denials():
        return set(AuditEvent.objects.filter(action="access.denied").values_list("actor__username", "object_type"))

    # carol (South) cannot see North's room at all (row-level security): refused as an unknown room.
    assert {
        ("dave", "video_visit"),
        ("bob", "video_visit"),
        ("carol", "video_visit"),
        (None, "video_visit"),
    } <= await denials()


async def test_a_reloaded_page_supersedes_its_old_socket_without_telling_the_peer_it_left(personas, make_case):
    visit, nurse_cookie, patient_cookie = await visit_setup(personas, make_case)
    nurse = await join(visit, nurse_cookie)
    old = await join(visit, patient_cookie)
    await nurse.receive_json_from(timeout=5)
    await old.receive_json_from(timeout=5)
    new = await join(visit, patient_cookie)
    try:
        assert (await old.receive_output(timeout=5)) == {"type": "websocket.close", "code": CLOSE_SUPERSEDED}
        assert await new.receive_json_from(timeout=5) == {"type": "welcome", "role": "patient"}
        await new.send_json_to({"type": "hello", "pc": "p2"})
        assert await nurse.receive_json_from(timeout=5) == {
            "type": "peer",
            "state": "joined",
            "pc": "p2",
            "role": "patient",
        }
        await nurse.send_json_to({"type": "here", "pc": "n1"})
        assert (await new.receive_json_from(timeout=5))["state"] == "here"
    finally:
        await nurse.disconnect()
        await new.disconnect()


async def test_ending_the_visit_closes_both_pages_and_nobody_rejoins(personas, make_case):
    visit, nurse_cookie, patient_cookie = await visit_setup(personas, make_case)
    nurse = await join(visit, nurse_cookie)
    patient = await join(visit, patient_cookie)
    await nurse.receive_json_from(timeout=5)
    await patient.receive_json_from(timeout=5)
    await database_sync_to_async(visits.visit_end)(user=personas.alice, room=str(visit.room))
    for ws in (nurse, patient):
        assert await ws.receive_json_from(timeout=5) == {"type": "ended"}
        assert await ws.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_ENDED}
    for cookie in (nurse_cookie, patient_cookie):
        assert (await communicator(visit, cookie).connect(timeout=5)) == (False, CLOSE_FORBIDDEN)


async def test_chat_goes_to_both_pages_and_is_stored(personas, make_case):
    visit, nurse_cookie, patient_cookie = await visit_setup(personas, make_case)
    nurse = await join(visit, nurse_cookie)
    patient = await join(visit, patient_cookie)
    try:
        await nurse.receive_json_from(timeout=5)
        await patient.receive_json_from(timeout=5)
        await patient.send_json_to({"type": "chat", "pc": "p1", "body": "My camera does not work, can we chat?"})
        for ws in (nurse, patient):  # the sender's copy is its acknowledgement
            message = await ws.receive_json_from(timeout=5)
            assert (message["type"], message["role"], message["body"]) == (
                "chat",
                "patient",
                "My camera does not work, can we chat?",
            )
        await nurse.send_json_to({"type": "chat", "pc": "n1", "body": "   "})  # blank: ignored
        await nurse.send_json_to({"type": "chat", "pc": "n1", "body": {"not": "text"}})
        assert await patient.receive_nothing(timeout=0.5)
        stored = await database_sync_to_async(lambda: list(VisitMessage.objects.values_list("role", "body")))()
        assert stored == [("patient", "My camera does not work, can we chat?")]
    finally:
        await nurse.disconnect()
        await patient.disconnect()
