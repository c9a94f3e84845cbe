"""WebRTC signaling for one video visit: a WebSocket per participant page at /ws/visit/<room>/.

A thin relay (STYLE habit 3): it persists nothing but session facts (quality samples). On connect it asks
`contactcenter.visits.visit_participant` who this is: the visit's nurse (staff session, holds the case) or
the patient (the browser session that redeemed the join link); anyone else is refused at the handshake
(close 4403, audited). A newer socket of the same role supersedes the older one (close 4409: the page was
reloaded or opened in another tab), so a reload rejoins the same room without the other side acting.

Messages a page sends (JSON objects, anything else ignored):

| type     | fields                                  | relayed to the other participant as                 |
|----------|-----------------------------------------|-----------------------------------------------------|
| `hello`  | `pc` (the page's peer-connection id)    | `{"type": "peer", "state": "joined", "pc", "role"}` |
| `here`   | `pc`                                    | `{"type": "peer", "state": "here", "pc", "role"}`   |
| `signal` | `pc`, `description` or `candidate`      | `{"type": "signal", "pc", "description"/"candidate", "role"}` |
| `stats`  | quality figures (`QualitySample` units) | stored, then `{"type": "quality", "role", ...figures}` to both |
| `ice`    | `state`, `candidate_type` (see below)   | not relayed: call-setup metrics                     |
| `chat`   | `body` (<= 2000 characters)   | stored, then `{"type": "chat", "id", "role", "body", "at"}` to both |
| `ping`   | —                                       | answered `{"type": "pong"}` to the sender only      |

At most one `stats` per 2 s and 30 `chat` per minute per socket are kept (pages report every 5 s).
`ice`: `state` is the peer connection's `RTCIceConnectionState`, `candidate_type` (with `connected` /
`completed`) the local candidate type of the selected pair; it feeds the call setup, ICE failure and media
path metrics (`visits.video_ice_report`, once per visit or leg). A report repeating the socket's previous
state is ignored; one with a value outside the allowed ones is answered `{"type": "error", "for": "ice",
"error": "<which field, allowed values>"}` to the sender only, and changes nothing.
Attachments are uploaded over HTTP (`contactcenter.visit_views`) and announced as `{"type": "attachment"}`.
The server sends `{"type": "welcome", "role"}` after accepting, `{"type": "peer", "state": "left", "role"}`
when the other page's socket closes, and `{"type": "ended"}` (then closes, 4410) when the nurse ends the
visit. SDP and ICE candidates are relayed as given, never stored or logged (they carry IP addresses).

Database scope (row-level security, `clinics.db_scope`): a socket has no request middleware, so the handshake
decides in `visits.participant_scope` (the nurse's clinic, or the visit's clinic for the patient's bound
session), and the socket's later database work (chat, quality samples) runs in `clinic_scope` of the visit's
clinic, like the console socket (`contactcenter.consumers`).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from careline.drain import DrainAware
from clinics import db_scope
from contactcenter import visit_chat, visits
from contactcenter.models import VideoVisit

CLOSE_FORBIDDEN = 4403
CLOSE_SUPERSEDED = 4409
CLOSE_ENDED = 4410

MAX_SIGNAL_BYTES = 64 * 1024
MIN_STATS_INTERVAL_SECONDS = 2.0
CHAT_WINDOW_SECONDS = 60.0
CHAT_MAX_PER_WINDOW = 30
STATS_KEYS = (
    "rtt_ms",
    "jitter_ms",
    "packet_loss_pct",
    "fps",
    "frames_decoded",
    "outgoing_kbps",
    "candidate_type",
    "audio_only",
)


@database_sync_to_async  # type: ignore[untyped-decorator]
def _participant(scope: dict[str, Any], room: str) -> tuple[VideoVisit, str] | None:
    session = scope.get("session")
    rooms = list(session.get(visits.PATIENT_SESSION_KEY, [])) if session is not None else []
    client = scope.get("client") or (None,)
    user = scope.get("user")
    try:
        with visits.participant_scope(room=room, user=user, session_rooms=rooms):
            return visits.visit_participant(room=room, user=user, session_rooms=rooms, source_ip=client[0])
    except visits.NotAParticipant:
        return None


@database_sync_to_async  # type: ignore[untyped-decorator]
def _chat(clinic_id: int, visit_id: int, role: str, author: Any, body: str) -> None:
    with db_scope.clinic_scope(clinic_id):
        visit = VideoVisit.objects.get(pk=visit_id)
        if visit.state == VideoVisit.State.ENDED:
            return
        with contextlib.suppress(visit_chat.EmptyMessage):
            visit_chat.chat_post(visit=visit, role=role, author=author, body=body)


@database_sync_to_async  # type: ignore[untyped-decorator]
def _record(clinic_id: int, visit_id: int, role: str, figures: dict[str, Any]) -> None:
    with db_scope.clinic_scope(clinic_id):
        visits.quality_record(visit_id=visit_id, role=role, figures=figures)


@database_sync_to_async  # type: ignore[untyped-decorator]
def _ice(clinic_id: int, visit_id: int, role: str, state: Any, candidate_type: Any) -> str:
    """Apply an `ice` report in the visit's clinic scope; "" when accepted, else the error for the page."""
    with db_scope.clinic_scope(clinic_id):
        try:
            visits.video_ice_report(visit_id=visit_id, role=role, state=state, candidate_type=candidate_type)
        except visits.BadIceReport as exc:
            return str(exc)
    return ""


