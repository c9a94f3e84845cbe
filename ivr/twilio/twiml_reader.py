"""Read a TwiML document into plain JSON-able actions (what a phone would do with it), for the simulator.

Verbs (Twilio TwiML <Response> reference) and the action produced, in document order:
- `<Say language=..>text</Say>` -> `{"verb": "say", "text", "language"}` ("en-US" when absent)
- `<Play>url</Play>` -> `{"verb": "play", "url"}`; `<Pause length=..>` -> `{"verb": "pause", "length"}`
- `<Gather action numDigits timeout>` -> its nested `<Say>`/`<Play>`/`<Pause>` first, then
  `{"verb": "gather", "action", "numDigits", "timeout"}` (numDigits/timeout ints or None)
- `<Enqueue waitUrl=..>name</Enqueue>` -> `{"verb": "enqueue", "queue", "waitUrl"}`
- `<Dial callerId=..><Number>n</Number></Dial>` (or `<Dial>n</Dial>`) -> `{"verb": "dial", "number", "callerId"}`
- `<Redirect>url</Redirect>` -> `{"verb": "redirect", "url"}`; `<Hangup/>` -> `{"verb": "hangup"}`
Anything else -> `{"verb": <lower-cased tag>}`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any


class InvalidTwiml(ValueError):
    """The document is not XML or its root is not `<Response>`."""


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _read(element: ET.Element) -> list[dict[str, Any]]:
    tag = element.tag
    text = (element.text or "").strip()
    if tag == "Say":
        return [{"verb": "say", "text": text, "language": element.get("language", "en-US")}]
    if tag == "Play":
        return [{"verb": "play", "url": text}]
    if tag == "Pause":
        return [{"verb": "pause", "length": _int_or_none(element.get("length")) or 1}]
    if tag == "Gather":
        nested = [action for child in element for action in _read(child)]
        return [
            *nested,
            {
                "verb": "gather",
                "action": element.get("action", ""),
                "numDigits": _int_or_none(element.get("numDigits")),
                "timeout": _int_or_none(element.get("timeout")),
            },
        ]
    if tag == "Enqueue":
        return [{"verb": "enqueue", "queue": text, "waitUrl": element.get("waitUrl", "")}]
    if tag == "Dial":
        number = element.find("Number")
        dialled = (number.text or "").strip() if number is not None else text
        return [{"verb": "dial", "number": dialled, "callerId": element.get("callerId", "")}]
    if tag == "Redirect":
        return [{"verb": "redirect", "url": text}]
    if tag == "Hangup":
        return [{"verb": "hangup"}]
    return [{"verb": tag.lower()}]


def twiml_to_actions(document: str | bytes) -> list[dict[str, Any]]:
    """The actions of a TwiML `<Response>` in order (see the module docstring). Raises InvalidTwiml."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise InvalidTwiml(str(exc)) from exc
    if root.tag != "Response":
        raise InvalidTwiml(f"root element is <{root.tag}>, not <Response>")
    return [action for child in root for action in _read(child)]
