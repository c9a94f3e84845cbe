"""Liveness, readiness and the metrics endpoint, served before any other middleware.

- `GET /healthz` (liveness): 200 `{"status": "ok", "node": ...}` as long as the process serves requests; it
  checks no dependency (a database outage must not make an orchestrator restart every web process).
- `GET /readyz` (readiness, the load balancer's health check): 200 when the database answers `SELECT 1`, a
  message sent on the channel layer comes back, and the node is not draining (`careline.drain`); else 503.
  Body: `{"status": "ready"|"unready", "node": ..., "checks": {"database": {"ok": true, "ms": 1.2},
  "channel_layer": {...}, "draining": {"ok": true}}}`; a failed check carries `"error"` (the exception's
  class name only: no connection strings, no PHI), except `draining` while the node drains (`{"ok": false}`).
  While Redis is down the channel layer check fails and the drain flag (in the Redis cache) cannot be read:
  503 with both checks failed, never a 500 (tests/chaos/test_redis_restart.py).
- `GET /metrics`: Prometheus text format (`careline.metrics.metrics_response`), for callers allowed by
  `METRICS_TOKEN` (bearer token) or `METRICS_ALLOWED_IPS`.

`OpsEndpointsMiddleware` answers these three paths itself, first in `MIDDLEWARE`, so they need no session,
no auth and no CSRF, are exempt from the HTTPS redirect and from the `ALLOWED_HOSTS` check (a proxy's probe
addresses the node as `127.0.0.1:PORT`), and cost a proxy probe every few seconds almost nothing.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync, markcoroutinefunction, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

from careline import drain

CheckResult = dict[str, Any]


def check_database() -> None:
    """`SELECT 1` on the default database; raises on failure."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _layer_round_trip(timeout: float) -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer")
    channel = await layer.new_channel("readyz.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "readyz.ping", "token": token})
    message = await asyncio.wait_for(layer.receive(channel), timeout=timeout)
    if message.get("token") != token:
        raise RuntimeError("channel layer returned another message")


def check_channel_layer() -> None:
    """Send a message to a fresh channel and receive it back within `READYZ_TIMEOUT_SECONDS`; raises on failure."""
    async_to_sync(_layer_round_trip)(settings.READYZ_TIMEOUT_SECONDS)


def _check_database_off_thread() -> None:
    """`check_database` in a worker thread that closes its connection afterwards (the probe keeps none open)."""
    try:
        check_database()
    finally:
        connection.close()


def _draining_check() -> CheckResult:
    """`{"ok": not draining}`; `{"ok": false, "error": ...}` when the drain flag cannot be read (a cache, i.e.
    Redis, outage): the node then reports unready instead of failing the probe with a 500."""
    try:
        return {"ok": not drain.is_draining()}
    except Exception as exc:  # noqa: BLE001 - unknown drain state = unready; the class name says why
        return {"ok": False, "error": type(exc).__name__}


async def _atimed(check: Callable[[], Awaitable[None]]) -> CheckResult:
    started = time.perf_counter()
    try:
        await check()
    except Exception as exc:  # noqa: BLE001 - any failure makes the node unready; the class name says which
        return {"ok": False, "ms": round((time.perf_counter() - started) * 1000, 1), "error": type(exc).__name__}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


async def readiness() -> tuple[bool, CheckResult]:
    """(ready, checks) as `/readyz` reports them (module docstring). Async, and the database check runs on a
    worker thread of its own (`thread_sensitive=False`): a probe every few seconds never queues behind, or
    holds up, the one thread that serves sync views and the WebSocket handshakes' database lookups."""
    timeout = settings.READYZ_TIMEOUT_SECONDS
    checks = {
        "database": await _atimed(sync_to_async(_check_database_off_thread, thread_sensitive=False)),
        "channel_layer": await _atimed(lambda: _layer_round_trip(timeout)),
        "draining": await sync_to_async(_draining_check, thread_sensitive=False)(),
    }
    return all(c["ok"] for c in checks.values()), checks


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: 200 while the process serves requests."""
    return JsonResponse({"status": "ok", "node": drain.node_id()})


async def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 or 503 with per-check timings (module docstring)."""
    ready, checks = await readiness()
    response = JsonResponse(
        {"status": "ready" if ready else "unready", "node": drain.node_id(), "checks": checks},
        status=200 if ready else 503,
    )
    response["Cache-Control"] = "no-store"
    return response


class OpsEndpointsMiddleware:
    """Serves `/healthz`, `/readyz` and `/metrics` before the rest of the stack (module docstring).

    Async only: under ASGI the probes never take the sync thread (Django adapts the sync middleware below);
    under WSGI or the test client Django runs it through `async_to_sync`."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if request.method in ("GET", "HEAD"):
            if path == "/healthz":
                return healthz(request)
            if path == "/readyz":
                return await readyz(request)
            if path == "/metrics":
                from careline.metrics import metrics_response

                # The domain collector queries the database: on a worker thread that closes its connection.
                return await sync_to_async(_metrics_off_thread, thread_sensitive=False)(metrics_response, request)
        return await self.get_response(request)


def _metrics_off_thread(view: Callable[[HttpRequest], HttpResponse], request: HttpRequest) -> HttpResponse:
    try:
        return view(request)
    finally:
        connection.close()
