"""What every WebSocket consumer needs before it does anything: `GuardedConsumerMixin`.

Use it first in the bases of a Channels consumer (`class C(GuardedConsumerMixin, AsyncJsonWebsocketConsumer)`),
call `await self.guard_connect()` first in `connect()` (return if it is False: the socket is already closed)
and `await self.guard_disconnect()` in `disconnect()`. It gives (issue 6; ASVS 5.0 V4.4, V7.4; HIPAA
164.312(a)(2)(iii), 164.312(d)):

- **Authenticated, active, OTP-verified session only.** The origin allow-list (`ALLOWED_HOSTS`, via
  `AllowedHostsOriginValidator`) and the session cookie are checked in `careline.asgi`; here the user must be
  signed in and active, the session must have passed the TOTP step (`django_otp` device id in the session, a
  confirmed device of that user) and be within its idle / absolute limits. Otherwise: close 4403 before the
  handshake completes (4401 if the session had expired).
- **Closed within seconds when the session ends**: the socket joins `accounts.sockets.user_group_name(user)`,
  so logout, deactivation and expiry in any process close it (4401). A watcher task also re-reads the session
  from the session store when it is due to expire (and at least every `SESSION_RECHECK_SECONDS`): the socket's
  own traffic, keepalive pings included, is *not* activity, so an idle console expires exactly like an idle page.
  A socket that finds its session expired deletes it (audited once, `auth.session_expired`).
- **Frame size limit**: a client message larger than `WS_MAX_MESSAGE_BYTES` (64 KiB; UTF-8 bytes for text) ->
  close 1009 (message too big, RFC 6455 §7.4.1), logged and audited `ws.frame_too_large`.
- **Per-user rate limit**: a token bucket per user (`WS_RATE_BURST` messages, refilled at `WS_RATE_PER_SECOND`)
  shared by all of the user's sockets in every process (a Redis Lua script; in-process when no `REDIS_URL`, the
  single-process embedded run). An empty bucket -> close 1008 (policy violation), logged, audited
  `ws.rate_limited`. **Fails open**: while Redis is down (or does not answer within
  `REDIS_TIMEOUT_SECONDS` (2 s)) the message is allowed and a warning logged. A nurse's console must not be
  cut off by the limiter's store; the limit guards against a misbehaving client, and the frame-size limit
  and the session checks still hold (tests/chaos/test_redis_restart.py).

Log lines carry the user id and the consumer class, never message content.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from importlib import import_module
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from django.conf import settings

from accounts.middleware import session_deadline, session_expired_reason
from accounts.sockets import CLOSE_SESSION_ENDED, user_group_name

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403  # private-use, mirrors HTTP 403
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_POLICY_VIOLATION = 1008
SESSION_RECHECK_SECONDS = 60.0
# The rate limiter's Redis connect and read timeout: past it the message is allowed (fails open).
REDIS_TIMEOUT_SECONDS = 2.0

_TOKEN_BUCKET_LUA = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return allowed
"""

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
_local_buckets: dict[int, tuple[float, float]] = {}


async def take_token(user_id: int) -> bool:
    """Take one message token from `user_id`'s bucket; False when it is empty, True when Redis cannot be
    reached (fails open, see module doc)."""
    burst, rate = float(settings.WS_RATE_BURST), float(settings.WS_RATE_PER_SECOND)
    if settings.REDIS_URL:
        import redis.asyncio as redis
        from redis.exceptions import RedisError

        loop = asyncio.get_running_loop()
        client = _clients.get(loop)
        if client is None:
            timeout = REDIS_TIMEOUT_SECONDS
            client = _clients[loop] = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        layer_config: Any = settings.CHANNEL_LAYERS["default"]
        prefix = layer_config.get("CONFIG", {}).get("prefix", "careline")
        key = f"{prefix}:ws-rate:{user_id}"
        try:
            return bool(await client.eval(_TOKEN_BUCKET_LUA, 1, key, burst, rate))
        except (RedisError, OSError) as exc:
            logger.warning("WebSocket rate limit of user %s not checked (fails open): %s", user_id, type(exc).__name__)
            return True
    now = time.monotonic()
    tokens, at = _local_buckets.get(user_id, (burst, now))
    tokens = min(burst, tokens + (now - at) * rate)
    allowed = tokens >= 1
    _local_buckets[user_id] = (tokens - 1 if allowed else tokens, now)
    return allowed


def _load_session(session_key: str | None) -> Any:
    engine = import_module(settings.SESSION_ENGINE)
    store = engine.SessionStore(session_key)
    store.load()
    return store


def off_sync_thread(func: Any) -> Any:
    """`database_sync_to_async(func)` on a worker thread (`thread_sensitive=False`) instead of Django's one sync
    thread: a socket's handshake checks must not queue behind the process's page renders and webhooks (after a
    Redis restart a few hundred consoles reconnect at once while each event makes every console re-fetch its
    queue; on the sync thread their handshakes passed daphne's handshake timeout; tests/chaos/
    test_redis_restart.py). Only for functions that hold no state in the thread (plain ORM reads/writes)."""
    return database_sync_to_async(func, thread_sensitive=False)


