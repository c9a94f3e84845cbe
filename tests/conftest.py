"""Shared fixtures: personas (STYLE.md habit 9) and the real peers.

Personas: clinic North (+15550100100) with nurse `alice`, nurse `dave` and supervisor `bob`; clinic South
(+15550200200) with nurse `carol`. Real peers: `fhir_server` / `fhir` (sekmet-fhir), PostgreSQL and Redis
from the test settings.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pytest

pytest_plugins = ["tests.fixtures.fhir_server", "tests.fixtures.mllp", "tests.fixtures.coturn"]

NORTH_NUMBER = "+15550100100"
NORTH_ON_CALL = "+15550100199"
SOUTH_NUMBER = "+15550200200"
PASSWORD = "correct-horse-battery"
# RFC 6238 appendix B's published SHA-1 test secret ("12345678901234567890", hex): TEST-ONLY TOTP key of every
# persona's authenticator device, so tests (and the Playwright sign-in) can compute the current code.
TEST_TOTP_KEY = "3132333435363738393031323334353637383930"


def otp_device_for(user: Any) -> Any:
    """The user's confirmed TOTP device (created with TEST_TOTP_KEY if the user has none)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator app", key=TEST_TOTP_KEY, confirmed=True)
    return device


def current_totp(user: Any) -> str:
    """The current 6-digit code of the user's device (made by `otp_device_for`), usable now: the device's
    replay guard (last time step used) is reset, so two sign-ins within one 30 s step both work in tests."""
    from django_otp.oath import TOTP

    device = otp_device_for(user)
    device.last_t = -1
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save(update_fields=["last_t", "throttling_failure_count", "throttling_failure_timestamp"])
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():06d}"


@pytest.fixture(autouse=True)
def _otp_verified_test_logins(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Client.login()` / `Client.force_login()` (and DRF's APIClient, a subclass) sign in *with* the second
    factor: after Django's own login the session is marked OTP-verified with the user's device, as
    `/accounts/otp/` does after a correct code. Tests of the OTP step itself post the form instead."""
    from django.test.client import ClientMixin
    from django_otp import DEVICE_ID_SESSION_KEY

    original = ClientMixin._login

    def _login(self: Any, user: Any, backend: Any = None) -> None:
        original(self, user, backend)
        session = self.session
        session[DEVICE_ID_SESSION_KEY] = otp_device_for(user).persistent_id
        session.save()

    monkeypatch.setattr(ClientMixin, "_login", _login)


@dataclass
class Personas:
    north: Any
    south: Any
    alice: Any
    bob: Any
    carol: Any
    dave: Any


@pytest.fixture
def personas(db: None) -> Personas:
    """Clinics North and South with their staff (see module docstring). Password for all: PASSWORD; each has
    a confirmed TOTP device with TEST_TOTP_KEY (`current_totp(user)` gives the code)."""
    from clinics.services import clinic_create, staff_create

    north = clinic_create(slug="north", name="North Clinic", twilio_number=NORTH_NUMBER, on_call_number=NORTH_ON_CALL)
    south = clinic_create(slug="south", name="South Clinic", twilio_number=SOUTH_NUMBER, on_call_number="+15550200299")
    alice = staff_create(
        clinic=north, role="nurse", username="alice", password=PASSWORD, first_name="Alice", last_name="Nurse"
    ).user
    dave = staff_create(clinic=north, role="nurse", username="dave", password=PASSWORD, first_name="Dave").user
    bob = staff_create(clinic=north, role="supervisor", username="bob", password=PASSWORD, first_name="Bob").user
    carol = staff_create(clinic=south, role="nurse", username="carol", password=PASSWORD, first_name="Carol").user
    for user in (alice, dave, bob, carol):  # enrolled in MFA: the sign-in pages ask for a code, not enrolment
        otp_device_for(user)
    return Personas(north=north, south=south, alice=alice, bob=bob, carol=carol, dave=dave)


@pytest.fixture(scope="session", autouse=True)
def _close_stray_test_db_sessions(django_db_setup: None, django_db_blocker: Any) -> Any:
    """At the end of the run, end sessions that forked servers or worker threads left on the test database,
    so Django can drop it (otherwise: "database is being accessed by other users")."""
    yield
    from django.db import DatabaseError, connection

    from clinics import db_scope

    if connection.vendor != "postgresql":
        return
    # Best effort: a run with no database test never opened the test database, and has nothing to end.
    # As the login role: the application role (DATABASE_APP_ROLE) may not signal the other sessions.
    with (
        django_db_blocker.unblock(),
        contextlib.suppress(DatabaseError),
        db_scope.as_owner(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Any:
    """Each test gets a channel layer instance of its own.

    pytest-asyncio gives every test a new event loop, but `channels.layers.channel_layers` caches one
    `RedisChannelLayer` per process, and its per-channel receive locks are `asyncio.Lock`s bound to the loop that
    first used them. A consumer of an earlier test that was still waiting in `receive()` when its loop ended leaves
    such a lock held, and a later test's consumer then fails with "Lock ... is bound to a different event loop".
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
