"""Pre-call test: a server-side WebRTC echo peer (aiortc) that returns the caller's own media.

The browser (`static/js/precall.js`) sends an SDP offer; the ASGI process answers with a peer that relays
every received track straight back (`MediaRelay`), so the patient (or nurse) sees their own video after a
full network round trip and the browser can measure round-trip time, packet loss and frame rate from
`getStats()`. Non-trickle: the answer carries every candidate (aiortc gathers inside
`setLocalDescription`).

Limits, all settings: a session lives at most `PRECALL_MAX_SECONDS` (then it is closed, connected or not);
at most `PRECALL_MAX_SESSIONS` sessions per process (`EchoCapacityExceeded` beyond it); a caller hangs up
with `close_session`, and a peer whose connection fails or closes is cleaned up at once. Sessions live in
this process's memory on purpose: a session is only the live peer connection, which cannot move to another
process anyway; nothing is persisted and nothing about the caller (no PHI) is known here.

Authorization tokens: `precall_token(subject)` signs an opaque subject (e.g. ``"visit:<uuid>"``, never a
name or phone number) with `django.core.signing`, salt ``"careline.precall"``; `precall_subject(token)`
checks it within `PRECALL_TOKEN_MAX_AGE_SECONDS` (15 min).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass, field

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from django.conf import settings
from django.core import signing
from django.core.cache import cache

logger = logging.getLogger(__name__)

TOKEN_SALT = "careline.precall"
MAX_SDP_BYTES = 64 * 1024


class InvalidPrecallToken(Exception):
    """The token is malformed, signed with another key or salt, or older than its maximum age."""


class EchoCapacityExceeded(Exception):
    """This process already runs `PRECALL_MAX_SESSIONS` echo sessions; `retry_after` is in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"pre-call echo capacity reached; retry after {retry_after} s")
        self.retry_after = retry_after


class InvalidOffer(ValueError):
    """The offer is not an SDP offer aiortc can answer (wrong type, unparsable, no audio or video)."""


def precall_token(subject: str) -> str:
    """A signed token that lets its holder run the pre-call test for 15 minutes.

    `subject`: an opaque identifier of what the test is for (e.g. ``"visit:<uuid>"``); never PHI, because
    the token is readable (signed, not encrypted). Rate limits count per subject. Rendered by the visit
    page into `data-precall-token`.
    """
    return signing.dumps(subject, salt=TOKEN_SALT)


def precall_subject(token: str) -> str:
    """The subject of a valid token. Raises `InvalidPrecallToken` if it is forged, of another salt, not a
    string, or older than `PRECALL_TOKEN_MAX_AGE_SECONDS`."""
    try:
        subject = signing.loads(token, salt=TOKEN_SALT, max_age=settings.PRECALL_TOKEN_MAX_AGE_SECONDS)
    except signing.BadSignature as exc:  # SignatureExpired is a BadSignature
        raise InvalidPrecallToken(str(exc)) from exc
    if not isinstance(subject, str) or not subject:
        raise InvalidPrecallToken("token subject is not a string")
    return subject


_default_get_host_addresses = aioice.ice.get_host_addresses


