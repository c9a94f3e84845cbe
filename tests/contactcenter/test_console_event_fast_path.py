"""The console feed's cheap paths (issue 7, bench/fanout.py and bench/claim.py), on the real Redis channel layer.

- `clinics.events.publish` encodes the browser's frame once (`text` in the group message) and the console
  consumer sends it as it is, instead of JSON-encoding the same payload once per console.
- Publishes from plain sync code (no event loop: worker threads, Celery tasks) run on one long-lived event
  loop per process instead of a new thread, loop and Redis connection per call.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from clinics import events
from tests.contactcenter.test_consumers import connect_as

CLINIC_ID = 987_654  # no such clinic: the group is this test's own


def _receive(layer: Any, channel: str) -> dict[str, Any]:
    async def receive() -> dict[str, Any]:
        message: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), timeout=30)
        return message

    received: dict[str, Any] = async_to_sync(receive)()
    return received


@pytest.mark.django_db(transaction=True)  # autocommit: `publish` sends at once (on_commit outside a transaction)
def test_publishes_from_plain_threads_share_one_loop_and_carry_the_encoded_frame() -> None:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    group = events.group_name(CLINIC_ID)
    async_to_sync(layer.group_add)(group, channel)
    try:
        before = threading.active_count()
        publisher_threads: list[threading.Thread | None] = []

        def publish(case_id: int) -> None:
            try:
                events.publish(CLINIC_ID, "case.queued", {"case_id": case_id, "acuity": 3})
                publisher_threads.append(events._PUBLISHER._thread)
            finally:
                connection.close()  # the worker thread's own database connection

        for case_id in (1, 2, 3):
            worker = threading.Thread(target=publish, args=(case_id,))
            worker.start()
            worker.join(timeout=60)
            assert not worker.is_alive()

        received = [_receive(layer, channel) for _ in range(3)]
        assert [m["payload"]["case_id"] for m in received] == [1, 2, 3]  # in publish order
        for message in received:
            assert message["type"] == events.CONSUMER_MESSAGE_TYPE
            assert json.loads(message["text"]) == {"event": "case.queued", "payload": message["payload"]}
        # One publisher thread for the three publishes (the old path started a thread and a loop per call).
        assert len(publisher_threads) == 3 and publisher_threads[0] is not None
        assert all(thread is publisher_threads[0] for thread in publisher_threads)
        assert publisher_threads[0].is_alive()
        assert threading.active_count() <= before + 1
    finally:
        async_to_sync(layer.group_discard)(group, channel)


@pytest.mark.django_db(transaction=True)
async def test_console_sends_the_published_frame_as_encoded(personas: Any) -> None:
    communicator = await connect_as(personas.alice)
    assert (await communicator.connect())[0]
    layer = get_channel_layer()
    group = events.group_name(personas.north.pk)
    try:
        # A frame that differs from event/payload shows which one the consumer sent.
        frame = '{"event": "case.queued", "payload": {"case_id": 2, "acuity": 1}}'
        await layer.group_send(
            group,
            {"type": events.CONSUMER_MESSAGE_TYPE, "event": "case.queued", "payload": {"case_id": 1}, "text": frame},
        )
        assert await communicator.receive_from(timeout=10) == frame
        # Without `text` (an older publisher during a rolling deploy) the consumer encodes event and payload.
        await layer.group_send(
            group, {"type": events.CONSUMER_MESSAGE_TYPE, "event": "case.closed", "payload": {"case_id": 3}}
        )
        assert await communicator.receive_json_from(timeout=10) == {"event": "case.closed", "payload": {"case_id": 3}}
    finally:
        await communicator.disconnect()
