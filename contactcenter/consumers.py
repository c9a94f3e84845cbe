"""The console's live feed: one WebSocket per open console page, at /ws/console/.

A thin adapter (STYLE habit 3). On connect it authenticates from the session (AuthMiddlewareStack, in
`careline.asgi`), looks up the user's clinic and joins that clinic's group
(`clinics.events.group_name(clinic_id)`); anonymous and non-staff users are refused at the handshake
(close code 4403 -> HTTP 403). Every `console.event` group message (sent only by `clinics.events.publish`)
is forwarded to the browser as JSON `{"event": "<type>", "payload": {...}}` (types and payloads are
documented in `clinics.events`; payloads carry ids, no PHI). The browser then re-fetches what it shows
from the server: the feed says *that* something changed, never *what the page should now hold*.

Supervisors and clinic admins also join `clinics.events.supervisor_group_name(clinic_id)`, which carries the
supervisor-only alerts (`case.escalated`, `surge.started`); nurses' sockets never receive them.

Draining (`careline.drain.DrainAware`): a node being drained refuses new sockets (close 4013) and tells open
ones `{"event": "reconnect", "payload": {"reason": "draining"}}` before closing them (4012); the console JS
reconnects through the proxy to another node.

Presence (`contactcenter.presence`): connect counts one more console channel for the user, disconnect one
less (the last one closing means offline). The only message a client may send is `{"type": "ping"}` (the
console sends one every 20 s), which is the presence heartbeat and is answered with
`{"event": "pong", "payload": {}}` (lets a page detect a half-open connection); anything else is ignored.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from careline.drain import DrainAware
from careline.ws import GuardedConsumerMixin, off_sync_thread
from clinics import db_scope, events, roles
from clinics.selectors import NotStaff, staff_for_user
from contactcenter import presence

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

# Private-use close code (4000-4999): 4403 = "forbidden", mirroring HTTP 403.
CLOSE_FORBIDDEN = 4403


@off_sync_thread
def _membership(user: User | AnonymousUser | None) -> tuple[int, bool] | None:
    """(clinic id, whether the user holds `clinics.supervise_clinic`) of a staff user, None for anyone else."""
    if user is None:
        return None
    try:
        staff = staff_for_user(user)
    except NotStaff:
        return None
    return staff.clinic_id, user.has_perm(roles.SUPERVISE)


@off_sync_thread
def _presence(action: str, user: User, clinic_id: int) -> None:
    """Presence bookkeeping for one socket (`connect`, `heartbeat`, `disconnect`); never breaks the feed. Runs
    in the socket's clinic scope (PostgreSQL row-level security, `clinics.db_scope`), like a staff request."""
    with contextlib.suppress(NotStaff), db_scope.clinic_scope(clinic_id):  # NotStaff: membership removed meanwhile
        {
            "connect": presence.presence_connect,
            "heartbeat": presence.presence_heartbeat,
            "disconnect": presence.presence_disconnect,
        }[action](user=user)


class ConsoleConsumer(GuardedConsumerMixin, DrainAware, AsyncJsonWebsocketConsumer):
    """Forwards a clinic's console events to one nurse's (or supervisor's) browser.

    `GuardedConsumerMixin` (careline.ws) first: OTP-verified unexpired session, per-user group (closed on
    logout, deactivation, expiry), 64 KiB frames, per-user rate limit. Drain-aware (`careline.drain`, policy
    "close"): refused with close code 4013 while its node drains; when the drain starts, open consoles get
    `{"event": "reconnect"}` and a 4012 close, and reconnect elsewhere."""

    groups_joined: tuple[str, ...] = ()
    clinic_id: int = 0

    async def connect(self) -> None:
        if not await self.guard_connect():
            return
        membership = await _membership(self.scope.get("user"))
        if membership is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        clinic_id, supervises = membership
        self.clinic_id = clinic_id
        groups = [events.group_name(clinic_id)]
        if supervises:  # supervisor-only events (alerts): never sent to nurses' sockets
            groups.append(events.supervisor_group_name(clinic_id))
        self.groups_joined = tuple(groups)
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        # Presence before the handshake completes: once the browser sees the socket open the nurse is counted
        # (the write runs on a worker thread, `off_sync_thread`, so after `accept()` it could trail the open).
        await _presence("connect", self.scope["user"], self.clinic_id)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.guard_disconnect()
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if self.groups_joined:
            await _presence("disconnect", self.scope["user"], self.clinic_id)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """Malformed JSON from a client is ignored, not a consumer crash."""
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await _presence("heartbeat", self.scope["user"], self.clinic_id)
            await self.send_json({"event": "pong", "payload": {}})

    async def console_event(self, message: dict[str, Any]) -> None:
        """Group message `console.event` (from `clinics.events.publish`) -> `{"event", "payload"}`.

        Sends the frame `publish` encoded once (`text`) as it is; a message without one (or with anything but
        a string there) is encoded here from `event` and `payload`. No database or permission work per
        message: membership was checked at connect, and the groups joined are the permission."""
        text = message.get("text")
        if isinstance(text, str):
            await self.send(text_data=text)
        else:
            await self.send_json({"event": message["event"], "payload": message.get("payload", {})})
