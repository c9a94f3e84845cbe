"""Closing a user's WebSockets from any process, through the channel layer (never process memory).

Every consumer built on `careline.ws.GuardedConsumerMixin` joins `user_group_name(user_id)` on connect. Sending
`session.revoked` to that group makes each of those consumers close its socket with `CLOSE_SESSION_ENDED`
(4401), whichever daphne process holds it. Sent on logout, on account deactivation (`User.is_active` set to
False, StaffMember removed) and when a session expires.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

# Private-use close code (4000-4999): 4401 = "the session ended" (logout, expiry, account disabled), mirroring
# HTTP 401; the console reloads the page, which leads to the sign-in page.
CLOSE_SESSION_ENDED = 4401


def user_group_name(user_id: int) -> str:
    """The channel-layer group of every open socket of user `user_id`: `user.<id>`."""
    return f"user.{user_id}"


def close_user_sockets(*, user_id: int, reason: str) -> None:
    """Close every open WebSocket of `user_id` in every process, after the current transaction commits.

    `reason` (`logout`, `deactivated`, `expired`) is sent to the consumers for their log line; no PHI. A
    channel-layer failure is logged, never raised (the logout itself must not fail because Redis is down).
    """

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(user_group_name(user_id), {"type": "session.revoked", "reason": reason})
        except Exception:  # noqa: BLE001 - logged; the HTTP side of the logout already happened
            logger.exception("could not close the sockets of user %s (%s)", user_id, reason)

    transaction.on_commit(send)
