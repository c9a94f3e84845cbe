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


class AckRefused(EhrRejected):
    """MSA-1 AR/CR: the receiver refused the message itself (structure, type, processing ID). Never retried."""


class AckError(EhrRejected):
    """MSA-1 AE/CE: the receiver could not apply the message (e.g. unknown patient). May pass on a later try."""


class AckMismatch(EhrUnavailable):
    """MSA-2 is not the MSH-10 just sent: the answer belongs to another message, so ours is unconfirmed.

    Retried like an outage: resending the same MSH-10 is safe for a receiver that dedupes on MSH-10.
    """


@dataclass(frozen=True)
class Ack:
    """The peer's answer: MSA-1 `code` (AA, AE, AR; or CA/CE/CR in enhanced mode), MSA-2 `control_id` (the
    MSH-10 it acknowledges), MSA-3 `text`, the raw ACK."""

    code: str
    text: str
    raw: str
    control_id: str = ""


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
    return Ack(
        code=str(msa[1]),
        text=str(msa(3)) if len(msa) > 3 else "",
        raw=text,
        control_id=str(msa(2)) if len(msa) > 2 else "",
    )


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


def require_accept(ack: Ack, *, control_id: str) -> None:
    """Check an ACK against the message it answers (HL7 v2.5 §2.9.2, original acknowledgment mode).

    `control_id` is the MSH-10 sent. Returns when MSA-1 is AA/CA and MSA-2 equals `control_id`.
    Raises AckMismatch (an EhrUnavailable: retry) when MSA-2 differs, AckRefused (AR/CR) or AckError (AE/CE,
    or any other code) otherwise; both are EhrRejected.
    """
    if ack.control_id != control_id:
        raise AckMismatch("HL7 ACK MSA-2 does not match the MSH-10 sent")
    if ack.code in ("AA", "CA"):
        return
    if ack.code in ("AR", "CR"):
        raise AckRefused(f"HL7 ACK {ack.code}")
    raise AckError(f"HL7 ACK {ack.code or '(no code)'}")
