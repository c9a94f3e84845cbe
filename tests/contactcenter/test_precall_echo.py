"""The echo peer itself (`contactcenter.precall.EchoRegistry`), with a real aiortc client in the same process:
frames come back, the time limit and hang-up close the peer and free the slot, the cap holds, bad offers
leave nothing behind. Over HTTP through a live daphne: tests/e2e/test_precall.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from contactcenter import precall
from contactcenter.precall import EchoCapacityExceeded, EchoRegistry, InvalidOffer
from tests.rtc_peer import CB, CR, HEIGHT, LUMA, WIDTH, echo_client, plane_mean


@pytest.fixture
async def registry() -> AsyncIterator[EchoRegistry]:
    precall.configure_host_addresses()  # RTC_HOST_ADDRESSES = ["127.0.0.1"] in the test settings
    reg = EchoRegistry()
    yield reg
    await reg.close_all()


def poster(registry: EchoRegistry, *, max_seconds: float = 30.0, max_sessions: int = 4):
    async def post(sdp: str) -> dict:
        session_id, answer = await registry.answer(
            sdp=sdp, type="offer", max_seconds=max_seconds, max_sessions=max_sessions
        )
        return {"sdp": answer, "session": session_id}

    return post


async def test_the_caller_gets_its_own_video_back(registry: EchoRegistry) -> None:
    run, _ = await echo_client(poster(registry), frames=10)

    frame = run.frames[-1]
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    # The colour sent comes back (VP8 is lossy, a flat colour survives within a few levels).
    assert abs(plane_mean(frame, 0) - LUMA) < 12
    assert abs(plane_mean(frame, 1) - CB) < 12
    assert abs(plane_mean(frame, 2) - CR) < 12
    assert run.connected <= run.first_frame


async def test_time_limit_closes_the_peer_and_frees_the_slot(registry: EchoRegistry) -> None:
    post = poster(registry, max_seconds=4.0, max_sessions=1)
    run, client = await echo_client(post, keep_open=True)
    server_pc = registry.get(run.answer["session"]).pc  # type: ignore[union-attr]

    # The cap: one live session, a second offer is refused with a Retry-After within the time limit.
    with pytest.raises(EchoCapacityExceeded) as refused:
        await post("v=0\r\n")
    assert 1 <= refused.value.retry_after <= 5

    # At the time limit the server closes: the client's returned track ends, the slot is free.
    await asyncio.wait_for(run.ended.wait(), timeout=20)
    assert registry.active == 0
    assert server_pc.connectionState == "closed"
    await client.close()

    again, _ = await echo_client(post, frames=1)
    assert again.frames


async def test_hang_up_closes_at_once(registry: EchoRegistry) -> None:
    post = poster(registry, max_seconds=60.0, max_sessions=1)
    run, client = await echo_client(post, keep_open=True)
    server_pc = registry.get(run.answer["session"]).pc  # type: ignore[union-attr]

    assert await registry.close(run.answer["session"]) is True
    assert registry.active == 0
    assert server_pc.connectionState == "closed"
    assert await registry.close(run.answer["session"]) is False  # idempotent
    await asyncio.wait_for(run.ended.wait(), timeout=20)
    await client.close()


async def test_a_client_that_goes_away_is_cleaned_up(registry: EchoRegistry) -> None:
    run, client = await echo_client(poster(registry), keep_open=True)
    await client.close()  # DTLS close_notify: the server's peer closes without waiting for the time limit

    async def gone() -> None:
        while registry.active:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(gone(), timeout=20)  # raises TimeoutError if the session stays
    assert registry.active == 0 and registry.get(run.answer["session"]) is None


async def test_offers_it_cannot_echo_leave_nothing_behind(registry: EchoRegistry) -> None:
    post = poster(registry)
    with pytest.raises(InvalidOffer):
        await post("not sdp at all")
    with pytest.raises(InvalidOffer):
        await registry.answer(sdp="v=0\r\n", type="answer", max_seconds=5, max_sessions=4)

    data_only = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    data_only.createDataChannel("x")
    await data_only.setLocalDescription(await data_only.createOffer())
    with pytest.raises(InvalidOffer, match="no audio or video"):
        await post(data_only.localDescription.sdp)
    await data_only.close()
    assert registry.active == 0


def test_host_addresses_come_from_the_setting(settings: pytest.FixtureRequest) -> None:
    import aioice.ice

    settings.RTC_HOST_ADDRESSES = ["127.0.0.1", "::1"]  # type: ignore[attr-defined]
    precall.configure_host_addresses()
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    settings.RTC_HOST_ADDRESSES = []  # type: ignore[attr-defined]
    precall.configure_host_addresses()
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    settings.RTC_HOST_ADDRESSES = ["127.0.0.1"]  # type: ignore[attr-defined]
    precall.configure_host_addresses()