@off_sync_thread
def _connect_check(scope: dict[str, Any]) -> int:
    """0 if the scope's user may open a socket, else the close code (see module doc)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.models import Device

    user = scope.get("user")
    session = scope.get("session")
    if user is None or not user.is_authenticated or not user.is_active or session is None:
        return CLOSE_FORBIDDEN
    if session_expired_reason(session):
        return CLOSE_SESSION_ENDED
    device_id = session.get(DEVICE_ID_SESSION_KEY)
    device = Device.from_persistent_id(device_id) if device_id else None
    if device is None or device.user_id != user.pk or not device.confirmed:
        return CLOSE_FORBIDDEN
    return 0


@database_sync_to_async  # type: ignore[untyped-decorator]
def _session_status(session_key: str | None, user_id: int) -> tuple[str, float | None]:
    """("", deadline) while the session is valid; ("ended", None) if it is gone or the user is inactive;
    ("idle"/"absolute", None) if it has just expired (then it is deleted and audited here, once)."""
    from django.contrib.auth import get_user_model

    from accounts.services import audit_auth

    store = _load_session(session_key)
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if not session_key or not store.exists(session_key) or user is None:
        return "ended", None
    reason = session_expired_reason(store)
    if reason:
        store.delete(session_key)
        audit_auth(user=user, action="auth.session_expired", reason=f"{reason} (WebSocket)")
        return reason, None
    return "", session_deadline(store)


@database_sync_to_async  # type: ignore[untyped-decorator]
def _audit(user: Any, action: str, reason: str) -> None:
    from accounts.services import audit_auth

    audit_auth(user=user, action=action, reason=reason)


class GuardedConsumerMixin:
    """Session, MFA, expiry, frame-size and rate guards for a Channels consumer (see module doc)."""

    scope: dict[str, Any]
    channel_name: str
    channel_layer: Any
    guarded_user_id: int | None = None
    _session_watch: asyncio.Task[None] | None = None

    if TYPE_CHECKING:  # provided by the Channels consumer class this is mixed into

        async def close(self, code: int | bool | None = None, reason: str | None = None) -> None: ...

    async def guard_connect(self) -> bool:
        """Run the connect checks; on success join the user's group and start the session watcher (True)."""
        code = await _connect_check(self.scope)
        if code:
            await self.close(code=code)
            return False
        user = self.scope["user"]
        self.guarded_user_id = user.pk
        await self.channel_layer.group_add(user_group_name(user.pk), self.channel_name)
        self._session_watch = asyncio.ensure_future(self._watch_session())
        return True

    async def guard_disconnect(self) -> None:
        """Leave the user's group and stop the watcher (safe to call when `guard_connect` failed)."""
        if self._session_watch is not None:
            self._session_watch.cancel()
            self._session_watch = None
        if self.guarded_user_id is not None:
            await self.channel_layer.group_discard(user_group_name(self.guarded_user_id), self.channel_name)

    async def _watch_session(self) -> None:
        session_key = getattr(self.scope.get("session"), "session_key", None)
        while True:
            status, deadline = await _session_status(session_key, self.guarded_user_id)
            if status:
                logger.info("closing %s of user %s: session %s", type(self).__name__, self.guarded_user_id, status)
                await self.close(code=CLOSE_SESSION_ENDED)
                return
            wait = SESSION_RECHECK_SECONDS if deadline is None else deadline - time.time()
            await asyncio.sleep(min(max(wait, 0.2), SESSION_RECHECK_SECONDS))

    async def session_revoked(self, message: dict[str, Any]) -> None:
        """Group message `session.revoked` (accounts.sockets.close_user_sockets) -> close 4401."""
        logger.info("closing %s of user %s: %s", type(self).__name__, self.guarded_user_id, message.get("reason"))
        await self.close(code=CLOSE_SESSION_ENDED)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Frame size and rate limit before the consumer sees a message."""
        text, data = message.get("text"), message.get("bytes")
        size = len(text.encode("utf-8")) if text is not None else len(data or b"")
        user = self.scope.get("user")
        if size > settings.WS_MAX_MESSAGE_BYTES:
            logger.warning("closing %s of user %s: %s-byte frame", type(self).__name__, self.guarded_user_id, size)
            await _audit(user, "ws.frame_too_large", f"{size} bytes > {settings.WS_MAX_MESSAGE_BYTES}")
            await self.close(code=CLOSE_MESSAGE_TOO_BIG)
            return
        if self.guarded_user_id is not None and not await take_token(self.guarded_user_id):
            logger.warning("closing %s of user %s: rate limit", type(self).__name__, self.guarded_user_id)
            await _audit(user, "ws.rate_limited", f"more than {settings.WS_RATE_BURST} messages in a burst")
            await self.close(code=CLOSE_POLICY_VIOLATION)
            return
        await super().websocket_receive(message)  # type: ignore[misc]
