"""Drain-to-terminate for one ASGI (daphne) node, and the `DrainAware` consumer mixin.

A load balancer's scale-in hook (or an operator) runs `manage.py drain --node NODE_ID` (or sends SIGUSR1 to
the daphne process). The node then:

1. answers `/readyz` with 503 (the proxy stops sending it new connections; `careline.health`);
2. refuses new WebSocket sessions: a `DrainAware` consumer accepts the handshake and closes at once with code
   4013 ("try again later"), so the console reconnects, through the proxy, elsewhere;
   `refuse_if_draining()` lets HTTP views (e.g. "start a video room") answer 503 the same way;
3. tells open console sessions `{"event": "reconnect", "payload": {"reason": "draining"}}` and closes them
   with code 4012 ("service restart"); sessions whose `drain_policy` is `"finish"` (video calls) stay open;
4. exits 0 once no `"finish"` session is left, or `DRAIN_TIMEOUT_SECONDS` after the drain began, whichever
   comes first (those still open are then told to reconnect and closed; the process stops
   `DRAIN_EXIT_GRACE_SECONDS` later, so the close frames reach the clients).

The flag lives in the Django cache (Redis in production: every process sees it) under
`careline:drain:<node id>`, holding the drain deadline (unix seconds). A node's id is `CARELINE_NODE_ID`,
else `<hostname>:<pid>`. The watcher that acts on the flag (`DrainWatcher`) runs in each daphne process as an
asyncio task, started by the first request the process serves (the proxy's health checks, every few seconds);
it polls the flag every `DRAIN_POLL_SECONDS` (cache calls run on worker threads, `thread_sensitive=False`:
never queued behind Django's one sync thread, which a reconnect herd or a webhook burst keeps busy) and
publishes the node's open-session count under
`careline:drain:<node id>:sessions` for `manage.py drain --wait`.

**Redis lost its data** (restarted without persistence, failed over, flushed): the channel layer's group
memberships are gone, but most console consumers survive the outage (channels_redis reconnects; only the
consumer holding the process's receive lock fails, close 1011), so they would stay open and hear nothing
more. The same watcher keeps a per-node mark in the cache (`careline:drain:<node id>:mark`, no expiry); when a
poll finds it missing after it was set, every open `"close"`-policy session is told
`{"event": "reconnect", "payload": {"reason": "channel_layer_reset"}}` and closed 4012, at most
`LAYER_RESET_RECONNECTS_PER_SECOND` per second (a reconnect herd of a few hundred handshakes on one process
would time out in daphne's 5 s handshake limit); the console reconnects and resynchronises its view
(tests/chaos/test_redis_restart.py). `"finish"` sessions (video) are left open.

Video visits (built separately): make the video room consumer `class VideoRoomConsumer(DrainAware, ...)` with
`drain_policy = "finish"`, and call `refuse_if_draining()` in the view that creates a room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import weakref
from typing import Any, ClassVar

from django.conf import settings
from django.core.cache import cache
from django.http import JsonResponse

logger = logging.getLogger(__name__)

# The IANA codes are 1012 "service restart" and 1013 "try again later", but daphne (autobahn) lets an application
# send only 1000 or 3000-4999: so the private-use mirrors 4012 and 4013 (as the console's 4403 mirrors HTTP 403).
CLOSE_SERVICE_RESTART = 4012
CLOSE_TRY_AGAIN_LATER = 4013
RECONNECT_EVENT = "reconnect"
_KEY = "careline:drain:{node}"
_SESSIONS_KEY = "careline:drain:{node}:sessions"
_MARK_KEY = "careline:drain:{node}:mark"
RESET_REASON = "channel_layer_reset"


def node_id() -> str:
    """This process's node id: `CARELINE_NODE_ID`, else `<hostname>:<pid>` (stable for the process's life)."""
    return os.environ.get("CARELINE_NODE_ID") or f"{socket.gethostname()}:{os.getpid()}"


def drain_start(*, node: str, timeout_seconds: float | None = None) -> float:
    """Mark `node` draining; returns its deadline (unix seconds) = now + `timeout_seconds`
    (default `DRAIN_TIMEOUT_SECONDS`). Idempotent: a node already draining keeps its earlier deadline."""
    timeout = settings.DRAIN_TIMEOUT_SECONDS if timeout_seconds is None else timeout_seconds
    deadline = time.time() + timeout
    # Kept a day past the deadline: a node that never exits stays out of rotation until someone looks.
    cache.add(_KEY.format(node=node), deadline, timeout=int(timeout) + 86400)
    return float(cache.get(_KEY.format(node=node), deadline))


def drain_cancel(*, node: str) -> None:
    """Forget `node`'s drain flag (e.g. a node id reused by a new process)."""
    cache.delete(_KEY.format(node=node))


def drain_deadline(node: str | None = None) -> float | None:
    """The drain deadline (unix seconds) of `node` (default: this process), None when it is not draining."""
    value = cache.get(_KEY.format(node=node or node_id()))
    return float(value) if value is not None else None


def is_draining(node: str | None = None) -> bool:
    """True when `node` (default: this process) is draining."""
    return drain_deadline(node) is not None


def open_sessions(node: str) -> dict[str, int] | None:
    """`{"close": n, "finish": m}` open sessions of `node` as its watcher last published them (None: unknown)."""
    value = cache.get(_SESSIONS_KEY.format(node=node))
    return dict(value) if isinstance(value, dict) else None


def refuse_if_draining() -> JsonResponse | None:
    """For HTTP views that start something long-lived (a video room): a 503 answer with `Retry-After: 1` while
    this node drains, None otherwise. Usage: `if (refused := refuse_if_draining()): return refused`."""
    if not is_draining():
        return None
    response = JsonResponse({"error": "node draining, retry"}, status=503)
    response["Retry-After"] = "1"
    return response


