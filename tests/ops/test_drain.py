"""Drain sequence in one process (careline.drain): refused connects (4013), the reconnect notice and 4012 close
for console sockets, calls (policy "finish") kept until they end or the deadline, then the exit; and the
`manage.py drain` command. The whole sequence against a real daphne process is in test_topology.py."""

from __future__ import annotations

import asyncio
from io import StringIO

import pytest
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from django.test import override_settings

from careline import drain
from careline.asgi import application
from tests.contactcenter.test_consumers import connect_as

pytestmark = pytest.mark.django_db(transaction=True)


class CallConsumer(drain.DrainAware, AsyncJsonWebsocketConsumer):
    """Stands in for the video room consumer (built separately): a call that must be allowed to finish."""

    drain_policy = "finish"

    async def connect(self) -> None:
        await self.accept()


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the watcher's exit instead of signalling this test process."""
    calls: list[int] = []
    monkeypatch.setattr(drain.DrainWatcher, "exit", staticmethod(lambda: calls.append(1)))
    return calls


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_a_draining_node_refuses_new_console_sockets_with_4013(personas, node):
    await asyncio.to_thread(drain.drain_start, node=node, timeout_seconds=30)
    communicator = await connect_as(personas.alice)
    connected, _ = await communicator.connect()
    assert connected  # accepted, then closed at once: the browser sees code 4013, not a failed handshake
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4013}
    await communicator.wait()


async def test_drain_tells_consoles_to_reconnect_waits_for_calls_then_exits(personas, node, exits):
    console = await connect_as(personas.alice)
    assert (await console.connect())[0]
    call = WebsocketCommunicator(CallConsumer.as_asgi(), "/ws/call/")
    assert (await call.connect())[0]
    assert drain.DrainAware.sessions() == {"close": 1, "finish": 1}

    with override_settings(DRAIN_WATCHER=True, DRAIN_POLL_SECONDS=0.1):
        drain.DrainWatcher.ensure_started()
        try:
            await asyncio.to_thread(drain.drain_start, node=node, timeout_seconds=60)
            assert await console.receive_json_from(timeout=5) == {
                "event": "reconnect",
                "payload": {"reason": "draining"},
            }
            assert await console.receive_output(timeout=5) == {"type": "websocket.close", "code": 4012}
            await asyncio.sleep(0.5)
            assert exits == []  # the call is still open: the node waits
            assert await call.receive_nothing(timeout=0.2)
            published = await asyncio.to_thread(drain.open_sessions, node)
            assert published == {"close": 0, "finish": 1}
            await call.disconnect()  # the call ends
            await _wait_for(lambda: exits == [1])
            assert await asyncio.to_thread(drain.open_sessions, node) == {"close": 0, "finish": 0}
        finally:
            task = drain.DrainWatcher._task
            if task is not None:
                task.cancel()
    await console.wait()


async def test_drain_deadline_ends_calls_that_do_not_finish(personas, node, exits):
    call = WebsocketCommunicator(CallConsumer.as_asgi(), "/ws/call/")
    assert (await call.connect())[0]
    with override_settings(DRAIN_WATCHER=True, DRAIN_POLL_SECONDS=0.1):
        drain.DrainWatcher.ensure_started()
        try:
            await asyncio.to_thread(drain.drain_start, node=node, timeout_seconds=1)
            await _wait_for(lambda: exits == [1])
            assert await call.receive_json_from(timeout=5) == {"event": "reconnect", "payload": {"reason": "draining"}}
            assert await call.receive_output(timeout=5) == {"type": "websocket.close", "code": 4012}
        finally:
            task = drain.DrainWatcher._task
            if task is not None:
                task.cancel()


def test_refuse_if_draining_answers_503_with_retry_after(node):
    assert drain.refuse_if_draining() is None
    drain.drain_start(node=node, timeout_seconds=5)
    response = drain.refuse_if_draining()
    assert response is not None and response.status_code == 503 and response["Retry-After"] == "1"


def test_drain_command_sets_and_cancels_the_flag(node):
    out = StringIO()
    call_command("drain", "--node", node, "--timeout", "30", stdout=out)
    assert "draining" in out.getvalue()
    assert drain.is_draining(node)
    first = drain.drain_deadline(node)
    call_command("drain", "--node", node, "--timeout", "300", stdout=StringIO())
    assert drain.drain_deadline(node) == first  # idempotent: the first deadline holds
    call_command("drain", "--node", node, "--cancel", stdout=StringIO())
    assert not drain.is_draining(node)


def test_asgi_http_is_wrapped_by_the_watcher_starter():
    assert isinstance(application.application_mapping["http"], drain.DrainWatcherMiddleware)


async def test_a_draining_node_refuses_new_visit_sockets_and_new_visits(personas, node):
    """The video room consumer and the "start a visit" view take part in the drain (policy "finish")."""
    from contactcenter.visit_consumers import VisitConsumer

    assert VisitConsumer.drain_policy == "finish"
    await asyncio.to_thread(drain.drain_start, node=node, timeout_seconds=30)
    communicator = WebsocketCommunicator(application, "/ws/visit/6f1c8a52-5d2e-4a39-9a43-3c5e2b0e8f10/")
    communicator.scope["headers"] = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    connected, _ = await communicator.connect()
    assert connected
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4013}
    await communicator.wait()

    def start_visit() -> tuple[int, str]:
        from django.test import Client

        client = Client()
        client.force_login(personas.alice)
        response = client.post("/console/cases/999999/video/")
        return response.status_code, response.get("Retry-After", "")

    assert await asyncio.to_thread(start_visit) == (503, "1")
