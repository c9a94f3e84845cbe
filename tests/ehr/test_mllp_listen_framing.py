"""Property tests of the MLLP framer (`ehr.hl7.framing.read_frame`) on python-hl7's stream reader.

Byte streams are fed in arbitrary chunks to an `HL7StreamReader` (the reader the listener uses) and read
back frame by frame under a time limit: a hang would fail the `wait_for`, a crash any other way.
"""

from __future__ import annotations

import asyncio

from hl7.mllp import HL7StreamReader
from hypothesis import given, settings
from hypothesis import strategies as st

from ehr.hl7.framing import Frame, FrameTooLarge, TruncatedFrame, frame, read_frame

LIMIT = 4096
payloads = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))
# noise between frames: anything without a start byte and without the end-block separator
noise = st.binary(max_size=20).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


async def _read_all(chunks: list[bytes]) -> list[Frame | BaseException | None]:
    reader = HL7StreamReader(limit=LIMIT)
    outcomes: list[Frame | BaseException | None] = []

    async def feed() -> None:
        for chunk in chunks:
            reader.feed_data(chunk)
            await asyncio.sleep(0)
        reader.feed_eof()

    feeder = asyncio.ensure_future(feed())
    for _ in range(10_000):
        try:
            outcome: Frame | BaseException | None = await asyncio.wait_for(read_frame(reader), 2)
        except (FrameTooLarge, TruncatedFrame) as exc:
            outcome = exc
        outcomes.append(outcome)
        if not isinstance(outcome, Frame):
            break
    await feeder
    return outcomes


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(noise, payloads), max_size=8),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_framed_payloads_come_back_exactly_whatever_the_chunking(items, cuts) -> None:
    stream = b"".join(junk + frame(payload) for junk, payload in items)

    outcomes = asyncio.run(_read_all(_chunks(stream, cuts)))

    assert outcomes[-1] is None  # clean end of stream
    frames = outcomes[:-1]
    assert [f.payload for f in frames] == [payload for _, payload in items]  # type: ignore[union-attr]
    assert [f.stray for f in frames] == [len(junk) for junk, _ in items]  # type: ignore[union-attr]


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.one_of(st.binary(max_size=200), st.sampled_from([b"\x0b", b"\x1c\r", b"\x1c", b"\r"])), max_size=30),
    st.lists(st.integers(min_value=0), max_size=12),
)
def test_arbitrary_bytes_never_crash_or_hang(parts, cuts) -> None:
    stream = b"".join(parts)

    outcomes = asyncio.run(_read_all(_chunks(stream, cuts)))

    *frames, last = outcomes
    assert all(isinstance(f, Frame) for f in frames)
    assert last is None or isinstance(last, FrameTooLarge | TruncatedFrame)
    # every frame's payload is a contiguous piece of the stream, and frames never overlap
    position = 0
    for f in frames:
        assert isinstance(f, Frame)
        found = stream.find(b"\x0b" + f.payload + b"\x1c\r", position)
        assert found >= 0
        position = found + len(f.payload) + 3


def test_a_frame_over_the_limit_is_reported() -> None:
    outcomes = asyncio.run(_read_all([frame(b"x" * (LIMIT + 10))]))
    assert isinstance(outcomes[0], FrameTooLarge)
