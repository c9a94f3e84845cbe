"""Lockout after repeated failures (django-axes): AXES_FAILURE_LIMIT (5) wrong passwords or OTP codes per
username + IP lock that pair for AXES_COOLOFF_TIME (15 min); a clear page, 429 JSON on the API; audited."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from clinics.models import AuditEvent
from tests.conftest import PASSWORD, current_totp

pytestmark = pytest.mark.django_db


def _fail_passwords(times: int, username: str = "alice", ip: str = "10.0.0.5") -> None:
    for _ in range(times):
        Client(REMOTE_ADDR=ip).post("/accounts/login/", {"username": username, "password": "wrong-password"})


def test_five_wrong_passwords_lock_the_account_from_that_address_even_for_the_right_one(personas):
    _fail_passwords(4)
    assert (
        Client(REMOTE_ADDR="10.0.0.5").post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code
        == 302
    )
    Client(REMOTE_ADDR="10.0.0.5").post("/accounts/logout/")
    _fail_passwords(5)
    locked = Client(REMOTE_ADDR="10.0.0.5").post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429
    assert b"locked for 15" in locked.content and b"Sign-in temporarily locked" in locked.content
    assert int(locked["Retry-After"]) == 15 * 60
    # Another address (a colleague's workstation) is not locked out for alice.
    other = Client(REMOTE_ADDR="10.0.0.6").post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert other.status_code == 302
    assert AuditEvent.objects.filter(action="auth.lockout", object_id=str(personas.alice.pk)).count() >= 1
    assert AuditEvent.objects.filter(action="auth.failure", object_id=str(personas.alice.pk)).count() >= 5


def test_the_lockout_window_is_configurable(personas, settings):
    settings.AXES_FAILURE_LIMIT = 2
    _fail_passwords(2)
    locked = Client(REMOTE_ADDR="10.0.0.5").post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert locked.status_code == 429


def test_wrong_otp_codes_count_towards_the_lockout(personas):
    current_totp(personas.alice)
    client = Client(REMOTE_ADDR="10.0.0.7")
    assert client.post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code == 302
    replies = [client.post("/accounts/otp/", {"otp_token": "999999x"}).status_code for _ in range(5)]
    assert replies[-1] == 429 and replies[:-1] == [200] * 4
    # Locked out of the session too: the console is not reachable, and signing in again is refused.
    assert client.get("/console/").status_code == 302
    again = Client(REMOTE_ADDR="10.0.0.7").post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert again.status_code == 429
    assert AuditEvent.objects.filter(action="auth.lockout").exists()


def test_the_api_token_endpoint_answers_429_json_when_locked(personas):
    api = APIClient(REMOTE_ADDR="10.0.0.8")
    for _ in range(5):
        api.post("/api/v1/auth/token/", {"username": "alice", "password": "nope", "otp_token": "1"}, format="json")
    response = api.post(
        "/api/v1/auth/token/",
        {"username": "alice", "password": PASSWORD, "otp_token": current_totp(personas.alice)},
        format="json",
    )
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "locked_out" and "locked for 15 minutes" in body["detail"]