def _configured_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """`RTC_HOST_ADDRESSES` filtered by address family, in place of aioice's interface scan."""
    configured: list[str] = list(settings.RTC_HOST_ADDRESSES)
    return [a for a in configured if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def configure_host_addresses() -> None:
    """Make aioice offer exactly `RTC_HOST_ADDRESSES` as host candidates (its default when empty).

    aioice reads the machine's interfaces through the module function `aioice.ice.get_host_addresses`, which
    aiortc offers no parameter for, and always leaves out 127.0.0.1; so the setting replaces that function
    for the whole process (every aiortc peer in it). Idempotent; called before each peer is created.
    """
    if settings.RTC_HOST_ADDRESSES:
        aioice.ice.get_host_addresses = _configured_host_addresses
    else:
        aioice.ice.get_host_addresses = _default_get_host_addresses


def rtc_configuration() -> RTCConfiguration:
    """ICE configuration of the server's peers: `RTC_STUN_URLS` only (an empty list, not aiortc's default
    public STUN server, so nothing leaves the network unless configured)."""
    servers = [RTCIceServer(urls=url) for url in settings.RTC_STUN_URLS]
    return RTCConfiguration(iceServers=servers)


def _tag(session_id: str) -> str:
    """What logs show of a session id: enough to follow one session, not the hang-up capability itself."""
    return session_id[:6]


@dataclass
class EchoSession:
    """One live echo: its id (unguessable, the caller's handle to hang up), peer, and deadline."""

    id: str
    pc: RTCPeerConnection
    started: float
    max_seconds: float
    relay: MediaRelay = field(default_factory=MediaRelay)
    timer: asyncio.TimerHandle | None = None
    closing: asyncio.Task[bool] | None = None

    @property
    def retry_after(self) -> int:
        """Whole seconds until the time limit frees this session's slot."""
        return max(1, int(self.started + self.max_seconds - time.monotonic()) + 1)


class EchoRegistry:
    """The echo sessions of this process (one event loop: daphne's). Slots are taken synchronously before
    the first `await`, so concurrent offers can never exceed the cap."""

    def __init__(self) -> None:
        self._sessions: dict[str, EchoSession] = {}

    @property
    def active(self) -> int:
        """How many sessions hold a slot (from offer until closed)."""
        return len(self._sessions)

    def get(self, session_id: str) -> EchoSession | None:
        return self._sessions.get(session_id)

    async def answer(self, *, sdp: str, type: str, max_seconds: float, max_sessions: int) -> tuple[str, str]:
        """Answer an SDP offer with an echo peer; returns `(session id, answer SDP)`.

        Every audio or video track of the offer is sent back (the answer's transceivers are sendrecv). The
        session is closed after `max_seconds` whatever its state. Raises `EchoCapacityExceeded` when
        `max_sessions` are live, `InvalidOffer` for anything aiortc cannot answer (the peer is closed).
        """
        if type != "offer" or not sdp or len(sdp.encode()) > MAX_SDP_BYTES:
            raise InvalidOffer("expected an SDP offer")
        if len(self._sessions) >= max_sessions:
            soonest = min(s.retry_after for s in self._sessions.values()) if self._sessions else 1
            raise EchoCapacityExceeded(retry_after=soonest)
        configure_host_addresses()
        session = EchoSession(
            id=secrets.token_urlsafe(18),
            pc=RTCPeerConnection(rtc_configuration()),
            started=time.monotonic(),
            max_seconds=max_seconds,
        )
        self._sessions[session.id] = session  # the slot is taken before any await
        session.timer = asyncio.get_running_loop().call_later(max_seconds, self._expire, session.id)
        pc = session.pc
        echoed: list[MediaStreamTrack] = []

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            # Fired inside setRemoteDescription, i.e. before createAnswer: the relay is added in time for the
            # answer to send it (TESTING.md: an aiortc answerer must addTrack() before createAnswer()).
            echoed.append(track)
            pc.addTrack(session.relay.subscribe(track, buffered=False))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session.id)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if not echoed:
                raise InvalidOffer("the offer has no audio or video to echo")
            await pc.setLocalDescription(await pc.createAnswer())
        except InvalidOffer:
            await self.close(session.id)
            raise
        except Exception as exc:  # aiortc raises ValueError, KeyError, ... on SDP it cannot use
            await self.close(session.id)
            raise InvalidOffer("the offer could not be answered") from exc
        logger.info("precall echo %s started (%d active)", _tag(session.id), len(self._sessions))
        return session.id, pc.localDescription.sdp

    def _expire(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            logger.info("precall echo %s reached its time limit", _tag(session_id))
            session.closing = asyncio.ensure_future(self.close(session_id))

    async def close(self, session_id: str) -> bool:
        """Close a session's peer and free its slot; False if it was not (or no longer) live. Idempotent."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        if session.timer is not None:
            session.timer.cancel()
        await session.pc.close()
        logger.info("precall echo %s closed after %.1f s", _tag(session_id), time.monotonic() - session.started)
        return True

    async def close_all(self) -> None:
        """Close every session (process shutdown, tests)."""
        for session_id in list(self._sessions):
            await self.close(session_id)


registry = EchoRegistry()


async def echo_answer(*, sdp: str, type: str) -> tuple[str, str]:
    """Answer an offer with this process's registry under the configured limits (`PRECALL_MAX_SECONDS`,
    `PRECALL_MAX_SESSIONS`). Same return value and errors as `EchoRegistry.answer`."""
    return await registry.answer(
        sdp=sdp, type=type, max_seconds=settings.PRECALL_MAX_SECONDS, max_sessions=settings.PRECALL_MAX_SESSIONS
    )


async def hang_up(*, session_id: str) -> bool:
    """The caller ended the test: close the session now. False if it had already ended."""
    return await registry.close(session_id)


class RateLimited(Exception):
    """Too many offers from one token subject or staff session; `retry_after` is in seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many pre-call tests; retry after {retry_after} s")
        self.retry_after = retry_after


async def count_offer(*, key: str) -> None:
    """Count one offer against `key` (a token subject or a session key, hashed into the cache key) in a
    fixed window of `PRECALL_RATE_WINDOW_SECONDS`; raises `RateLimited` past `PRECALL_RATE_LIMIT`.

    The counter lives in the shared cache (Redis in production), so the limit holds across processes."""
    window = settings.PRECALL_RATE_WINDOW_SECONDS
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    cache_key = f"precall:rate:{digest}"
    if await cache.aadd(cache_key, 1, timeout=window):
        return
    try:
        count = await cache.aincr(cache_key)
    except ValueError:  # expired between add and incr: a new window
        await cache.aset(cache_key, 1, timeout=window)
        return
    if count > settings.PRECALL_RATE_LIMIT:
        raise RateLimited(retry_after=window)
