"""WebSockets (issue 6): only OTP-verified sessions; closed within seconds on logout, deactivation and expiry
(across processes: the real Redis channel layer); 64 KiB frame limit; per-user rate limit shared by sockets."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from careline.asgi import application
from clinics.models import AuditEvent, StaffMember
from tests.conftest import PASSWORD, current_totp

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


def _cookie(client: Client) -> bytes:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@database_sync_to_async
def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def open_socket(client: Client) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/console/", headers=[ORIGIN, (b"cookie", _cookie(client))])
    connected, code = await communicator.connect(timeout=5)
    assert connected, code
    return communicator


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 5.0) -> int:
    """Wait for the server's close frame (skipping events and pongs); its code."""
    deadline = time.monotonic() + timeout
    while True:
        output = await communicator.receive_output(timeout=max(deadline - time.monotonic(), 0.01))
        if output["type"] == "websocket.close":
            return int(output["code"])


async def still_open(communicator: WebsocketCommunicator) -> bool:
    """Ping and wait for the pong (console events may arrive first); False if the socket closes instead."""
    await communicator.send_json_to({"type": "ping"})
    while True:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return False
        if '"pong"' in output.get("text", ""):
            return True


async def test_a_password_only_session_cannot_open_a_socket(personas):
    await database_sync_to_async(current_totp)(personas.alice)
    client = Client()
    login = database_sync_to_async(client.post)
    assert (await login("/accounts/login/", {"username": "alice", "password": PASSWORD})).status_code == 302
    communicator = WebsocketCommunicator(application, "/ws/console/", headers=[ORIGIN, (b"cookie", _cookie(client))])
    connected, code = await communicator.connect(timeout=5)
    assert not connected and code == 4403


async def test_logout_closes_the_users_sockets_within_seconds(personas):
    alice = await signed_in(personas.alice)
    first, second = await open_socket(alice), await open_socket(await signed_in(personas.alice))
    bob = await open_socket(await signed_in(personas.bob))
    started = time.monotonic()
    await database_sync_to_async(alice.post)("/accounts/logout/")
    assert await closed_with(first) == 4401
    assert await closed_with(second) == 4401  # every session of the user: the account signed out
    assert time.monotonic() - started < 5
    assert await still_open(bob), "other users' sockets stay open"
    await bob.disconnect()


async def test_disabling_the_account_closes_its_sockets(personas):
    socket = await open_socket(await signed_in(personas.alice))

    def disable() -> None:
        personas.alice.is_active = False
        personas.alice.save()

    await database_sync_to_async(disable)()
    assert await closed_with(socket) == 4401


async def test_removing_the_clinic_membership_closes_the_sockets(personas):
    socket = await open_socket(await signed_in(personas.dave))
    await database_sync_to_async(lambda: StaffMember.objects.filter(user=personas.dave).delete())()
    assert await closed_with(socket) == 4401


async def test_an_idle_session_expires_on_the_socket_even_with_keepalive_pings(personas, settings):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 3
    socket = await open_socket(await signed_in(personas.alice))
    started = time.monotonic()
    code = None
    while code is None and time.monotonic() - started < 10:
        await socket.send_json_to({"type": "ping"})  # the console's keepalive is not activity
        output = await socket.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            code = output["code"]
        await asyncio.sleep(0.3)
    assert code == 4401
    assert 2.5 <= time.monotonic() - started < 8
    expired = await database_sync_to_async(lambda: list(AuditEvent.objects.filter(action="auth.session_expired")))()
    assert len(expired) == 1 and expired[0].actor_id == personas.alice.pk and "idle" in expired[0].reason


async def test_an_expired_session_cannot_open_a_socket(personas, settings):
    client = await signed_in(personas.alice)
    settings.SESSION_ABSOLUTE_TIMEOUT_SECONDS = 0
    communicator = WebsocketCommunicator(application, "/ws/console/", headers=[ORIGIN, (b"cookie", _cookie(client))])
    connected, code = await communicator.connect(timeout=5)
    assert not connected and code == 4401


async def test_a_frame_over_64_kib_closes_with_1009_and_is_audited(personas):
    socket = await open_socket(await signed_in(personas.alice))
    await socket.send_to(text_data='{"type": "ping", "pad": "' + "x" * (64 * 1024 - 40) + '"}')  # under: fine
    assert (await socket.receive_json_from(timeout=5))["event"] == "pong"
    await socket.send_to(text_data="x" * (64 * 1024 + 1))
    assert await closed_with(socket) == 1009
    row = await database_sync_to_async(lambda: AuditEvent.objects.get(action="ws.frame_too_large"))()
    assert row.actor_id == personas.alice.pk and "65537 bytes" in row.reason


async def test_the_rate_limit_is_per_user_across_sockets(personas, settings):
    settings.WS_RATE_BURST = 4
    settings.WS_RATE_PER_SECOND = 0.01
    one = await open_socket(await signed_in(personas.alice))
    two = await open_socket(await signed_in(personas.alice))
    bob = await open_socket(await signed_in(personas.bob))
    for socket in (one, one, two, two):
        await socket.send_json_to({"type": "ping"})
        assert (await socket.receive_json_from(timeout=5))["event"] == "pong"
    await two.send_json_to({"type": "ping"})  # alice's fifth message, on either socket
    assert await closed_with(two) == 1008
    assert await still_open(bob)  # bob has his own bucket
    row = await database_sync_to_async(lambda: AuditEvent.objects.get(action="ws.rate_limited"))()
    assert row.actor_id == personas.alice.pk
    for socket in (one, bob):
        await socket.disconnect()
