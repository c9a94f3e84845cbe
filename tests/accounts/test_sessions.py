"""Session limits over HTTP (issue 6; HIPAA 164.312(a)(2)(iii)): idle 15 min, absolute 12 h, configurable;
background refreshes (htmx GETs) are not activity; expiry is audited and lands on the sign-in page."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from accounts.middleware import SESSION_ACTIVITY_KEY, SESSION_STARTED_KEY
from clinics.models import AuditEvent

pytestmark = pytest.mark.django_db


def _signed_in(user, *, started_ago: float, active_ago: float) -> Client:
    client = Client()
    client.force_login(user)
    session = client.session
    now = time.time()
    session[SESSION_STARTED_KEY] = now - started_ago
    session[SESSION_ACTIVITY_KEY] = now - active_ago
    session.save()
    return client


def test_defaults_are_15_minutes_idle_and_12_hours_absolute(settings):
    assert settings.SESSION_IDLE_TIMEOUT_SECONDS == 15 * 60
    assert settings.SESSION_ABSOLUTE_TIMEOUT_SECONDS == 12 * 3600


def test_a_session_idle_for_15_minutes_is_signed_out_and_audited(personas):
    fresh = _signed_in(personas.alice, started_ago=60, active_ago=14 * 60)
    assert fresh.get("/console/").status_code == 200
    idle = _signed_in(personas.alice, started_ago=60, active_ago=15 * 60 + 1)
    response = idle.get("/console/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?expired=idle"
    assert idle.get("/console/")["Location"].startswith("/accounts/login/")  # signed out, not just redirected
    assert b"session-expired" in idle.get(response["Location"]).content
    row = AuditEvent.objects.get(action="auth.session_expired")
    assert row.actor == personas.alice and row.reason == "idle"
    assert not AuditEvent.objects.filter(action="auth.logout").exists()


def test_a_session_older_than_12_hours_ends_however_active(personas):
    client = _signed_in(personas.alice, started_ago=12 * 3600 + 1, active_ago=1)
    response = client.get("/console/")
    assert response["Location"] == "/accounts/login/?expired=absolute"


def test_the_limits_are_configurable(personas, settings):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 60
    client = _signed_in(personas.alice, started_ago=120, active_ago=61)
    assert client.get("/console/")["Location"] == "/accounts/login/?expired=idle"


def test_the_api_answers_401_json_for_an_expired_session(personas):
    client = _signed_in(personas.alice, started_ago=60, active_ago=3600)
    response = client.get("/api/v1/cases/")
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_background_refreshes_are_not_activity_but_page_loads_are(personas):
    client = _signed_in(personas.alice, started_ago=600, active_ago=600)
    before = client.session[SESSION_ACTIVITY_KEY]
    assert client.get("/console/queue/", headers={"HX-Request": "true"}).status_code == 200
    assert client.session[SESSION_ACTIVITY_KEY] == before  # the 30 s queue poll keeps nobody signed in
    assert client.get("/console/").status_code == 200
    assert client.session[SESSION_ACTIVITY_KEY] > before + 590
