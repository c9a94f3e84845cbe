"""A console that stays idle longer than redis-py's default socket timeout (5 s since redis-py 8) keeps its
feed: the channel layer's blocking receive must not time out on the client side (django/channels_redis#422).
Real Redis channel layer, through `careline.asgi.application`.

The async body runs on its own event loop in a worker thread: the process-wide Redis channel layer keeps
state bound to the loop it last ran on, and a long-idle receive left on the main thread's test loop broke
later synchronous `async_to_sync` publishes there (the e2e tests)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.conf import settings

from tests.contactcenter.test_consumers import connect_as, enqueue

pytestmark = pytest.mark.django_db(transaction=True)


async def _idle_then_receive(personas) -> None:
    communicator = await connect_as(personas.alice)
    connected, _ = await communicator.connect()
    assert connected
    try:
        await asyncio.sleep(8)  # longer than redis-py 8's default 5 s read timeout and the 5 s BZPOPMIN
        case = await enqueue(personas.north, acuity=2)
        message = await communicator.receive_json_from(timeout=10)
        assert message == {"event": "case.queued", "payload": {"case_id": case.pk, "acuity": 2}}
    finally:
        await communicator.disconnect()


def test_console_idle_for_eight_seconds_still_receives_events(personas):
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_idle_then_receive(personas))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    if errors:
        raise errors[0]
