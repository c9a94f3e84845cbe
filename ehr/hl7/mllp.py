"""Sending one HL7 v2 message over MLLP and reading its ACK (HL7 v2 MLLP: 0x0B message 0x1C 0x0D).

python-hl7's `hl7.client.MLLPClient` frames the message (`send_message`), but it connects without a
timeout and reads the reply with a single `recv(4096)`, which can cut a long or split ACK. `_TimedClient`
keeps its framing and replaces those two parts: connect and every read time out after `timeout` seconds,
and the reply is read up to the end-of-block bytes.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import hl7
from hl7.client import CR, EB, SB, MLLPClient

from ehr.types import EhrRejected, EhrUnavailable

MAX_ACK_BYTES = 1 << 20


@dataclass(frozen=True)
class Ack:
    """The peer's answer: MSA-1 `code` (AA, AE, AR; or CA/CE/CR in enhanced mode), MSA-3 `text`, the raw ACK."""

    code: str
    text: str
    raw: str


class _TimedClient(MLLPClient):  # type: ignore[misc]
    def __init__(self, host: str, port: int, *, timeout: float) -> None:
        self.socket = socket.create_connection((host, port), timeout=timeout)
        self.encoding = "utf-8"

    def send(self, data: bytes) -> bytes:
        self.socket.sendall(data)
        reply = b""
        while not reply.endswith(EB + CR):
            chunk = self.socket.recv(4096)
            if not chunk:
                break
            reply += chunk
            if len(reply) > MAX_ACK_BYTES:
                break
        return reply


def parse_ack(reply: bytes) -> Ack:
    """The MSA of an MLLP-framed ACK. Raises EhrUnavailable for an empty or unparsable reply (e.g. the
    peer closed the connection mid-answer: the message may or may not have been stored, so retry)."""
    text = reply.strip(SB + EB + CR + b"\n").decode("utf-8", errors="replace")
    if not text.startswith("MSH"):
        raise EhrUnavailable("MLLP peer sent no ACK")
    try:
        message = hl7.parse(text)
        msa = message.segment("MSA")
    except (KeyError, hl7.ParseException) as exc:
        raise EhrUnavailable("MLLP peer's ACK has no MSA segment") from exc
    return Ack(code=str(msa[1]), text=str(msa(3)) if len(msa) > 3 else "", raw=text)


def send_message(message: str, *, host: str, port: int, timeout: float) -> Ack:
    """Send ER7 `message` to `host:port` and return its ACK, whatever its code (the caller judges it).

    Raises EhrUnavailable when the peer cannot be reached, times out, or answers no readable ACK.
    """
    try:
        with _TimedClient(host, port, timeout=timeout) as client:
            reply = client.send_message(message)
    except OSError as exc:  # refused, reset, unreachable, socket.timeout
        raise EhrUnavailable(f"MLLP {type(exc).__name__}") from exc
    return parse_ack(reply)


def require_accept(ack: Ack) -> None:
    """Raise EhrRejected unless MSA-1 is AA/CA (accepted)."""
    if ack.code not in ("AA", "CA"):
        raise EhrRejected(f"HL7 ACK {ack.code or '(no code)'}")
