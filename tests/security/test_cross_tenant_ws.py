"""Cross-tenant suite, WebSocket part: carol (South) on /ws/console/ while North's cases change (issue 6).

The console consumer accepts one client message type, `ping` (answered `pong`); everything else is ignored.
Carol sends `ping` and every other shape a client could try with North's ids — including the name of the
consumer's group handler (`console.event`) and a request to join North's group — while North's cases are
enqueued and claimed. She receives only `pong`: no North event, no North id, no North data; her socket never
joins North's groups. Control from the same set-up: alice's socket does receive North's event.
"""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from clinics import events
from tests.contactcenter.test_consumers import connect_as
from triage.services import case_enqueue

pytestmark = pytest.mark.django_db(transaction=True)

NORTH_PATIENT = "Zebulon Canarywhistle"
NORTH_CALLBACK = "+15558675309"


@database_sync_to_async
def enqueue_north(clinic):
    return case_enqueue(clinic=clinic, callback_number=NORTH_CALLBACK, acuity=2, patient_display=NORTH_PATIENT)


def _messages(case_id: int, case_uuid: str, north_id: int) -> list[object]:
    return [
        {"type": "ping"},
        {"type": "ping", "case_id": case_id},
        {"type": "console.event", "event": "case.queued", "payload": {"case_id": case_id}},
        {"type": "console_event", "event": "case.queued"},
        {"type": "subscribe", "group": events.group_name(north_id)},
        {"type": "join", "clinic_id": north_id},
        {"type": "case.open", "case_id": case_id},
        {"type": "case.get", "case_uuid": case_uuid},
        {"type": "presence", "state": "available", "clinic_id": north_id},
        {"type": "websocket.disconnect"},
        ["ping"],
        "ping",
        None,
    ]


async def test_carol_receives_nothing_of_north_for_any_message(personas):
    alice = await connect_as(personas.alice)
    carol = await connect_as(personas.carol)
    assert (await alice.connect())[0] and (await carol.connect())[0]
    try:
        case = await enqueue_north(personas.north)
        alice_event = await alice.receive_json_from(timeout=5)
        assert alice_event["event"] == "case.queued" and alice_event["payload"]["case_id"] == case.pk  # control
        received: list[str] = []
        for message in _messages(case.pk, str(case.uuid), personas.north.pk):
            await carol.send_to(text_data=json.dumps(message))
            await enqueue_north(personas.north)  # North keeps changing while she probes
            while not await carol.receive_nothing(timeout=0.3):
                received.append(await carol.receive_from(timeout=1))
        # A malformed frame is ignored too.
        await carol.send_to(text_data="{not json")
        assert await carol.receive_nothing(timeout=0.3)
        assert received == [json.dumps({"event": "pong", "payload": {}})] * 2
        for text in received:
            assert NORTH_PATIENT not in text and NORTH_CALLBACK not in text and str(case.uuid) not in text
    finally:
        await carol.disconnect()
        await alice.disconnect()
