"""Call-setup metrics wired where the facts arrive (issue 7): the video visit socket's `ice` and `stats`
reports, the nurse's "video failed" report, and the "Call patient" Twilio webhooks. Each visit's or call's
setup counts exactly once (Prometheus counter and the clinic's SLI event, `careline.sli`) whatever the
duplicates, and the call-setup SLO (`ops.services`) then has data: it opens and clears a breach.

Real Redis channel layer and cache, real PostgreSQL under row-level security, signed Twilio webhooks
posted through Django's test client; nothing of the code under test is replaced."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from careline import sli
from contactcenter import services
from contactcenter.models import CallSession, VideoVisit
from ivr.models import OutboundCall, OutboundMessage
from ops import services as ops_services
from ops.models import SloObjective
from tests.contactcenter.test_phone_fallback import ALICE_DESK, PATIENT, CallLegs
from tests.contactcenter.test_visit_consumer import cookie_of, join

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counters(slug: str = "north") -> dict[str, float]:
    """The call-setup metrics of one clinic (and the clients' histograms), now."""
    return {
        "video_ok": sample("careline_call_setup_total", clinic=slug, kind="video", result="success"),
        "video_failed": sample("careline_call_setup_total", clinic=slug, kind="video", result="failure"),
        "voice_ok": sample("careline_call_setup_total", clinic=slug, kind="voice", result="success"),
        "voice_failed": sample("careline_call_setup_total", clinic=slug, kind="voice", result="failure"),
        "ice_failures": sample("careline_video_ice_failures_total", clinic=slug),
        "relay": sample("careline_video_connections_total", clinic=slug, path="relay"),
        "direct": sample("careline_video_connections_total", clinic=slug, path="direct"),
        "rtt_count": sample("careline_client_rtt_seconds_count", kind="video"),
        "rtt_sum": sample("careline_client_rtt_seconds_sum", kind="video"),
        "jitter_sum": sample("careline_client_jitter_seconds_sum", kind="video"),
        "loss_sum": sample("careline_client_packet_loss_ratio_sum", kind="video"),
    }


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before[k], 6) for k in after if round(after[k] - before[k], 6)}


def sli_events(clinic_id: int) -> tuple[int, int]:
    return sli.ratio(clinic_id=clinic_id, name=sli.CALL_SETUP, window_minutes=60)


def _new_visit(nurse: Client, case_id: int, *, redeem: bool = True) -> tuple[VideoVisit, Client]:
    """The nurse starts a video visit of the case (HTTP); the patient's browser redeems the SMS link."""
    assert nurse.post(f"/console/cases/{case_id}/video/").status_code in (200, 302)
    message = OutboundMessage.objects.filter(case_id=case_id, body__isnull=False).order_by("-pk")
    body = next(m.body for m in message if "/visit/join/" in m.body)
    patient = Client()
    if redeem:
        assert patient.post(re.search(r"(/visit/join/[^/\s]+/)", body).group(1)).status_code == 302
    return VideoVisit.objects.filter(case_id=case_id).order_by("-pk").first(), patient


@database_sync_to_async
def accepted_case(personas: Any, make_case: Any) -> tuple[int, Client]:
    """A North case claimed and accepted by alice (her signed-in client)."""
    case = make_case(personas.north, acuity=3, callback_number=PATIENT)
    services.claim_next(user=personas.alice)
    services.accept(user=personas.alice, case_id=case.pk)
    nurse = Client()
    nurse.force_login(personas.alice)
    return case.pk, nurse


