"""A caller's phone for tests: posts signed webhooks the way Twilio does and follows the TwiML.

`Phone(client, from_number=...).dial()` posts `/ivr/voice/`; `press("1")` posts the `<Gather>` action of
the last answer with `Digits`; `no_input()` posts it with empty `Digits`; `wait()` posts the `<Enqueue>`
waitUrl; `hang_up()` posts the status callback. Parameters start from the real-shaped form posts in
`tests/fixtures/twilio_requests/`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from ivr.twilio.twiml_reader import twiml_to_actions
from tests.conftest import NORTH_NUMBER
from tests.twilio import signed_post

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "twilio_requests"


def twilio_form(name: str, **overrides: str) -> dict[str, str]:
    """The form post in `tests/fixtures/twilio_requests/<name>.txt` with `overrides` applied."""
    params = dict(parse_qsl((FIXTURES / f"{name}.txt").read_text(), keep_blank_values=True))
    params.update(overrides)
    return params


def new_call_sid() -> str:
    return "CA" + uuid.uuid4().hex


class Phone:
    """One simulated call. `last` is the last response; `actions` its TwiML read into actions."""

    def __init__(self, client: Any, *, from_number: str, to_number: str = NORTH_NUMBER) -> None:
        self.client = client
        self.from_number = from_number
        self.to_number = to_number
        self.call_sid = new_call_sid()
        self.last: Any = None
        self.actions: list[dict[str, Any]] = []

    def _params(self, name: str, **extra: str) -> dict[str, str]:
        return twilio_form(
            name,
            CallSid=self.call_sid,
            From=self.from_number,
            Caller=self.from_number,
            To=self.to_number,
            Called=self.to_number,
            **extra,
        )

    def post(self, path: str, params: dict[str, str]) -> Any:
        self.last = signed_post(self.client, path, params)
        assert self.last.status_code in (200, 204), (path, self.last.status_code, self.last.content)
        self.actions = twiml_to_actions(self.last.content) if self.last.status_code == 200 else []
        return self.last

    def dial(self) -> Any:
        return self.post("/ivr/voice/", self._params("voice_inbound"))

    def gather(self) -> dict[str, Any]:
        gathers = [a for a in self.actions if a["verb"] == "gather"]
        assert gathers, f"no <Gather> in the last answer: {self.actions}"
        return gathers[-1]

    def press(self, digits: str) -> Any:
        return self.post(self.gather()["action"], self._params("gather_digits", Digits=digits))

    def no_input(self) -> Any:
        return self.post(self.gather()["action"], self._params("gather_digits", Digits=""))

    def enqueue(self) -> dict[str, Any]:
        found = [a for a in self.actions if a["verb"] == "enqueue"]
        assert found, f"no <Enqueue> in the last answer: {self.actions}"
        return found[0]

    def wait(self) -> Any:
        return self.post(self.enqueue()["waitUrl"], self._params("queue_wait"))

    def hang_up(self, status: str = "completed") -> Any:
        return self.post("/ivr/voice/status/", self._params("status_completed", CallStatus=status))

    @property
    def says(self) -> list[str]:
        return [a["text"] for a in self.actions if a["verb"] == "say"]

    @property
    def say_languages(self) -> set[str]:
        return {a["language"] for a in self.actions if a["verb"] == "say"}

    def step(self) -> str:
        """The step the last `<Gather>` posts to (e.g. "dob")."""
        return self.gather()["action"].split("/step/")[1].split("/")[0]
