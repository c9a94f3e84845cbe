"""An aiortc client of the pre-call echo, shared by the tests and `bench/rtc_setup.py`.

It sends a small solid-colour video (a known luma/chroma, so a returned frame can be told apart from any
other video) and times the setup: offer created (candidates gathered) -> answer received -> ICE+DTLS
connected -> first frame returned. `echo_in_process` is the floor: the same setup against an aiortc echo
peer in the same process, no HTTP and no server in between.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack

# A colour no camera default produces: Y, U, V plane values of every frame sent.
LUMA, CB, CR = 180, 60, 200
WIDTH, HEIGHT = 160, 120

PostOffer = Callable[[str], Awaitable[dict]]


class SolidVideoTrack(VideoStreamTrack):
    """160x120 frames of one YUV colour at aiortc's default 30 fps pacing."""

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=WIDTH, height=HEIGHT, format="yuv420p")
        for plane, value in zip(frame.planes, (LUMA, CB, CR), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base if isinstance(time_base, fractions.Fraction) else fractions.Fraction(time_base)
        return frame


def plane_mean(frame: av.VideoFrame, index: int) -> float:
    """Mean sample value of one plane of a returned frame (converted to yuv420p first)."""
    yuv = frame.reformat(format="yuv420p")
    plane = yuv.planes[index]
    data = bytes(plane)
    width = plane.width
    rows = [data[r * plane.line_size : r * plane.line_size + width] for r in range(plane.height)]
    return sum(sum(row) for row in rows) / (width * plane.height)


@dataclass
class EchoRun:
    """Timings (seconds from the start) and what came back."""

    offer_ready: float = 0.0
    answered: float = 0.0
    connected: float = 0.0
    first_frame: float = 0.0
    frames: list[av.VideoFrame] = field(default_factory=list)
    answer: dict = field(default_factory=dict)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


async def _wait_connected(pc: RTCPeerConnection, timeout: float) -> None:
    done = asyncio.get_running_loop().create_future()

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState in ("connected", "failed", "closed") and not done.done():
            done.set_result(pc.connectionState)

    if pc.connectionState == "connected":
        return
    state = await asyncio.wait_for(done, timeout)
    if state != "connected":
        raise ConnectionError(f"peer connection {state}")


async def echo_client(
    post_offer: PostOffer, *, frames: int = 1, timeout: float = 30.0, keep_open: bool = False
) -> tuple[EchoRun, RTCPeerConnection]:
    """One pre-call run: returns once `frames` frames came back (or raises on timeout / failure).

    `post_offer(sdp)` sends the offer and returns the answer JSON (``{"sdp": ..., ...}``). The peer is closed
    unless `keep_open`; with `keep_open` the run keeps reading frames until the track ends (`run.ended`).
    """
    run = EchoRun()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(SolidVideoTrack())
    got = asyncio.get_running_loop().create_future()
    start = time.perf_counter()

    async def read(track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if not run.frames:
                    run.first_frame = time.perf_counter() - start
                run.frames.append(frame)
                if len(run.frames) >= frames and not got.done():
                    got.set_result(None)
                if len(run.frames) > 50:
                    run.frames.pop(1)
        except MediaStreamError:
            run.ended.set()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            asyncio.ensure_future(read(track))

    try:
        await pc.setLocalDescription(await pc.createOffer())
        run.offer_ready = time.perf_counter() - start
        run.answer = await post_offer(pc.localDescription.sdp)
        run.answered = time.perf_counter() - start
        await pc.setRemoteDescription(RTCSessionDescription(sdp=run.answer["sdp"], type="answer"))
        await _wait_connected(pc, timeout)
        run.connected = time.perf_counter() - start
        await asyncio.wait_for(got, timeout)
    except BaseException:
        await pc.close()
        raise
    if not keep_open:
        await pc.close()
    return run, pc


def echo_in_process() -> PostOffer:
    """The floor's "server": an aiortc echo peer in this process, answered without HTTP. Its peers are kept
    in the returned function's `peers` list (close them with `close_peers`)."""
    peers: list[RTCPeerConnection] = []
    relay = MediaRelay()

    async def post_offer(sdp: str) -> dict:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peers.append(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            pc.addTrack(relay.subscribe(track, buffered=False))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return {"sdp": pc.localDescription.sdp, "type": "answer"}

    post_offer.peers = peers  # type: ignore[attr-defined]
    return post_offer


async def close_peers(post_offer: PostOffer) -> None:
    for pc in getattr(post_offer, "peers", []):
        await pc.close()
