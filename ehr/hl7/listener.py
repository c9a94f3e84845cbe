"""The inbound MLLP listener (`manage.py mllp_listen`): python-hl7's asyncio MLLP server + `ehr.hl7.adt`.

Why python-hl7 and not hl7apy's `MLLPServer`: hl7apy's server closes the connection after every message and
matches handlers on the exact MSH-9 string, while interface engines keep one connection open for a whole
feed. python-hl7's `hl7.mllp.start_hl7_server` keeps connections open, gives each one an
`HL7StreamReader` whose buffer `limit` caps the frame size, and frames replies with `writeblock`. Parsing
and the ACK are hl7apy's (see `ehr.hl7.adt`).

Per connection, messages are handled one at a time in arrival order (a sender waits for each ACK, as MLLP
requires), and every message is stored before its ACK is written. Connection rules, each with one log line
carrying the peer address and counts only (no message content):
- a frame larger than `max_frame_bytes` (HL7_MLLP_MAX_FRAME_BYTES, 1 MiB) gets an AR "frame too large"
  and the connection is closed (the rest of that frame cannot be told apart from the next one);
- no complete frame within `idle_seconds` (HL7_MLLP_IDLE_SECONDS) closes the connection (the sender
  reconnects on its next message);
- bytes outside frames are discarded and counted; a connection closed mid-frame discards the partial
  frame (it was never ACKed, so the sender still owns it).
Database work runs in Django's sync thread (`sync_to_async`, thread-sensitive), one message at a time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from hl7.mllp import start_hl7_server

from clinics import db_scope
from clinics.models import Clinic
from ehr.hl7.adt import InboundResult, build_ack, handle_message
from ehr.hl7.framing import FrameTooLarge, TruncatedFrame, read_frame

logger = logging.getLogger(__name__)


def _handle(*, data: bytes, clinic: Clinic | None) -> InboundResult:
    # Like a request: drop a database connection that broke or aged out before using it.
    close_old_connections()
    # The feed acts for the service (its messages may name any clinic's patients): system scope for
    # PostgreSQL row-level security (clinics.db_scope).
    with db_scope.system_scope():
        return handle_message(data=data, clinic=clinic)


@dataclass
class MllpListener:
    """An MLLP server for the ADT feed of `clinic` (None: route each message by MSH-6 = clinic slug)."""

    host: str
    port: int
    clinic: Clinic | None
    max_frame_bytes: int
    idle_seconds: float
    _server: asyncio.Server | None = field(default=None, repr=False)

    async def start(self) -> None:
        """Bind and start accepting connections (port 0 picks a free port; `self.port` is updated)."""
        server: asyncio.Server = await start_hl7_server(
            self._connection, self.host, self.port, limit=self.max_frame_bytes, encoding="utf-8"
        )
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])
        logger.info("MLLP listener on %s:%s (max frame %s bytes)", self.host, self.port, self.max_frame_bytes)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _connection(self, reader: Any, writer: Any) -> None:
        peer = writer.get_extra_info("peername")
        handled = 0
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(read_frame(reader), timeout=self.idle_seconds)
                except TimeoutError:
                    logger.info("MLLP %s idle for %ss after %s messages: closed", peer, self.idle_seconds, handled)
                    break
                except FrameTooLarge:
                    logger.warning("MLLP %s sent a frame over %s bytes: AR and closed", peer, self.max_frame_bytes)
                    writer.writeblock(build_ack(None, code="AR", text="frame too large").encode("utf-8"))
                    await writer.drain()
                    break
                except TruncatedFrame as exc:
                    logger.warning("MLLP %s closed mid-frame: %s bytes discarded", peer, exc.pending)
                    break
                if frame is None:
                    break
                if frame.stray:
                    logger.warning("MLLP %s: %s stray bytes outside frames discarded", peer, frame.stray)
                result = await sync_to_async(_handle, thread_sensitive=True)(data=frame.payload, clinic=self.clinic)
                writer.writeblock(result.ack.encode("utf-8"))
                await writer.drain()
                handled += 1
        except ConnectionError:
            logger.info("MLLP %s connection lost after %s messages", peer, handled)
        finally:
            writer.close()
