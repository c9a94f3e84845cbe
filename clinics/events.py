"""The one path for real-time console events (STYLE.md habit 2).

Every change that consoles must see is announced with `publish(clinic_id, event_type, payload)`. It sends a
channel-layer group message to `queue.<clinic_id>` (supervisor-only types: `supervisors.<clinic_id>`)
after the surrounding transaction commits (never for a rolled-back change). Lower apps (triage, ehr)
publish by group name and never import consumers; the
console consumer (`contactcenter.consumers`) forwards `{"event": ..., "payload": ...}` to the browser, which
then resynchronises from the server. The group message also carries that frame already JSON-encoded (`text`),
so a clinic's 1,000 consoles do not encode the same payload 1,000 times.

Event types and payloads (all ids are CareLine database ids; payloads carry no PHI):

| type               | payload                                   | when                                      |
|--------------------|-------------------------------------------|-------------------------------------------|
| `case.queued`      | `{"case_id", "acuity"}`                   | a case enters the queue (new or requeued)  |
| `case.reserved`    | `{"case_id", "nurse_id"}`                 | a nurse claimed the case                   |
| `case.accepted`    | `{"case_id", "nurse_id"}`                 | the nurse accepted the reservation         |
| `case.requeued`    | `{"case_id", "reason"}`                   | a reservation expired or was released      |
| `case.closed`      | `{"case_id", "disposition"}`              | disposition recorded, case closed          |
| `case.transferred` | `{"case_id"}`                             | red flag: warm transfer, never queued      |
| `case.abandoned`   | `{"case_id"}`                             | the caller left before a case was worked   |
| `case.updated`     | `{"case_id", "fields": [...]}`            | EHR context, contact preference, acuity   |
| `writeback.changed`| `{"case_id", "target", "state"}`          | an outbox row changed state                |
| `callback.attempted`| `{"case_id", "number", "result"}`        | a nurse recorded a callback attempt        |
| `acuity_override.requested` | `{"case_id", "override_id"}` | lowering asked: supervisor to co-sign |

Supervisor-only events go to the group `supervisors.<clinic_id>`, which only supervisors' and clinic
admins' consoles join (nurses never receive them):

| type            | payload                                         | when                                        |
|-----------------|-------------------------------------------------|---------------------------------------------|
| `case.escalated`| `{"case_id", "acuity", "reason"}`               | past target (`past_target`), callback loop   |
|                 |                                                 | exhausted (`callback_unreached`), red flag   |
|                 |                                                 | in re-triage (`red_flag_while_waiting`)      |
| `surge.started` | `{"acuity", "estimated_wait_seconds", "paged"}` | a level's estimated wait passed the clinic's |
|                 |                                                 | surge threshold; off-shift nurses paged      |
| `presence.changed`| `{"user_id", "state"}`                        | a staff member's console presence changed    |
| `writeback.dead`| `{"writeback_id", "case_id", "target",`         | an outbound message was refused for good     |
|                 | `"message_type", "reason"}`                     | (HL7 AR, or AE `HL7_AE_MAX_ATTEMPTS` times); |
|                 |                                                 | it holds back the patient's later messages   |
|                 |                                                 | until an analyst retries or skips it         |
| `slo.breached`  | `{"slo_id", "kind", "threshold", "value",`      | a clinic SLO was found missed (ops.services);|
|                 | `"breach_id"}`                                  | once per breach episode                      |
| `slo.cleared`   | same                                            | the breached SLO was found met again         |
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

EVENT_TYPES = frozenset(
    {
        "case.queued",
        "case.reserved",
        "case.accepted",
        "case.requeued",
        "case.closed",
        "case.transferred",
        "case.abandoned",
        "case.updated",
        "writeback.changed",
        "callback.attempted",
        "acuity_override.requested",
    }
)

# Sent to `supervisor_group_name(clinic_id)` instead of the clinic's console group.
SUPERVISOR_EVENT_TYPES = frozenset(
    {"case.escalated", "surge.started", "presence.changed", "writeback.dead", "slo.breached", "slo.cleared"}
)

# The Channels message type the consumer handles (`console_event` method).
CONSUMER_MESSAGE_TYPE = "console.event"


def group_name(clinic_id: int) -> str:
    """Channel-layer group of a clinic's consoles."""
    return f"queue.{clinic_id}"


