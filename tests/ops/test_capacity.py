"""Capacity planner arithmetic (ops.capacity) against hand-computed figures; the command and the admin page."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from ops import capacity


def test_plan_for_600_calls_an_hour_matches_the_hand_computation():
    p = capacity.plan(
        capacity.Inputs(peak_calls_per_hour=600, video_share=0.3, recording_share=0.5, calls_per_day=2000)
    )
    # Little's law: 600/h x 12 min = 120 cases in service; / 0.85 occupancy = 141.2 -> 142 nurses; x 1.5 tabs.
    assert p.value("cases in service at once") == pytest.approx(120)
    assert p.value("nurses on shift") == 142
    assert p.value("console WebSockets") == 213
    # 600 x 0.3 x 15 min / 60 = 45 video visits at once, 2 signaling sockets each: 213 + 90.
    assert p.value("video visits at once") == pytest.approx(45)
    assert p.value("WebSockets in all") == 303
    # 600/3600 x 12 webhooks = 2 req/s; 1/6 case/s x 6 events x 213 consoles = 213 req/s.
    assert p.value("IVR webhook requests/s") == pytest.approx(2.0)
    assert p.value("console re-fetch requests/s") == pytest.approx(213)
    # 215 req/s / (150 x 0.6) = 2.39 -> 3; 303 sockets / (1000 x 0.6) -> 1; at least 2.
    assert p.value("daphne processes for HTTP") == 3
    assert p.value("daphne processes for WebSockets") == 1
    assert p.value("daphne processes") == 3
    # TURN: 45 x 17.5 % = 7.875 relayed; x 1.5 Mbit/s x 2 directions = 23.625 Mbit/s; 2 servers minimum.
    assert p.value("relayed visits at once") == pytest.approx(7.875)
    assert p.value("TURN bandwidth") == pytest.approx(23.625)
    assert p.value("TURN servers (1 Gbit/s)") == 2
    # 2000 calls x 0.3 x 0.5 x 15 min = 4500 min x 60 s x 3 Mbit/s / 8 / 1000 = 101.25 GB/day.
    assert p.value("recording growth per day") == pytest.approx(101.25)
    assert p.value("recording growth per 30 days") == pytest.approx(3037.5)
    # 600/3600 x 5 + 10/60 = 1 task/s; / (10 x 0.6) -> 1, at least 2.
    assert p.value("tasks/s") == pytest.approx(1.0)
    assert p.value("worker processes") == 2
    assert all(row.assumption for row in p.rows)


def test_turn_servers_follow_300_relayed_visits_per_gbit_link():
    p = capacity.plan(capacity.Inputs(peak_calls_per_hour=50_000, video_share=0.3))
    # 50,000 x 0.3 x 15/60 = 3750 visits; x 0.175 = 656.25 relayed; / 300 -> 3 servers.
    assert p.value("relayed visits at once") == pytest.approx(656.25)
    assert p.value("TURN servers (1 Gbit/s)") == 3


def test_measured_figures_replace_defaults_and_are_named(tmp_path):
    path = tmp_path / "figures.json"
    path.write_text(json.dumps({"daphne_http_requests_per_second": 50, "unknown": 3, "celery_tasks_per_second": "x"}))
    figures = capacity.load_figures(path)
    assert figures["daphne_http_requests_per_second"] == (
        50.0,
        "measured: figures.json daphne_http_requests_per_second",
    )
    assert figures["celery_tasks_per_second"] == capacity.FIGURE_DEFAULTS["celery_tasks_per_second"]
    p = capacity.plan(capacity.Inputs(peak_calls_per_hour=600, video_share=0.3), figures)
    assert p.value("daphne processes for HTTP") == 8  # 215 / (50 x 0.6) = 7.2 -> 8
    assert "measured: figures.json" in p.as_text()
    assert capacity.load_figures(tmp_path / "missing.json") == capacity.FIGURE_DEFAULTS


def test_invalid_inputs_are_refused():
    with pytest.raises(ValueError):
        capacity.plan(capacity.Inputs(peak_calls_per_hour=0))
    with pytest.raises(ValueError):
        capacity.plan(capacity.Inputs(peak_calls_per_hour=10, relay_share=1.5))


def test_command_prints_each_number_with_its_assumption(tmp_path):
    out = StringIO()
    call_command(
        "capacity_plan",
        "--peak-calls-per-hour",
        "600",
        "--video-share",
        "0.3",
        "--figures",
        str(tmp_path / "none"),
        stdout=out,
    )
    text = out.getvalue()
    turn = next(line for line in text.splitlines() if line.startswith("turn") and "TURN bandwidth" in line)
    assert "23.6" in turn and "1.5 Mbit/s per direction" in turn
    assert "daphne processes " in text and "at least 2" in text
    with pytest.raises(CommandError):
        call_command("capacity_plan", "--peak-calls-per-hour", "-1", stdout=StringIO())


@pytest.mark.django_db
def test_admin_page_is_for_clinic_admins(personas, clinic_admin, client: Client, tmp_path):
    with override_settings(CAPACITY_FIGURES_PATH=str(tmp_path / "none.json")):
        client.force_login(clinic_admin)
        response = client.get("/console/admin/capacity/", {"peak_calls_per_hour": "600", "video_share": "0.3"})
        assert response.status_code == 200
        html = response.content.decode()
        assert 'data-quantity="TURN servers (1 Gbit/s)"' in html and "~300 relayed visits per 1 Gbit/s link" in html
        assert client.get("/console/admin/capacity/", {"video_share": "2"}).status_code == 400
        client.force_login(personas.bob)  # a supervisor
        assert client.get("/console/admin/capacity/").status_code == 403


def test_the_benchmarks_own_figures_file_feeds_the_claim_rate(tmp_path):
    """bench/figures.py writes one section per benchmark; the planner reads the measured claim rate from it."""
    path = tmp_path / "figures.json"
    path.write_text('{"claim": {"project_claims_per_second": 143.4, "ratio": 0.31}, "fanout": {"consoles": 1000}}')
    figures = capacity.load_figures(path)
    assert figures["claims_per_second"] == (143.4, "measured: figures.json claim.project_claims_per_second")
    assert figures["celery_tasks_per_second"] == capacity.FIGURE_DEFAULTS["celery_tasks_per_second"]
