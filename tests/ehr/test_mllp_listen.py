"""The real MLLP listener (`ehr.hl7.listener`, what `manage.py mllp_listen` runs) over real sockets.

Senders: python-hl7's blocking `hl7.client.MLLPClient` and its asyncio `open_hl7_connection`, each sending
several messages over one kept-open connection; raw sockets for the recorded bad inputs in
tests/fixtures/hl7_bad/ (see its README). hl7apy has no MLLP client (only a server), so hl7apy builds one of
the messages instead. The listener runs in a thread with its own event loop; its database work commits, so
these tests use transactional test cases.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import hl7
import pytest
from hl7.client import MLLPClient
from hl7.mllp import open_hl7_connection
from hl7apy.core import Message

from ehr.hl7.listener import MllpListener
from ehr.models import Hl7Message, PatientLink
from tests.ehr.adt_messages import CANARY, adt

pytestmark = pytest.mark.django_db(transaction=True)

BAD = Path(__file__).resolve().parents[1] / "fixtures" / "hl7_bad"
MAX_FRAME = 8192
IDLE = 1.5


class RunningListener:
    def __init__(self, clinic) -> None:
        self.listener = MllpListener(
            host="127.0.0.1", port=0, clinic=clinic, max_frame_bytes=MAX_FRAME, idle_seconds=IDLE
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mllp-listen", daemon=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.listener.start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.listener.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def port(self) -> int:
        return self.listener.port


@pytest.fixture
def listener(personas) -> Iterator[RunningListener]:
    running = RunningListener(personas.north)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _msa(reply: bytes | str) -> tuple[str, str, str]:
    text = reply.decode() if isinstance(reply, bytes) else reply
    msa = hl7.parse(text.strip("\x0b\x1c\r")).segment("MSA")
    return str(msa[1]), str(msa[2]), str(msa[3]) if len(msa) > 3 else ""


def _raw_exchange(port: int, data: bytes, *, timeout: float = 5) -> tuple[bytes, bool]:
    """Send `data` on a fresh connection; return (everything read until the listener closed or went quiet,
    whether it closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except TimeoutError:
            return reply, False
        return reply, True


def test_python_hl7_client_sends_a_whole_feed_over_one_connection(listener, personas) -> None:
    feed = [
        adt("A04", "F-1", mrn="P-1", fhir_id="fhir-1"),
        adt("A28", "F-2", mrn="P-2"),
        adt("A08", "F-3", mrn="P-1", family="Renamed"),
        adt("A31", "F-4", mrn="P-2", given="Carla"),
        adt("A40", "F-5", mrn="P-1", family="Renamed", mrg="P-2"),
        adt("A04", "F-1", mrn="P-1", fhir_id="fhir-1"),  # a resend: AA, not applied again
        adt("A40", "F-6", mrn="P-1"),  # no MRG: AE
        adt("A04", "F-7").replace("ADT^A04^ADT_A01", "ORU^R01"),  # AR
    ]
    with MLLPClient("127.0.0.1", listener.port) as client:
        acks = [_msa(client.send_message(message)) for message in feed]

    assert [code for code, _, _ in acks] == ["AA", "AA", "AA", "AA", "AA", "AA", "AE", "AR"]
    assert [control for _, control, _ in acks] == ["F-1", "F-2", "F-3", "F-4", "F-5", "F-1", "F-6", "F-7"]
    assert acks[6][2] == "ADT^A40 without MRG segment" and acks[7][2] == "unsupported message type ORU^R01"
    survivor = PatientLink.objects.get(clinic=personas.north, mrn="P-1")
    assert survivor.family_name == "Renamed" and survivor.fhir_id == "fhir-1"
    merged = PatientLink.objects.get(mrn="P-2")
    assert merged.merged_into == survivor and merged.given_name == "Carla"
    states = list(Hl7Message.objects.filter(direction="in").order_by("pk").values_list("state", flat=True))
    assert states == ["applied"] * 5 + ["duplicate", "error", "rejected"]


async def _async_feed(port: int, messages: list[str]) -> list[tuple[str, str, str]]:
    reader, writer = await open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    acks = []
    try:
        for message in messages:
            writer.writemessage(hl7.parse(message))
            await writer.drain()
            acks.append(_msa(str(await asyncio.wait_for(reader.readmessage(), 5))))
    finally:
        writer.close()
    return acks


def test_python_hl7_asyncio_client_and_an_hl7apy_built_message(listener, personas) -> None:
    built = Message("ADT_A01", version="2.5")
    built.msh.msh_3, built.msh.msh_4, built.msh.msh_10, built.msh.msh_12 = "APYAPP", "APYFAC", "APY-1", "2.5"
    built.msh.msh_9 = "ADT^A04^ADT_A01"
    built.evn.evn_2 = "20261121030000"
    built.pid.pid_3 = "APY-MRN^^^HOSP^MR"
    built.pid.pid_5 = "Hlsevenapy^Ann"

    acks = asyncio.run(_async_feed(listener.port, [built.to_er7(), adt("A08", "AS-2", mrn="APY-MRN")]))

    assert acks == [("AA", "APY-1", ""), ("AA", "AS-2", "")]
    assert PatientLink.objects.get(mrn="APY-MRN").family_name == CANARY  # A08 updated what A04 created


def test_stray_bytes_before_the_start_block_are_skipped(listener) -> None:
    reply, _ = _raw_exchange(listener.port, (BAD / "stray_bytes_before_start.bin").read_bytes(), timeout=0.5)
    assert _msa(reply)[:2] == ("AA", "STRAY-1")
    assert PatientLink.objects.filter(mrn="BAD-STRAY-1").exists()


def test_invalid_utf8_and_missing_control_id_get_ar_on_a_connection_that_stays_open(listener) -> None:
    data = (BAD / "invalid_utf8.bin").read_bytes() + (BAD / "missing_msh10.bin").read_bytes()
    data += b"\x0b" + adt("A04", "AFTER-1").encode() + b"\x1c\r"

    reply, closed = _raw_exchange(listener.port, data, timeout=0.5)

    frames = [f for f in reply.split(b"\x1c\r") if f]
    assert [_msa(f) for f in frames] == [
        ("AR", "UTF8-1", "message is not valid UTF-8"),
        ("AR", "", "MSH-10 (message control id) is required"),
        ("AA", "AFTER-1", ""),
    ]
    assert not closed  # still open for more (until the idle timeout)


def test_truncated_frame_is_dropped_and_the_listener_keeps_serving(listener) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=5) as sock:
        sock.sendall((BAD / "truncated_frame.bin").read_bytes())
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""  # no ACK, connection closed

    assert not Hl7Message.objects.exists()
    with MLLPClient("127.0.0.1", listener.port) as client:
        assert _msa(client.send_message(adt("A04", "NEXT-1")))[0] == "AA"


def test_oversize_frame_gets_ar_and_the_connection_is_closed(listener, caplog) -> None:
    caplog.set_level(logging.INFO)

    reply, closed = _raw_exchange(listener.port, (BAD / "oversize_frame.bin").read_bytes())

    assert _msa(reply) == ("AR", "", "frame too large") and closed
    assert not Hl7Message.objects.exists()
    assert f"over {MAX_FRAME} bytes" in caplog.text


def test_an_idle_connection_is_closed(listener) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=IDLE + 5) as sock:
        assert sock.recv(100) == b""  # the listener closed it after IDLE seconds


def test_listener_logs_carry_no_phi(listener, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with MLLPClient("127.0.0.1", listener.port) as client:
        client.send_message(adt("A04", "LOG-1"))
    _raw_exchange(listener.port, (BAD / "oversize_frame.bin").read_bytes())

    assert "LOG-1" in caplog.text
    for phi in (CANARY, "Betty", "MRN-1001", "19800214", "Fixture"):
        assert phi not in caplog.text
