"""Nurse presence at the console (`contactcenter.AgentPresence`): sockets, heartbeats, status buttons, sweep.

The console consumer calls `presence_connect` / `presence_heartbeat` / `presence_disconnect`; the status
buttons in the console header call `presence_set`. `presence_sweep` (Celery beat) sets `offline` every user
whose sockets have been silent for `PRESENCE_OFFLINE_SECONDS` (a crashed daphne never sends disconnects).
Every state change publishes `presence.changed` (`{"user_id", "state"}`) to the clinic's consoles.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from clinics import events
from clinics.selectors import staff_for_user
from contactcenter.models import AgentPresence

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# States a person may choose with the header buttons; `offline` follows from the sockets.
SETTABLE_STATES = frozenset(
    {AgentPresence.State.AVAILABLE, AgentPresence.State.BUSY, AgentPresence.State.WRAP_UP, AgentPresence.State.AWAY}
)
# States counted as "at the console, working the queue" (surge estimate, dashboard).
WORKING_STATES = (AgentPresence.State.AVAILABLE, AgentPresence.State.BUSY, AgentPresence.State.WRAP_UP)


class InvalidPresenceState(ValueError):
    """A state that cannot be chosen with the status buttons."""


def _locked_row(user: User, now: datetime) -> AgentPresence:
    staff = staff_for_user(user)
    AgentPresence.objects.get_or_create(user=user, defaults={"clinic": staff.clinic, "since": now})
    row = AgentPresence.objects.select_for_update().get(user=user)
    if row.clinic_id != staff.clinic_id:  # the user moved clinic: presence follows the membership
        row.clinic_id = staff.clinic_id
    return row


def _change(row: AgentPresence, state: str, now: datetime) -> None:
    if row.state != state:
        row.state = state
        row.since = now
        events.publish(row.clinic_id, "presence.changed", {"user_id": row.user_id, "state": state})


@transaction.atomic
def presence_connect(*, user: User, now: datetime | None = None) -> AgentPresence:
    """A console socket of `user` opened: one more channel, seen now; `offline` becomes `available`.

    Raises clinics.selectors.NotStaff.
    """
    now = now or timezone.now()
    row = _locked_row(user, now)
    row.channels += 1
    row.last_seen = now
    if row.state == AgentPresence.State.OFFLINE:
        _change(row, AgentPresence.State.AVAILABLE, now)
    row.save()
    return row


@transaction.atomic
def presence_heartbeat(*, user: User, now: datetime | None = None) -> AgentPresence:
    """A console socket of `user` is alive (`{"type": "ping"}`): seen now. A user the sweep had set
    `offline` while the socket was in fact alive comes back `available` with one channel."""
    now = now or timezone.now()
    row = _locked_row(user, now)
    row.last_seen = now
    if row.state == AgentPresence.State.OFFLINE:
        row.channels = max(row.channels, 1)
        _change(row, AgentPresence.State.AVAILABLE, now)
    row.save()
    return row


@transaction.atomic
def presence_disconnect(*, user: User, now: datetime | None = None) -> AgentPresence:
    """A console socket of `user` closed: one channel less; the last one closing means `offline`."""
    now = now or timezone.now()
    row = _locked_row(user, now)
    row.channels = max(row.channels - 1, 0)
    if row.channels == 0:
        _change(row, AgentPresence.State.OFFLINE, now)
    row.save()
    return row


@transaction.atomic
def presence_set(*, user: User, state: str, now: datetime | None = None) -> AgentPresence:
    """The user chose `state` (one of `SETTABLE_STATES`) with a console status button.

    Raises InvalidPresenceState for `offline` or an unknown state, NotStaff for non-staff.
    """
    if state not in SETTABLE_STATES:
        raise InvalidPresenceState(state)
    now = now or timezone.now()
    row = _locked_row(user, now)
    row.last_seen = now
    _change(row, state, now)
    row.save()
    return row


def presence_sweep(*, now: datetime | None = None) -> int:
    """Set `offline` (channels 0) every user not offline whose `last_seen` is older than
    `PRESENCE_OFFLINE_SECONDS` (or never seen); returns how many. Safe to repeat (SKIP LOCKED)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.PRESENCE_OFFLINE_SECONDS)
    count = 0
    with transaction.atomic():
        stale = AgentPresence.objects.select_for_update(skip_locked=True).exclude(state=AgentPresence.State.OFFLINE)
        for row in stale.filter(Q(last_seen__lt=cutoff) | Q(last_seen__isnull=True)):
            row.channels = 0
            _change(row, AgentPresence.State.OFFLINE, now)
            row.save()
            count += 1
    return count
