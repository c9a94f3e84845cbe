"""The one path for real-time console events (STYLE.md habit 2).

Every change that consoles must see is announced with `publish(clinic_id, event_type, payload)`. It sends a
channel-layer group message to `queue.<clinic_id>` (supervisor-only types: `supervisors.<clinic_id>`)
after the surrounding transaction commits (never for a rolled-back change). Lower apps (triage, ehr)
publish by group name and never import consumers; the
console consumer (`contactcenter.consumers`) forwards `{"event": ..., "payload": ...}` to the browser, which
then resynchronises from the server.

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

import logging
from typing import Any

from asgiref.sync import async_to_sync
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
    consoles resynchronise from the database, so a lost notification costs freshness, not data.
    """
    if event_type not in EVENT_TYPES and event_type not in SUPERVISOR_EVENT_TYPES:
        raise ValueError(f"undocumented event type {event_type!r}")
    group = supervisor_group_name(clinic_id) if event_type in SUPERVISOR_EVENT_TYPES else group_name(clinic_id)
    message = {"type": CONSUMER_MESSAGE_TYPE, "event": event_type, "payload": payload}

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(group, message)
        except Exception:  # noqa: BLE001 - a notification must never break the committed change
            logger.warning("console event %s for clinic %s not delivered", event_type, clinic_id, exc_info=True)

    transaction.on_commit(send)
