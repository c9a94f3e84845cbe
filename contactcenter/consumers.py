"""The console's live feed: one WebSocket per open console page, at /ws/console/.

A thin adapter (STYLE habit 3). On connect it authenticates from the session (AuthMiddlewareStack, in
`careline.asgi`), looks up the user's clinic and joins that clinic's group
(`clinics.events.group_name(clinic_id)`); anonymous and non-staff users are refused at the handshake
(close code 4403 -> HTTP 403). Every `console.event` group message (sent only by `clinics.events.publish`)
is forwarded to the browser as JSON `{"event": "<type>", "payload": {...}}` (types and payloads are
documented in `clinics.events`; payloads carry ids, no PHI). The browser then re-fetches what it shows
from the server: the feed says *that* something changed, never *what the page should now hold*.

The only message a client may send is `{"type": "ping"}`, answered with `{"event": "pong", "payload": {}}`
(lets a page detect a half-open connection); anything else is ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from clinics import events
from clinics.selectors import NotStaff, staff_for_user

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

# Private-use close code (4000-4999): 4403 = "forbidden", mirroring HTTP 403.
CLOSE_FORBIDDEN = 4403


@database_sync_to_async  # type: ignore[untyped-decorator]
def _clinic_id_for(user: User | AnonymousUser | None) -> int | None:
    if user is None:
        return None
    try:
        return staff_for_user(user).clinic_id
    except NotStaff:
        return None


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    """Forwards a clinic's console events to one nurse's (or supervisor's) browser."""

    group: str | None = None

    async def connect(self) -> None:
        clinic_id = await _clinic_id_for(self.scope.get("user"))
        if clinic_id is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = events.group_name(clinic_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """Malformed JSON from a client is ignored, not a consumer crash."""
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"event": "pong", "payload": {}})

    async def console_event(self, message: dict[str, Any]) -> None:
        """Group message `console.event` (from `clinics.events.publish`) -> `{"event", "payload"}`."""
        await self.send_json({"event": message["event"], "payload": message.get("payload", {})})