class VisitConsumer(DrainAware, AsyncJsonWebsocketConsumer):
    """Relays signaling and presence between the two participants of one visit room.

    Drain-aware with policy "finish" (`careline.drain`): a draining node refuses new visit sockets (close 4013:
    the page reconnects through the proxy to another node) but keeps an ongoing visit open until it ends or the
    drain deadline passes."""

    drain_policy = "finish"

    room = ""
    role = ""
    visit_id = 0
    clinic_id = 0
    joined = False
    last_stats_at = float("-inf")
    last_ice_state = ""

    async def connect(self) -> None:
        self.room = str(self.scope["url_route"]["kwargs"]["room"])
        participant = await _participant(self.scope, self.room)
        if participant is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        visit, self.role = participant
        self.visit_id = visit.pk
        self.clinic_id = visit.clinic_id
        self.chat_times: deque[float] = deque()
        # One live socket per role: tell an older one (reloaded page, second tab) to step aside first.
        await self.channel_layer.group_send(visits.role_group(self.room, self.role), {"type": "visit.superseded"})
        await self.channel_layer.group_add(visits.role_group(self.room, self.role), self.channel_name)
        await self.channel_layer.group_add(visits.room_group(self.room), self.channel_name)
        self.joined = True
        await self.accept()
        await self.send_json({"type": "welcome", "role": self.role})

    async def disconnect(self, code: int) -> None:
        if not self.joined:
            return
        self.joined = False
        await self.channel_layer.group_discard(visits.role_group(self.room, self.role), self.channel_name)
        await self.channel_layer.group_discard(visits.room_group(self.room), self.channel_name)
        await self._relay({"type": "peer", "state": "left"})

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """Malformed or oversized JSON from a page is ignored, not a consumer crash."""
        if len(text_data) > MAX_SIGNAL_BYTES:
            return None
        try:
            return await super().decode_json(text_data)
        except ValueError:
            return None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict) or not self.joined:
            return
        kind = content.get("type")
        pc = str(content.get("pc", ""))[:64]
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind in ("hello", "here"):
            await self._relay({"type": "peer", "state": "joined" if kind == "hello" else "here", "pc": pc})
        elif kind == "signal":
            message: dict[str, Any] = {"type": "signal", "pc": pc}
            if isinstance(content.get("description"), dict):
                message["description"] = content["description"]
            elif "candidate" in content and isinstance(content["candidate"], (dict, type(None))):
                message["candidate"] = content["candidate"]
            else:
                return
            await self._relay(message)
        elif kind == "chat" and isinstance(content.get("body"), str):
            now = time.monotonic()
            while self.chat_times and now - self.chat_times[0] > CHAT_WINDOW_SECONDS:
                self.chat_times.popleft()
            if len(self.chat_times) >= CHAT_MAX_PER_WINDOW:
                return
            self.chat_times.append(now)
            author = self.scope.get("user") if self.role == "nurse" else None
            await _chat(self.clinic_id, self.visit_id, self.role, author, content["body"])
        elif kind == "stats":
            now = time.monotonic()
            if now - self.last_stats_at < MIN_STATS_INTERVAL_SECONDS:  # pages report every 5 s; drop floods
                return
            self.last_stats_at = now
            figures = {key: content.get(key) for key in STATS_KEYS}
            await _record(self.clinic_id, self.visit_id, self.role, figures)
            await self.channel_layer.group_send(
                visits.room_group(self.room),
                {"type": "visit.relay", "sender": "", "data": {"type": "quality", "role": self.role, **figures}},
            )

        elif kind == "ice":
            await self._ice_report(content)

    async def _ice_report(self, content: dict[str, Any]) -> None:
        state = content.get("state")
        if isinstance(state, str) and state == self.last_ice_state:
            return  # a repeat from this socket: nothing new
        error = await _ice(self.clinic_id, self.visit_id, self.role, state, content.get("candidate_type"))
        if error:
            await self.send_json({"type": "error", "for": "ice", "error": error})
            return
        self.last_ice_state = str(state)

    async def _relay(self, data: dict[str, Any]) -> None:
        await self.channel_layer.group_send(
            visits.room_group(self.room),
            {"type": "visit.relay", "sender": self.channel_name, "data": {**data, "role": self.role}},
        )

    async def visit_relay(self, message: dict[str, Any]) -> None:
        """Group message from a participant: forwarded to every socket in the room but the sender's."""
        if message.get("sender") != self.channel_name:
            await self.send_json(message["data"])

    async def visit_superseded(self, message: dict[str, Any]) -> None:
        """A newer socket of this role joined: leave quietly (no "left" to the peer, the new one says hello)."""
        if not self.joined:
            return
        self.joined = False
        await self.channel_layer.group_discard(visits.role_group(self.room, self.role), self.channel_name)
        await self.channel_layer.group_discard(visits.room_group(self.room), self.channel_name)
        await self.close(code=CLOSE_SUPERSEDED)

    async def visit_ended(self, message: dict[str, Any]) -> None:
        """The nurse ended the visit (`contactcenter.visits.visit_end`)."""
        await self.send_json({"type": "ended"})
        await self.close(code=CLOSE_ENDED)