async def test_video_setup_ice_failure_media_path_and_client_stats_count_once(personas, make_case):
    case_id, nurse_client = await accepted_case(personas, make_case)
    visit, patient_client = await database_sync_to_async(_new_visit)(nurse_client, case_id)
    before, sli_before = counters(), sli_events(personas.north.pk)
    nurse = await join(visit, cookie_of(nurse_client))
    patient = await join(visit, cookie_of(patient_client))
    try:
        assert (await nurse.receive_json_from(timeout=10))["type"] == "welcome"
        assert (await patient.receive_json_from(timeout=10))["type"] == "welcome"
        for state in ("checking", "disconnected"):  # nothing decided yet
            await patient.send_json_to({"type": "ice", "pc": "p1", "state": state})
        await patient.send_json_to({"type": "ping"})
        assert await patient.receive_json_from(timeout=10) == {"type": "pong"}
        assert delta(before, counters()) == {}

        # Bad input: a clear error to the sender only, nothing counted, the socket stays up.
        await patient.send_json_to({"type": "ice", "pc": "p1", "state": "bogus"})
        error = await patient.receive_json_from(timeout=10)
        assert error["type"] == "error" and error["for"] == "ice" and "state must be one of" in error["error"]
        await patient.send_json_to({"type": "ice", "pc": "p1", "state": "connected", "candidate_type": "turn"})
        error = await patient.receive_json_from(timeout=10)
        assert error["for"] == "ice" and "candidate_type must be" in error["error"]
        await patient.send_json_to({"type": "ice", "pc": "p1", "state": ["connected"]})
        assert "state must be one of" in (await patient.receive_json_from(timeout=10))["error"]
        assert await nurse.receive_nothing(timeout=0.5)
        assert delta(before, counters()) == {}

        # Both legs connect (the patient through TURN), each reports twice; the patient's page reloads and
        # connects again; the nurse's page also reports decoded frames: one setup, one path per leg.
        await patient.send_json_to({"type": "ice", "pc": "p1", "state": "connected", "candidate_type": "relay"})
        await patient.send_json_to({"type": "ice", "pc": "p1", "state": "connected", "candidate_type": "relay"})
        await nurse.send_json_to({"type": "ice", "pc": "n1", "state": "completed", "candidate_type": "host"})
        await nurse.send_json_to({"type": "ice", "pc": "n1", "state": "connected", "candidate_type": "srflx"})
        await patient.disconnect()
        patient = await join(visit, cookie_of(patient_client))  # reload: a new page
        assert (await patient.receive_json_from(timeout=10))["type"] == "welcome"
        await patient.send_json_to({"type": "ice", "pc": "p2", "state": "connected", "candidate_type": "relay"})
        report = {"rtt_ms": 80.0, "jitter_ms": 4.0, "packet_loss_pct": 2.0, "frames_decoded": 300}
        await nurse.send_json_to({"type": "stats", "pc": "n1", **report, "candidate_type": "host"})
        # ICE fails on both legs (and is restarted by the pages): one ICE failure for the visit.
        await nurse.send_json_to({"type": "ice", "pc": "n1", "state": "failed"})
        await patient.send_json_to({"type": "ice", "pc": "p2", "state": "failed"})
        for ws in (nurse, patient):  # every report above has been handled once the socket answers
            await ws.send_json_to({"type": "ping"})
            while (await ws.receive_json_from(timeout=10)) != {"type": "pong"}:
                pass
    finally:
        await nurse.disconnect()
        await patient.disconnect()

    changed = delta(before, counters())
    assert changed == {
        "video_ok": 1,
        "ice_failures": 1,
        "relay": 1,
        "direct": 1,
        "rtt_count": 1,
        "rtt_sum": 0.08,
        "jitter_sum": 0.004,
        "loss_sum": 0.02,
    }
    good, total = sli_events(personas.north.pk)
    assert (good - sli_before[0], total - sli_before[1]) == (1, 1)
    session = await database_sync_to_async(CallSession.objects.get)(visit_id=visit.pk)
    assert (session.setup_result, session.nurse_media_path, session.patient_media_path) == ("success", "host", "relay")
    assert session.ice_failed_at is not None and session.setup_decided_at is not None


