"""`ConsoleConsumer` (/ws/console/) through `careline.asgi.application`, on the real Redis channel layer.

Transactional tests: `clinics.events.publish` sends after commit, so the data must really commit.
"""

from __future__ import annotations

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client, override_settings

from careline.asgi import application
from contactcenter.consumers import CLOSE_FORBIDDEN
from contactcenter.routing import websocket_urlpatterns
from triage.services import case_enqueue

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://testserver")


@database_sync_to_async
def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@database_sync_to_async
def enqueue(clinic, acuity: int = 3):
    return case_enqueue(clinic=clinic, callback_number="+15555550100", acuity=acuity)


async def connect_as(user, app=application, origin=ORIGIN) -> WebsocketCommunicator:
    headers = [origin, (b"cookie", await session_cookie(user))] if user else [origin]
    return WebsocketCommunicator(app, "/ws/console/", headers=headers)


async def test_nurse_receives_her_clinics_events_only(personas):
    communicator = await connect_as(personas.alice)
    connected, _ = await communicator.connect()
    assert connected
    try:
        south_case = await enqueue(personas.south)
        north_case = await enqueue(personas.north, acuity=2)

        message = await communicator.receive_json_from(timeout=5)
        assert message == {"event": "case.queued", "payload": {"case_id": north_case.pk, "acuity": 2}}
        assert south_case.pk != north_case.pk
        assert await communicator.receive_nothing(timeout=0.5), "South's events never reach North's console"
    finally:
        await communicator.disconnect()


async def test_other_clinics_nurse_does_not_receive_the_event(personas):
    carol = await connect_as(personas.carol)
    assert (await carol.connect())[0]
    try:
        await enqueue(personas.north)
        assert await carol.receive_nothing(timeout=1)
    finally:
        await carol.disconnect()


async def test_ping_is_answered_and_garbage_ignored(personas):
    communicator = await connect_as(personas.alice)
    assert (await communicator.connect())[0]
    try:
        await communicator.send_to(text_data="not json")
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=5) == {"event": "pong", "payload": {}}
    finally:
        await communicator.disconnect()


async def test_anonymous_is_rejected(personas):
    communicator = await connect_as(None)
    connected, code = await communicator.connect()
    assert not connected
    assert code == CLOSE_FORBIDDEN


async def test_user_of_no_clinic_is_rejected(personas, django_user_model):
    outsider = await database_sync_to_async(django_user_model.objects.create_user)("mallory", password="x" * 12)
    communicator = await connect_as(outsider)
    connected, code = await communicator.connect()
    assert not connected
    assert code == CLOSE_FORBIDDEN


async def test_bad_origin_is_rejected(personas):
    # careline.asgi builds its origin check from ALLOWED_HOSTS at import time, and the test settings allow
    # "*"; so build the same stack as careline.asgi under a production-like ALLOWED_HOSTS.
    with override_settings(ALLOWED_HOSTS=["careline.example"]):
        app = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
    bad = await connect_as(personas.alice, app=app, origin=(b"origin", b"https://evil.example"))
    connected, _ = await bad.connect()
    assert not connected
    good = await connect_as(personas.alice, app=app, origin=(b"origin", b"https://careline.example"))
    connected, _ = await good.connect()
    assert connected
    await good.disconnect()


def test_the_application_wraps_websockets_in_the_origin_check():
    from channels.security.websocket import OriginValidator

    assert isinstance(application.application_mapping["websocket"], OriginValidator)
