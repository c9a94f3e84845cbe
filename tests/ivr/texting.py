"""A patient's phone texting a clinic, as Twilio posts it: signed `POST /ivr/sms/` from the real-shaped
form in `tests/fixtures/twilio_requests/sms_inbound.txt`."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import NORTH_NUMBER
from tests.ivr.phone import twilio_form
from tests.twilio import signed_post


def new_message_sid() -> str:
    return "SM" + uuid.uuid4().hex


def text(client: Any, *, from_number: str, body: str, to: str = NORTH_NUMBER, sid: str | None = None) -> Any:
    """Post one signed inbound SMS; returns the response (asserts 200)."""
    sid = sid or new_message_sid()
    params = twilio_form(
        "sms_inbound", MessageSid=sid, SmsSid=sid, SmsMessageSid=sid, From=from_number, To=to, Body=body
    )
    response = signed_post(client, "/ivr/sms/", params)
    assert response.status_code == 200, (response.status_code, response.content)
    return response


def replies(response: Any) -> list[str]:
    """The texts of the `<Message>` verbs of a TwiML messaging answer."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    return [(m.text or "").strip() for m in root.iter("Message")]