def supervisor_group_name(clinic_id: int) -> str:
    """Channel-layer group of a clinic's supervisors' and admins' consoles (supervisor-only events)."""
    return f"supervisors.{clinic_id}"


def publish(clinic_id: int, event_type: str, payload: dict[str, Any]) -> None:
    """Send `event_type` with `payload` to the clinic's consoles once the current transaction commits.

    Raises ValueError for an undocumented event type. A channel-layer failure is logged, never raised:
    consoles resynchronise from the database, so a lost notification costs freshness, not data. From sync code
    inside `sync_to_async` the send runs on the caller's event loop (`async_to_sync`); from any other sync code
    on the process's long-lived publisher loop (`_Publisher`), waiting up to `PUBLISH_TIMEOUT_SECONDS`.
    """
    if event_type not in EVENT_TYPES and event_type not in SUPERVISOR_EVENT_TYPES:
        raise ValueError(f"undocumented event type {event_type!r}")
    group = supervisor_group_name(clinic_id) if event_type in SUPERVISOR_EVENT_TYPES else group_name(clinic_id)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        message: dict[str, Any] = {"type": CONSUMER_MESSAGE_TYPE, "event": event_type, "payload": payload}
        # `text`: the browser's frame, encoded once here rather than once per console by every consumer. A payload
        # JSON cannot encode goes without it, as before this existed (the consumer then encodes, or fails, itself).
        with contextlib.suppress(TypeError, ValueError):
            message["text"] = json.dumps({"event": event_type, "payload": payload})
        try:
            if _in_sync_to_async():
                # Sync code called from async code (a Django view under daphne, `database_sync_to_async`):
                # asgiref runs the send on that outer event loop, as it always did.
                async_to_sync(layer.group_send)(group, message)
            else:
                _PUBLISHER.run(layer.group_send(group, message))
        except Exception:  # noqa: BLE001 - a notification must never break the committed change
            logger.warning("console event %s for clinic %s not delivered", event_type, clinic_id, exc_info=True)

    transaction.on_commit(send)


# How long a publish from sync code waits for the channel layer (s); past it the event is logged as not
# delivered (consoles resynchronise from the database). Generous: redis-py retries a dropped connection.
PUBLISH_TIMEOUT_SECONDS = 10.0


def _in_sync_to_async() -> bool:
    """True when this thread runs sync code on behalf of a running event loop of this process (inside asgiref's
    `sync_to_async`): then `async_to_sync` hands the coroutine to that loop instead of making a new one."""
    local = SyncToAsync.threadlocal
    loop = getattr(local, "main_event_loop", None)
    return loop is not None and getattr(local, "main_event_loop_pid", None) == os.getpid() and loop.is_running()


class _Publisher:
    """One long-lived asyncio event loop in a daemon thread, per process, for publishes from plain sync code
    (Celery tasks, management commands, worker threads, tests).

    Why: outside an event loop, `async_to_sync(layer.group_send)` starts a new thread and a new event loop
    for every call, and channels_redis (which keeps its Redis connections per event loop) opens and closes a
    Redis connection with it: ~1.1 ms of GIL-held CPU per publish measured in `bench/claim.py` (RESULTS.md).
    Here the loop, and so the layer's connection pool, live as long as the process. channels_redis supports
    one layer used from several loops (its pools are per loop); redis-py reconnects (and retries) after a
    Redis restart. The caller still waits for the send to finish (`run`), so a thread's publishes reach the
    layer in the order it made them, as before. Re-created after a fork (Celery's prefork pool): a child
    process inherits neither the thread nor a usable loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if self._loop is None or self._pid != os.getpid() or not alive:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="careline-events-publisher", daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        """Run `coroutine` on the publisher loop and wait for it (at most `timeout` s). Raises what the
        coroutine raised, or TimeoutError (the send is then cancelled)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        try:
            future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise


_PUBLISHER = _Publisher()
