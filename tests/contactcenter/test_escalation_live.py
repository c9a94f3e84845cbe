"""Supervisor alerts and presence over the real console WebSocket (Redis channel layer), and the
dashboard page. Transactional: events are published after commit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.utils import timezone

from clinics.services import staff_create
from contactcenter.escalation import escalation_sweep_clinic
from contactcenter.models import AgentPresence
from tests.conftest import PASSWORD
from tests.contactcenter.test_consumers import connect_as
from triage.models import Case
from triage.services import case_enqueue

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def overdue_case(clinic, acuity=2, minutes_ago=20):
    case = case_enqueue(clinic=clinic, callback_number="+15555550100", acuity=acuity)
    Case.objects.filter(pk=case.pk).update(arrived_at=timezone.now() - timedelta(minutes=minutes_ago))
    return case


@database_sync_to_async
def sweep(clinic):
    return escalation_sweep_clinic(clinic=clinic)


@database_sync_to_async
def presence_of(user):
    return AgentPresence.objects.filter(user=user).values_list("state", "channels").first()


async def _drain(communicator):
    while not await communicator.receive_nothing(timeout=0.3):
        await communicator.receive_json_from()


async def test_supervisor_receives_case_escalated_and_nurse_does_not(personas):
    bob = await connect_as(personas.bob)
    alice = await connect_as(personas.alice)
    assert (await bob.connect())[0] and (await alice.connect())[0]
    try:
        case = await overdue_case(personas.north)
        await _drain(bob)
        await _drain(alice)
        assert (await sweep(personas.north))["escalated"] == 1

        received = []
        while not await bob.receive_nothing(timeout=1):
            received.append(await bob.receive_json_from())
        assert {"event": "case.escalated", "payload": {"case_id": case.pk, "acuity": 2, "reason": "past_target"}} in (
            received
        )
        assert await alice.receive_nothing(timeout=1), "the supervisor alert never reaches a nurse's socket"
    finally:
        await bob.disconnect()
        await alice.disconnect()


async def test_console_socket_drives_presence_and_supervisor_sees_it(personas):
    bob = await connect_as(personas.bob)
    assert (await bob.connect())[0]
    # Bob's own presence change first: wait for it (a fixed quiet period misses it on a loaded machine).
    own = await bob.receive_json_from(timeout=10)
    assert own == {"event": "presence.changed", "payload": {"user_id": personas.bob.pk, "state": "available"}}
    alice = await connect_as(personas.alice)
    try:
        assert (await alice.connect())[0]
        assert await presence_of(personas.alice) == (AgentPresence.State.AVAILABLE, 1)
        message = await bob.receive_json_from(timeout=5)
        assert message == {"event": "presence.changed", "payload": {"user_id": personas.alice.pk, "state": "available"}}
        await alice.send_json_to({"type": "ping"})
        assert await alice.receive_json_from(timeout=5) == {"event": "pong", "payload": {}}
    finally:
        await alice.disconnect()
    assert await presence_of(personas.alice) == (AgentPresence.State.OFFLINE, 0)
    await bob.disconnect()


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def test_nurse_queue_page_has_no_alert_banner_supervisor_page_has(personas):
    nurse_page = _login(personas.alice).get("/console/")
    supervisor_page = _login(personas.bob).get("/console/")
    assert b'id="alert-banner"' not in nurse_page.content and b'id="dashboard-link"' not in nurse_page.content
    assert b'id="alert-banner"' in supervisor_page.content and b'id="dashboard-link"' in supervisor_page.content
    assert b'id="presence-form"' in nurse_page.content


def test_presence_buttons_set_the_state(personas):
    client = _login(personas.alice)
    assert client.post("/console/presence/", {"state": "away"}).status_code == 302
    assert AgentPresence.objects.get(user=personas.alice).state == AgentPresence.State.AWAY
    client.post("/console/presence/", {"state": "offline"})  # not a button: refused, nothing changed
    assert AgentPresence.objects.get(user=personas.alice).state == AgentPresence.State.AWAY


def test_dashboard_figures_come_from_the_rows_and_only_supervisors_see_them(personas):
    now = timezone.now()
    north = personas.north

    def make(acuity, arrived_minutes_ago, reserved_after_minutes=None, **fields):
        case = case_enqueue(clinic=north, callback_number="+15555550100", acuity=acuity, **fields)
        arrived = now - timedelta(minutes=arrived_minutes_ago)
        values = {"arrived_at": arrived}
        if reserved_after_minutes is not None:
            values.update(state="closed", reserved_at=arrived + timedelta(minutes=reserved_after_minutes))
        Case.objects.filter(pk=case.pk).update(**values)
        return case

    make(2, 60, reserved_after_minutes=5)  # met (target 15 min)
    make(2, 90, reserved_after_minutes=30)  # missed
    make(2, 60 * 13, reserved_after_minutes=1)  # before the 12 h window: not counted
    make(3, 45)  # waiting past the 30 min target: missed
    make(3, 1)  # waiting within target: not counted yet
    callback = make(4, 90, contact_preference=Case.ContactPreference.CALLBACK)  # open callback past 60 min
    escalation_sweep_clinic(clinic=north)  # escalates the level-3 and level-4 cases past target
    case_enqueue(clinic=personas.south, callback_number="+15555550100", acuity=3)  # never on North's board
    AgentPresence.objects.create(user=personas.alice, clinic=north, state="available", since=now, channels=1)

    response = _login(personas.bob).get("/console/dashboard/")
    assert response.status_code == 200
    board = response.context["board"]
    levels = {row.acuity: row for row in board.levels}
    assert (levels[2].met, levels[2].missed, levels[2].compliance) == (1, 1, 0.5)
    assert (levels[3].waiting, levels[3].met, levels[3].missed) == (2, 0, 1)
    assert 44 * 60 <= levels[3].longest_wait_seconds <= 46 * 60 and levels[3].longest_over_target
    assert levels[4].waiting == 1 and board.waiting_total == 3
    assert [c.pk for c in board.callbacks_overdue] == [callback.pk]
    assert {c.acuity for c in board.breaches} == {3, 4}
    assert board.presence["available"] == ["Alice Nurse"] and board.presence["offline"] == ["Dave"]
    assert b"50 % (1/2)" in response.content
    partial = _login(personas.bob).get("/console/dashboard/panels/")
    assert partial.status_code == 200 and b'id="panel-callbacks"' in partial.content

    assert _login(personas.alice).get("/console/dashboard/").status_code == 403
    assert _login(personas.alice).get("/console/dashboard/panels/").status_code == 403
    south_supervisor = staff_create(clinic=personas.south, role="supervisor", username="sam", password=PASSWORD).user
    south_board = _login(south_supervisor).get("/console/dashboard/").context["board"]
    assert south_board.waiting_total == 1 and not south_board.breaches and not south_board.callbacks_overdue


def test_callback_attempt_through_the_api_and_the_console(personas):
    case = case_enqueue(
        clinic=personas.north,
        callback_number="+15555550100",
        acuity=4,
        contact_preference=Case.ContactPreference.CALLBACK,
    )
    client = _login(personas.alice)
    assert client.post("/console/next/").status_code == 302
    page = client.get(f"/console/cases/{case.pk}/")
    assert b'id="callback-attempts"' in page.content and b'value="no_answer"' in page.content
    response = client.post(f"/api/v1/cases/{case.pk}/callback-attempts/", {"result": "bogus"})
    assert response.status_code == 400
    response = client.post(f"/console/cases/{case.pk}/callback-attempt/", {"result": "no_answer"})
    assert response.status_code == 302 and response.url == "/console/"
    assert Case.objects.get(pk=case.pk).state == "queued"
    carol = _login(personas.carol)
    assert carol.post(f"/api/v1/cases/{case.pk}/callback-attempts/", {"result": "answered"}).status_code == 404