def _voice_call(nurse: Client, case_id: int) -> CallLegs:
    assert nurse.post(f"/console/cases/{case_id}/call/", {"nurse_number": ALICE_DESK}).status_code == 302
    return CallLegs(Client(), OutboundCall.objects.filter(case_id=case_id).order_by("-pk").first())


def test_voice_setup_counts_once_per_call_with_duplicate_callbacks(personas, make_case):
    case = make_case(personas.north, acuity=3, callback_number=PATIENT)
    services.claim_next(user=personas.alice)
    services.accept(user=personas.alice, case_id=case.pk)
    nurse = Client()
    nurse.force_login(personas.alice)
    before, sli_before = counters(), sli_events(personas.north.pk)

    answered = _voice_call(nurse, case.pk)  # bridged: the patient's leg answered, then the call completed
    answered.connect()
    assert answered.patient_answered().status_code == 204
    assert answered.patient_answered().status_code == 204  # Twilio's retry
    assert answered.dial_result("completed", duration="60").status_code == 200
    assert answered.dial_result("completed", duration="60").status_code == 200
    assert delta(before, counters()) == {"voice_ok": 1}

    missed = _voice_call(nurse, case.pk)  # the patient did not answer
    missed.connect()
    for _ in range(3):
        assert missed.dial_result("no-answer").status_code == 200
    assert delta(before, counters()) == {"voice_ok": 1, "voice_failed": 1}

    unreached = _voice_call(nurse, case.pk)  # the nurse's own phone did not answer: no call was set up
    assert unreached.nurse_status("busy").status_code == 204
    assert unreached.nurse_status("busy").status_code == 204
    assert unreached.nurse_status("completed").status_code == 204
    assert delta(before, counters()) == {"voice_ok": 1, "voice_failed": 2}
    good, total = sli_events(personas.north.pk)
    assert (good - sli_before[0], total - sli_before[1]) == (1, 3)
    assert all(c.handled.count("setup") == 1 for c in OutboundCall.objects.all())


async def test_call_setup_slo_gets_data_breaches_and_clears(personas, make_case):
    objective = await database_sync_to_async(SloObjective.objects.create)(
        clinic=personas.north, kind="call_setup_success", threshold=0.7, window_minutes=60, min_samples=1
    )
    evaluate = database_sync_to_async(ops_services.slo_evaluate)
    assert (await evaluate(objective_id=objective.pk)).value is None  # no call yet: no data

    case_id, nurse_client = await accepted_case(personas, make_case)
    visit, patient_client = await database_sync_to_async(_new_visit)(nurse_client, case_id)
    patient = await join(visit, cookie_of(patient_client))
    try:
        await patient.receive_json_from(timeout=10)
        await patient.send_json_to({"type": "ice", "pc": "p1", "state": "connected", "candidate_type": "host"})
        await patient.send_json_to({"type": "ping"})
        assert await patient.receive_json_from(timeout=10) == {"type": "pong"}
    finally:
        await patient.disconnect()
    result = await evaluate(objective_id=objective.pk)
    assert (result.value, result.met, result.transition) == (1.0, True, "")

    before = counters()

    def video_fails() -> tuple[int, int]:
        # A visit the patient never opened: the nurse's budget passes, but no setup was attempted.
        unopened, _ = _new_visit(nurse_client, case_id, redeem=False)
        url = f"/console/visits/{unopened.room}/video-failed/"
        assert nurse_client.post(url, {"why": "budget"}).status_code == 204
        # A visit the patient opened that never connected: one failure, however often the page reports it.
        failed, _ = _new_visit(nurse_client, case_id)
        url = f"/console/visits/{failed.room}/video-failed/"
        codes = [nurse_client.post(url, {"why": why}).status_code for why in ("budget", "budget", "failed")]
        assert codes == [204, 204, 204]
        return unopened.pk, failed.pk

    unopened_id, failed_id = await database_sync_to_async(video_fails)()
    assert delta(before, counters()) == {"video_failed": 1}
    result = await evaluate(objective_id=objective.pk)
    assert (result.value, result.transition) == (0.5, "breached")

    def phone_calls() -> None:  # the phone fallback then reaches the patient twice
        for _ in range(2):
            legs = _voice_call(nurse_client, case_id)
            legs.connect()
            legs.patient_answered()
            legs.dial_result("completed", duration="30")

    await database_sync_to_async(phone_calls)()
    assert delta(before, counters()) == {"video_failed": 1, "voice_ok": 2}
    result = await evaluate(objective_id=objective.pk)
    assert (result.value, result.met, result.transition) == (0.75, True, "cleared")
    sessions = database_sync_to_async(lambda: dict(CallSession.objects.values_list("visit_id", "setup_result")))
    results = await sessions()
    assert (results[visit.pk], results[unopened_id], results[failed_id]) == ("success", "", "failure")