class DrainAware:
    """Mixin for Channels WebSocket consumers (put it first in the bases): refuses connects while the node
    drains and takes part in the drain sequence (module docstring).

    `drain_policy`: `"close"` (default; the console feed: told to reconnect and closed at once) or `"finish"`
    (a call: left open until it ends or the drain deadline passes). Subclasses keep their own `connect()`;
    the refusal happens before it runs.
    """

    drain_policy: ClassVar[str] = "close"
    _registry: ClassVar[weakref.WeakSet[Any]] = weakref.WeakSet()

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        from asgiref.sync import sync_to_async

        DrainWatcher.ensure_started()
        if await sync_to_async(is_draining, thread_sensitive=False)():  # a cache read: off the sync thread
            # Accept, then close: a close before accepting is an HTTP 403 to the browser, not code 4013.
            await self.accept()  # type: ignore[attr-defined]
            await self.close(code=CLOSE_TRY_AGAIN_LATER)  # type: ignore[attr-defined]
            return
        DrainAware._registry.add(self)
        await super().websocket_connect(message)  # type: ignore[misc]

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        DrainAware._registry.discard(self)
        await super().websocket_disconnect(message)  # type: ignore[misc]

    async def drain_notice(self, reason: str = "draining") -> None:
        """Tell the client to reconnect (`reason`: "draining", or RESET_REASON), then close with 4012."""
        DrainAware._registry.discard(self)
        with contextlib.suppress(Exception):  # the client may already be gone
            await self.send_json({"event": RECONNECT_EVENT, "payload": {"reason": reason}})  # type: ignore[attr-defined]
            await self.close(code=CLOSE_SERVICE_RESTART)  # type: ignore[attr-defined]

    @classmethod
    def sessions(cls) -> dict[str, int]:
        """Open sessions of this process by drain policy."""
        counts = {"close": 0, "finish": 0}
        for consumer in list(cls._registry):
            counts[consumer.drain_policy] = counts.get(consumer.drain_policy, 0) + 1
        return counts


class DrainWatcher:
    """The per-process task that carries out a drain (module docstring). `exit` is how the process ends
    (SIGTERM to itself: daphne's Twisted reactor stops cleanly and the process exits 0)."""

    _task: ClassVar[asyncio.Task[None] | None] = None

    @staticmethod
    def exit() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    @classmethod
    def ensure_started(cls) -> None:
        """Start the watcher on the running event loop, once per loop (no-op outside an event loop, or when
        the `DRAIN_WATCHER` setting is off: the test suite starts it itself)."""
        if not settings.DRAIN_WATCHER:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if cls._task is not None and not cls._task.done() and cls._task.get_loop() is loop:
            return
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGUSR1, lambda: drain_start(node=node_id()))
        cls._task = loop.create_task(cls._run())

    @classmethod
    async def _reconnect_after_reset(cls, node: str) -> None:
        """Redis lost its data (module docstring): tell every open "close" session to reconnect, spread at
        `LAYER_RESET_RECONNECTS_PER_SECOND`."""
        consumers = [c for c in list(DrainAware._registry) if c.drain_policy != "finish"]
        logger.warning("node %s: Redis lost its data; %d console sessions told to reconnect", node, len(consumers))
        rate = max(1.0, float(settings.LAYER_RESET_RECONNECTS_PER_SECOND))
        started = time.monotonic()
        for number, consumer in enumerate(consumers):
            await asyncio.sleep(max(0.0, started + number / rate - time.monotonic()))
            await consumer.drain_notice(reason=RESET_REASON)

    @classmethod
    async def _run(cls) -> None:
        from asgiref.sync import sync_to_async

        node = node_id()
        poll = settings.DRAIN_POLL_SECONDS
        notified = False
        marked = False
        while True:
            try:
                # add() is True only when the mark is missing: set before -> Redis lost its data.
                if (
                    await sync_to_async(cache.add, thread_sensitive=False)(_MARK_KEY.format(node=node), 1, None)
                    and marked
                ):
                    await cls._reconnect_after_reset(node)
                marked = True
                deadline = await sync_to_async(drain_deadline, thread_sensitive=False)(node)
                sessions = DrainAware.sessions()
                await sync_to_async(cache.set, thread_sensitive=False)(_SESSIONS_KEY.format(node=node), sessions, 3600)
                if deadline is not None:
                    if not notified:
                        logger.warning("node %s draining: %s open sessions", node, sessions)
                        notified = True
                    for consumer in [c for c in list(DrainAware._registry) if c.drain_policy != "finish"]:
                        await consumer.drain_notice()
                    if DrainAware.sessions()["finish"] == 0 or time.time() >= deadline:
                        for consumer in list(DrainAware._registry):
                            await consumer.drain_notice()
                        # Let the server flush the close frames before the process stops.
                        await asyncio.sleep(settings.DRAIN_EXIT_GRACE_SECONDS)
                        await sync_to_async(cache.set)(_SESSIONS_KEY.format(node=node), DrainAware.sessions(), 3600)
                        logger.warning("node %s drained, exiting", node)
                        cls.exit()
                        return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watcher must outlive a Redis blip
                logger.warning("drain watcher of node %s: check failed", node, exc_info=True)
            await asyncio.sleep(poll)


class DrainWatcherMiddleware:
    """ASGI wrapper (outermost, in `careline.asgi`) that starts the `DrainWatcher` with the first scope served."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        DrainWatcher.ensure_started()
        return await self.app(scope, receive, send)
