"""Video visits: starting one from a case (SMS join link through the outbox), the single-use, expiring,
case-bound link, the patient's session binding, the ICE endpoint and ending with a quality summary
(`contactcenter.visits`, `contactcenter.visit_views`)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from clinics.models import AuditEvent
from contactcenter import services, visits
from contactcenter.models import CallSession, QualitySample, VideoVisit
from contactcenter.turn import turn_password
from ivr.models import OutboundMessage
from triage.models import CaseEvent

pytestmark = pytest.mark.django_db

LINK = re.compile(r"https://careline\.test(/visit/join/[^/\s]+/)")


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def accepted_case(personas, make_case):
    """A North case claimed and accepted by alice."""
    case = make_case(personas.north, acuity=3, callback_number="+15555550142")
    assert services.claim_next(user=personas.alice).pk == case.pk
    return services.accept(user=personas.alice, case_id=case.pk)


def start(client: Client, case) -> tuple[VideoVisit, str]:
    response = client.post(f"/console/cases/{case.pk}/video/")
    visit = VideoVisit.objects.get(case=case, state=VideoVisit.State.INVITED)
    assert response.status_code == 302 and response["Location"] == f"/console/visits/{visit.room}/"
    message = OutboundMessage.objects.filter(case=case).latest("pk")
    match = LINK.search(message.body)
    assert match, message.body
    return visit, match.group(1)


def test_nurse_starts_a_visit_sms_link_timeline_audit(personas, accepted_case):
    alice = logged_in(personas.alice)
    page = alice.get(f"/console/cases/{accepted_case.pk}/")
    assert b'id="start-video"' in page.content

    visit, path = start(alice, accepted_case)
    message = OutboundMessage.objects.get(case=accepted_case)
    assert message.to == "+15555550142" and message.state == OutboundMessage.State.RECORDED
    assert "North Clinic" in message.body and "15 min" in message.body
    token = path.split("/")[3]
    assert visit.token_hash == visits.token_hash(token) and token not in visit.token_hash  # only the hash stored
    assert abs((visit.expires_at - visit.created_at) - timedelta(seconds=900)) < timedelta(seconds=5)
    assert visit.nurse_id == personas.alice.pk and CallSession.objects.filter(visit=visit).exists()
    kinds = list(accepted_case.events.values_list("kind", "summary"))
    assert (CaseEvent.Kind.VIDEO, "Video visit started; join link sent by SMS (valid 15 min)") in kinds
    assert any(kind == CaseEvent.Kind.SMS and summary.startswith("Video visit link") for kind, summary in kinds)
    assert AuditEvent.objects.filter(action="video.start", object_id=str(visit.pk), actor=personas.alice).exists()


def test_only_the_nurse_who_accepted_the_case_can_start_one(personas, make_case, accepted_case):
    dave = logged_in(personas.dave)
    response = dave.post(f"/console/cases/{accepted_case.pk}/video/")
    assert response.status_code == 302 and response["Location"] == f"/console/cases/{accepted_case.pk}/"
    carol = logged_in(personas.carol)
    assert carol.post(f"/console/cases/{accepted_case.pk}/video/").status_code == 404
    assert AuditEvent.objects.filter(
        clinic=personas.south, actor=personas.carol, action="access.denied", object_id=str(accepted_case.pk)
    ).exists()
    reserved = make_case(personas.north)
    assert services.claim_next(user=personas.dave).pk == reserved.pk  # reserved, not accepted
    dave.post(f"/console/cases/{reserved.pk}/video/")
    assert not VideoVisit.objects.exists()
    assert not OutboundMessage.objects.exists()


def test_link_landing_does_not_spend_it_join_does_once_and_binds_the_session(personas, accepted_case):
    visit, path = start(logged_in(personas.alice), accepted_case)
    patient = Client()
    landing = patient.get(path)
    assert landing.status_code == 200 and b'id="join-visit"' in landing.content
    assert patient.get(path).status_code == 200  # a link preview (GET) never redeems it

    joined = patient.post(path)
    assert joined.status_code == 302 and joined["Location"] == f"/visit/{visit.room}/"
    page = patient.get(joined["Location"])
    assert page.status_code == 200 and f'data-room="{visit.room}"'.encode() in page.content
    assert b'data-role="patient"' in page.content
    assert patient.get(joined["Location"]).status_code == 200  # reload: still in, no link needed
    visit.refresh_from_db()
    assert visit.state == VideoVisit.State.ACTIVE and visit.redeemed_at is not None
    assert AuditEvent.objects.filter(action="video.link_redeemed", object_id=str(visit.pk), role="patient").exists()

    # Single use: the same link, from this or any other browser, gets the "already used" page.
    for again in (patient, Client()):
        for method in (again.get, again.post):
            used = method(path)
            assert used.status_code == 410 and b'data-reason="used"' in used.content
    # Another browser without the bound session never gets the visit page.
    stranger = Client().get(f"/visit/{visit.room}/")
    assert stranger.status_code == 403 and b'data-reason="not_joined"' in stranger.content


def test_tampered_and_other_cases_links_are_refused(personas, accepted_case):
    visit, path = start(logged_in(personas.alice), accepted_case)
    token = path.split("/")[3]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (flipped, token[:20], "garbage", token + "x"):
        response = Client().post(f"/visit/join/{bad}/")
        assert response.status_code == 400 and b'data-reason="tampered"' in response.content, bad
    # A correctly signed token naming another case is refused too (bound to the case).
    from django.core import signing

    other = signing.dumps({"r": str(visit.room), "c": accepted_case.pk + 1}, salt=visits.TOKEN_SALT)
    assert Client().post(f"/visit/join/{other}/").status_code == 400
    visit.refresh_from_db()
    assert visit.redeemed_at is None  # none of them spent the real link
    assert Client().post(path).status_code == 302


def test_expired_link_gets_the_expired_page(personas, accepted_case, settings):
    visit, path = start(logged_in(personas.alice), accepted_case)
    VideoVisit.objects.filter(pk=visit.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().post(path)
    assert response.status_code == 410 and b'data-reason="expired"' in response.content
    VideoVisit.objects.filter(pk=visit.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    settings.VIDEO_LINK_TTL_SECONDS = -1  # the signature's own timestamp is checked as well
    assert b'data-reason="expired"' in Client().get(path).content
    visit.refresh_from_db()
    assert visit.redeemed_at is None


def test_ttl_is_configurable(personas, accepted_case, settings):
    settings.VIDEO_LINK_TTL_SECONDS = 300
    visit, _ = start(logged_in(personas.alice), accepted_case)
    assert abs((visit.expires_at - visit.created_at) - timedelta(seconds=300)) < timedelta(seconds=5)
    assert "5 min" in OutboundMessage.objects.get(case=accepted_case).body


def test_ice_endpoint_for_the_two_participants_only(personas, accepted_case, settings):
    settings.TURN_URLS = ["turn:127.0.0.1:3478?transport=udp"]
    settings.TURN_SECRET = "s3cret"
    settings.TURN_TTL_SECONDS = 120
    alice = logged_in(personas.alice)
    visit, path = start(alice, accepted_case)
    patient = Client()
    patient.post(path)
    url = f"/visit/{visit.room}/ice/"
    for client, role in ((alice, "nurse"), (patient, "patient")):
        body = client.get(url).json()
        server = body["iceServers"][0]
        assert server["urls"] == ["turn:127.0.0.1:3478?transport=udp"] and body["ttl"] == 120
        expiry, ident = server["username"].split(":")
        assert ident == f"{visit.pk}-{role}"
        assert 0 < int(expiry) - timezone.now().timestamp() <= 121
        assert server["credential"] == turn_password(secret="s3cret", username=server["username"])
        assert body["iceTransportPolicy"] == "all"
    for outsider in (Client(), logged_in(personas.dave), logged_in(personas.bob), logged_in(personas.carol)):
        assert outsider.get(url).status_code == 403
    assert AuditEvent.objects.filter(action="access.denied", object_type="video_visit", actor=personas.dave).exists()
    # Another clinic's room is invisible to carol (row-level security): refused as an unknown room, in her
    # clinic's log, without North's visit id.
    assert AuditEvent.objects.filter(
        action="access.denied", object_type="video_visit", actor=personas.carol, clinic=personas.south, object_id=""
    ).exists()
    settings.VIDEO_FORCE_RELAY = True
    assert alice.get(url).json()["iceTransportPolicy"] == "relay"


def test_nurse_page_is_the_assigned_nurses_only(personas, accepted_case):
    alice = logged_in(personas.alice)
    visit, _ = start(alice, accepted_case)
    page = alice.get(f"/console/visits/{visit.room}/")
    assert page.status_code == 200 and b'data-role="nurse"' in page.content and b"js/visit.js" in page.content
    assert logged_in(personas.dave).get(f"/console/visits/{visit.room}/").status_code == 302
    assert logged_in(personas.carol).get(f"/console/visits/{visit.room}/").status_code == 302
    assert Client().get(f"/console/visits/{visit.room}/").status_code == 302  # to the login page


def test_quality_samples_and_the_summary_on_the_case_when_the_visit_ends(personas, accepted_case):
    alice = logged_in(personas.alice)
    visit, path = start(alice, accepted_case)
    patient = Client()
    patient.post(path)
    visits.quality_record(
        visit_id=visit.pk,
        role="nurse",
        figures={
            "rtt_ms": 20,
            "jitter_ms": 3.5,
            "packet_loss_pct": 0,
            "fps": 30,
            "frames_decoded": 150,
            "outgoing_kbps": 900,
            "candidate_type": "relay",
            "audio_only": False,
        },
    )
    visits.quality_record(
        visit_id=visit.pk,
        role="patient",
        figures={
            "rtt_ms": 40,
            "jitter_ms": "bad",
            "packet_loss_pct": 250,
            "fps": -3,
            "candidate_type": "evil",
            "frames_decoded": 10,
            "audio_only": True,
        },
    )
    garbage = QualitySample.objects.get(role="patient")
    assert garbage.jitter_ms is None and garbage.packet_loss_pct == 100 and garbage.fps is None
    assert garbage.candidate_type == "" and garbage.audio_only is True
    assert CallSession.objects.get(visit=visit).started_at is not None

    response = alice.post(f"/console/visits/{visit.room}/end/")
    assert response.status_code == 302 and response["Location"] == f"/console/cases/{accepted_case.pk}/"
    visit.refresh_from_db()
    assert visit.state == VideoVisit.State.ENDED and CallSession.objects.get(visit=visit).ended_at is not None
    ended = accepted_case.events.filter(kind=CaseEvent.Kind.VIDEO).latest("pk")
    assert ended.summary.startswith("Video visit ended (ended by the nurse). Quality: nurse: RTT 20 ms")
    assert ended.detail["quality"]["nurse"]["candidate_types"] == ["relay"]
    case_page = alice.get(f"/console/cases/{accepted_case.pk}/").content.decode()
    assert 'data-role="nurse"' in case_page and "via relay" in case_page
    # The ended visit admits nobody, and its link stays dead.
    assert patient.get(f"/visit/{visit.room}/").status_code == 410
    assert alice.get(f"/visit/{visit.room}/ice/").status_code == 403


def test_closing_the_case_ends_its_visit(personas, accepted_case):
    visit, _ = start(logged_in(personas.alice), accepted_case)
    services.disposition_record(user=personas.alice, case_id=accepted_case.pk, disposition_code="home-care")
    visit.refresh_from_db()
    assert visit.state == VideoVisit.State.ENDED
    summaries = [e.summary for e in accepted_case.events.filter(kind=CaseEvent.Kind.VIDEO)]  # encrypted: in Python
    assert any(s.startswith("Video visit ended (case closed)") for s in summaries), summaries


def test_a_new_visit_replaces_the_open_one(personas, accepted_case):
    alice = logged_in(personas.alice)
    first, first_path = start(alice, accepted_case)
    second, _ = start(alice, accepted_case)
    first.refresh_from_db()
    assert first.state == VideoVisit.State.ENDED and second.state == VideoVisit.State.INVITED
    assert b'data-reason="used"' in Client().post(first_path).content


def _attr(content: bytes, name: str) -> str:
    import html

    match = re.search(rf'{name}="([^"]*)"'.encode(), content)
    assert match, name
    return html.unescape(match.group(1).decode())


def test_patient_page_embeds_the_precall_test_with_a_token_for_that_visit_only(
    personas, accepted_case, make_case, settings
):
    import json

    from contactcenter.precall import precall_subject

    settings.TURN_URLS = ["turn:127.0.0.1:3478?transport=udp"]
    settings.TURN_SECRET = "s3cret"
    visit, path = start(logged_in(personas.alice), accepted_case)
    patient = Client()
    patient.post(path)
    page = patient.get(f"/visit/{visit.room}/")
    assert page.status_code == 200 and b"js/precall.js" in page.content
    assert _attr(page.content, "data-precall-url") == "/precall/offer/"
    token = _attr(page.content, "data-precall-token")
    assert precall_subject(token) == f"visit:{visit.pk}"  # the visit's id, no PHI
    assert "5555550142" not in token and "North" not in token
    servers = json.loads(_attr(page.content, "data-precall-ice-servers"))
    assert servers[0]["urls"] == ["turn:127.0.0.1:3478?transport=udp"]
    assert servers[0]["username"].endswith(f":{visit.pk}-patient")
    # The pre-call comes before the waiting room and joining does not depend on it.
    assert page.content.index(b'id="precall"') < page.content.index(b'id="visit-status"')

    # Another visit's page carries its own subject; a browser not bound to the visit gets no token at all.
    other_case = make_case(personas.north, acuity=3, callback_number="+15555550143")
    assert services.claim_next(user=personas.bob).pk == other_case.pk
    services.accept(user=personas.bob, case_id=other_case.pk)
    other_visit, other_path = start(logged_in(personas.bob), other_case)
    other = Client()
    other.post(other_path)
    other_token = _attr(other.get(f"/visit/{other_visit.room}/").content, "data-precall-token")
    assert precall_subject(other_token) == f"visit:{other_visit.pk}" != precall_subject(token)
    assert b"data-precall-token" not in Client().get(f"/visit/{visit.room}/").content
    assert b"data-precall-token" not in other.get(f"/visit/{visit.room}/").content


def test_nurse_page_carries_the_budget_and_the_phone_fallback_to_her_case(personas, accepted_case, settings):
    from ivr.models import OutboundCall

    alice = logged_in(personas.alice)
    visit, _ = start(alice, accepted_case)
    page = alice.get(f"/console/visits/{visit.room}/")
    assert _attr(page.content, "data-connect-budget-seconds") == "45"
    settings.VIDEO_CONNECT_BUDGET_SECONDS = 7
    page = alice.get(f"/console/visits/{visit.room}/")
    assert _attr(page.content, "data-connect-budget-seconds") == "7"
    form = re.search(rb'<form method="post" action="([^"]+)" id="video-fallback-form".*?</form>', page.content, re.S)
    assert form and form.group(1).decode() == f"/console/cases/{accepted_case.pk}/call/"
    assert b'name="reason" value="video_failed"' in form.group(0) and b'name="nurse_number"' in form.group(0)
    assert b"Video is not connecting" in page.content

    # The page notes the failure on the timeline (the visit's nurse only) ...
    failed_url = _attr(page.content, "data-video-failed-url")
    assert failed_url == f"/console/visits/{visit.room}/video-failed/"
    assert alice.post(failed_url, {"why": "budget"}).status_code == 204
    events = accepted_case.events.filter(kind=CaseEvent.Kind.VIDEO)
    (note,) = [e for e in events if e.summary.startswith("Video failed")]
    assert "did not connect in time" in note.summary and note.detail["visit_id"] == visit.pk
    assert logged_in(personas.dave).post(failed_url, {"why": "budget"}).status_code == 409

    # ... and the form places the call on the same case, reserved to the same nurse.
    response = alice.post(form.group(1).decode(), {"reason": "video_failed", "nurse_number": "+15555550100"})
    assert response.status_code == 302
    call = OutboundCall.objects.get(case=accepted_case)
    assert (call.reason, call.nurse_id, call.case_id) == ("video_failed", personas.alice.pk, accepted_case.pk)