def test_a_visit_ended_undecided_a_budget_after_the_patient_joined_is_a_failure(personas, make_case, settings):
    """The nurse's page never reported (closed): ending the visit decides. Ended within the budget of the
    patient's joining (or never joined), nothing is counted; a connected visit stays a success."""
    settings.VIDEO_CONNECT_BUDGET_SECONDS = 45
    case = make_case(personas.north, acuity=3, callback_number=PATIENT)
    services.claim_next(user=personas.alice)
    services.accept(user=personas.alice, case_id=case.pk)
    nurse = Client()
    nurse.force_login(personas.alice)
    before = counters()

    quick, _ = _new_visit(nurse, case.pk)  # ended 0 s after the patient joined: undecided
    assert nurse.post(f"/console/visits/{quick.room}/end/").status_code == 302
    stalled, _ = _new_visit(nurse, case.pk)
    VideoVisit.objects.filter(pk=stalled.pk).update(redeemed_at=timezone.now() - timedelta(seconds=46))
    assert nurse.post(f"/console/visits/{stalled.room}/end/").status_code == 302
    assert nurse.post(f"/console/visits/{stalled.room}/end/").status_code in (302, 409)  # again: no effect
    assert delta(before, counters()) == {"video_failed": 1}
    results = dict(CallSession.objects.values_list("visit_id", "setup_result"))
    assert (results[quick.pk], results[stalled.pk]) == ("", "failure")


def test_quality_reports_decide_a_setup_once_then_cost_no_decision_queries(personas, make_case):
    """A page whose `ice` reports never arrived: its first quality report with decoded frames decides the
    visit's setup and records its leg's path; the reports that follow (every 5 s) count nothing more and make
    no decision queries (the session already read says it is decided)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from clinics import db_scope
    from contactcenter import visits

    case = make_case(personas.north, acuity=3, callback_number=PATIENT)
    services.claim_next(user=personas.alice)
    services.accept(user=personas.alice, case_id=case.pk)
    nurse = Client()
    nurse.force_login(personas.alice)
    visit, _ = _new_visit(nurse, case.pk)
    before = counters()
    report = {"rtt_ms": 50.0, "frames_decoded": 120, "candidate_type": "relay"}
    with db_scope.clinic_scope(personas.north.pk):
        visits.quality_record(visit_id=visit.pk, role="patient", figures=report)
        assert delta(before, counters()) == {"video_ok": 1, "relay": 1, "rtt_count": 1, "rtt_sum": 0.05}
        with CaptureQueriesContext(connection) as later:
            visits.quality_record(visit_id=visit.pk, role="patient", figures={**report, "frames_decoded": 240})
    assert delta(before, counters()) == {"video_ok": 1, "relay": 1, "rtt_count": 2, "rtt_sum": 0.1}
    updates = [q["sql"] for q in later.captured_queries if q["sql"].startswith("UPDATE")]
    assert updates == [], updates  # the session read, the sample's insert: no decision UPDATEs
