"""Supervisor dashboard: the queue discipline panel (overload -> strict) and the staffing what-if."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from contactcenter.dashboard import DEFAULT_MIX, WHAT_IF_CALLS
from triage.models import Case, CaseState
from triage.services import case_enqueue
from triage.simulation import nurses_needed

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _closed_case(clinic, nurse, *, arrived_minutes_ago: float, handle_minutes: float) -> None:
    case = case_enqueue(clinic=clinic, callback_number="+15555550100", acuity=3)
    arrived = timezone.now() - timedelta(minutes=arrived_minutes_ago)
    accepted = arrived + timedelta(minutes=1)
    Case.objects.filter(pk=case.pk).update(
        arrived_at=arrived,
        state=CaseState.CLOSED,
        reserved_by=nurse,
        reserved_at=accepted,
        accepted_at=accepted,
        closed_at=accepted + timedelta(minutes=handle_minutes),
    )


def test_panel_says_accumulating_when_the_load_is_light(personas):
    page = _client(personas.bob).get("/console/dashboard/panels/")
    assert page.status_code == 200
    assert (
        'id="panel-discipline" aria-labelledby="discipline-heading" data-mode="accumulating"' in page.content.decode()
    )


def test_panel_says_strict_priority_under_overload(personas):
    # 12 arrivals in the last hour, 20 min handle time, one nurse counted: offered load 4.0 >= 0.95.
    for i in range(6):
        _closed_case(personas.north, personas.alice, arrived_minutes_ago=50 - i, handle_minutes=20)
    for _ in range(6):
        case_enqueue(clinic=personas.north, callback_number="+15555550101", acuity=4)
    html = _client(personas.bob).get("/console/dashboard/panels/").content.decode()
    assert 'data-mode="strict"' in html
    assert "Overload: strict priority." in html


def test_what_if_answers_what_the_simulator_answers_for_the_typed_rate(personas):
    response = _client(personas.bob).get("/console/dashboard/staffing/", {"arrivals_per_hour": "8"})
    assert response.status_code == 200
    html = response.content.decode()
    expected = nurses_needed(
        arrivals_per_hour=8.0,
        mix=DEFAULT_MIX,  # no arrivals yet: the bench's nurse-line mix
        mean_service_minutes=12.0,  # no closed cases yet: the default handle time
        kpi_targets={level: tuple(personas.north.kpi_target(level)) for level in DEFAULT_MIX},
        calls=WHAT_IF_CALLS,
    )
    assert f'data-nurses="{expected}"' in html
    assert expected >= 2  # 8/h x 12 min = 1.6 erlangs needs at least two nurses
    assert "(typed)" in html


@pytest.mark.parametrize("raw", ["lots", "0", "-3", "5000"])
def test_what_if_refuses_a_bad_rate_with_the_reason(personas, raw):
    response = _client(personas.bob).get("/console/dashboard/staffing/", {"arrivals_per_hour": raw})
    assert response.status_code == 400
    assert 'id="what-if-error"' in response.content.decode()


def test_what_if_is_for_supervisors_only(personas):
    assert _client(personas.alice).get("/console/dashboard/staffing/").status_code == 403
    anonymous = Client().get("/console/dashboard/staffing/")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


def test_what_if_learns_the_mix_from_enough_recent_arrivals(personas):
    for acuity in [2] * 10 + [5] * 10:  # 20 arrivals in the last 12 h: the clinic's own mix is used
        case_enqueue(clinic=personas.north, callback_number="+15555550102", acuity=acuity)
    html = _client(personas.bob).get("/console/dashboard/staffing/", {"arrivals_per_hour": "6"}).content.decode()
    assert "2: 50 %, 3: 0 %, 4: 0 %, 5: 50 %" in html
