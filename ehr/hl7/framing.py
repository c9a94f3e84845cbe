"""MLLP framing of the inbound feed: one frame at a time from an asyncio stream (python-hl7's reader).

MLLP (HL7 v2 Implementation Guide, appendix C): `0x0B` + message + `0x1C 0x0D`. `read_frame` is the only
place that looks at raw bytes, so it is the fuzz target (tests/ehr/test_mllp_framing.py). It reads from
python-hl7's `hl7.mllp.HL7StreamReader` (an `asyncio.StreamReader` whose `limit` is the frame size cap) and
differs from python-hl7's own `readblock` in one way: bytes before the start block are discarded and counted
instead of failing the whole block, and when a block holds several start bytes the last one wins (a sender
that gave up mid-frame and started again loses only the abandoned part), as interface engines do.

Outcomes, per call:
- a `Frame` (payload without the framing bytes; `stray` = bytes discarded before it);
- `None`: the peer closed the connection cleanly (no bytes pending);
- `FrameTooLarge`: no end block within `limit` bytes; the connection should be closed;
- `TruncatedFrame`: the peer closed the connection mid-frame (or after stray bytes); nothing to answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
SEPARATOR = END_BLOCK + CARRIAGE_RETURN


class FrameTooLarge(Exception):
    """No end block within the reader's limit (HL7_MLLP_MAX_FRAME_BYTES)."""


class TruncatedFrame(Exception):
    """The stream ended with `pending` bytes that were not a complete frame."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"stream ended inside a frame ({pending} bytes pending)")
        self.pending = pending


@dataclass(frozen=True)
class Frame:
    payload: bytes
    stray: int = 0


def frame(payload: bytes) -> bytes:
    """`payload` wrapped in MLLP start and end blocks."""
    return START_BLOCK + payload + SEPARATOR


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame from `reader` (see the module docstring for the outcomes).

    Blocks with no start byte at all (noise between frames) are skipped and counted into the next frame's
    `stray`. Raises FrameTooLarge or TruncatedFrame.
    """
    stray = 0
    while True:
        try:
            block = await reader.readuntil(SEPARATOR)
        except asyncio.IncompleteReadError as exc:
            pending = stray + len(exc.partial)
            if pending:
                raise TruncatedFrame(pending) from None
            return None
        except asyncio.LimitOverrunError:
            raise FrameTooLarge("no end block within the frame size limit") from None
        start = block.rfind(START_BLOCK)
        if start < 0:
            stray += len(block)
            continue
        return Frame(payload=block[start + 1 : -len(SEPARATOR)], stray=stray + start)
