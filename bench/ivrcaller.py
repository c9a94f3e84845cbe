"""A simulated caller for the IVR benchmarks: signed Twilio webhooks over real HTTP, following the TwiML.

`Caller.call()` walks the whole flow of one call the way Twilio does: the answer webhook (`POST /ivr/voice/`),
each `<Gather>` action with the keys a patient presses (language, birth date when the EHR found the phone,
audience, protocol, the protocol's yes/no questions, "hold"), the `<Enqueue>` waitUrl (`wait_polls` times,
as Twilio re-requests it at the end of each hold announcement), the `<Enqueue action>` when the caller hangs
up in the queue (`QueueResult=hangup`; after `wait_polls` waitUrl requests, or earlier once `time.monotonic()`
would pass `hold_deadline`) and the status callback (`CallStatus=completed`). Every request is
form-encoded with the parameters of the real-shaped posts in `tests/fixtures/twilio_requests/` and signed
with `X-Twilio-Signature` over `public_base + path` (HMAC-SHA1 with the auth token, Twilio "Webhooks
security"; `twilio.request_validator.RequestValidator`). Each request's latency (seconds, from just before
sending until the whole answer is read) is appended to `Caller.latencies` as `(kind, seconds)`.

Keys: language 1 (English), the caller's birth date as MMDDYYYY when asked, audience 1 (adult), protocol
`protocol_digit` (4: abdominal pain in the demo library), then `answers` for the questions in order ("2"
no, "1" yes; "2" once the list runs out), contact 1 (hold). The chaos test `tests/chaos/
test_duplicate_webhooks.py` walks the same keys (no, no, yes: acuity 3).
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import redis
from twilio.request_validator import RequestValidator

from ivr.twilio.twiml_reader import twiml_to_actions

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "twilio_requests"


def twilio_form(name: str) -> dict[str, str]:
    """The form post `tests/fixtures/twilio_requests/<name>.txt` as a dict (blank values kept)."""
    return dict(parse_qsl((FIXTURES / f"{name}.txt").read_text(), keep_blank_values=True))


FORMS = {name: twilio_form(name) for name in ("voice_inbound", "gather_digits", "queue_wait", "status_completed")}


class CallFailed(RuntimeError):
    """A webhook answered with an unexpected status or TwiML (message: the path and what came back)."""


@dataclass
class Caller:
    """One caller (phone number `from_number`, birth date `dob` as MMDDYYYY or "") dialling `to_number`.

    `public_base` is the URL Twilio would call (signatures cover it); requests go through `client`, whose
    base URL may differ (e.g. the proxy). `outcome` after `call()`: "enqueued" (reached `<Enqueue>`),
    "transferred" (`<Dial>` on-call: a red flag), or "failed: ..."; `call_sid` is the call's CallSid and
    `case_uuid` the case of the `<Enqueue>` (from its waitUrl).
    """

    client: httpx.AsyncClient
    public_base: str
    auth_token: str
    from_number: str
    to_number: str
    dob: str = ""
    protocol_digit: str = "4"
    answers: Sequence[str] = ("2", "2", "1")
    wait_polls: int = 1
    wait_interval: float = 0.0
    think_time: float = 0.0
    hold_deadline: float = math.inf
    latencies: list[tuple[str, float]] = field(default_factory=list)
    call_sid: str = field(default_factory=lambda: "CA" + uuid.uuid4().hex)
    outcome: str = ""
    case_uuid: str = ""
    enqueued_at: float = 0.0

    def _params(self, form: str, **extra: str) -> dict[str, str]:
        params = dict(FORMS[form])
        params.update(
            CallSid=self.call_sid, From=self.from_number, Caller=self.from_number, To=self.to_number,
            Called=self.to_number, **extra,
        )  # fmt: skip
        return params

    async def post(self, kind: str, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """POST `params` signed to `path`; record the latency under `kind`; return the TwiML's actions."""
        signature = RequestValidator(self.auth_token).compute_signature(self.public_base + path, params)
        started = time.perf_counter()
        response = await self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        self.latencies.append((kind, time.perf_counter() - started))
        if response.status_code == 204:
            return []
        if response.status_code != 200:
            raise CallFailed(f"{path}: HTTP {response.status_code}")
        return twiml_to_actions(response.content)

    async def call(self) -> str:
        """Walk the whole call (module docstring); returns and stores `outcome`. Never raises CallFailed."""
        try:
            self.outcome = await self._call()
        except (CallFailed, httpx.HTTPError) as exc:
            self.outcome = f"failed: {type(exc).__name__}: {exc}"
        return self.outcome

    async def _call(self) -> str:
        actions = await self.post("answer", "/ivr/voice/", self._params("voice_inbound"))
        answers = list(self.answers)
        audience_chosen = False
        for _ in range(20):  # a full flow has ~10 gathers; a loop means the flow went somewhere unexpected
            verbs = {a["verb"] for a in actions}
            if "enqueue" in verbs:
                return await self._hold([a for a in actions if a["verb"] == "enqueue"][0])
            if "dial" in verbs:
                await self.post("status", "/ivr/voice/status/", self._params("status_completed"))
                return "transferred"
            gathers = [a for a in actions if a["verb"] == "gather"]
            if not gathers:
                raise CallFailed(f"no <Gather>, <Enqueue> or <Dial> in {actions}")
            action = gathers[-1]["action"]
            step = action.split("/step/")[1].split("/")[0]
            if step == "language":
                digits = "1"
            elif step == "dob":
                digits = self.dob or "01011970"
            elif step == "protocol":
                digits = self.protocol_digit if audience_chosen else "1"
                audience_chosen = True
            elif step == "question":
                digits = answers.pop(0) if answers else "2"
            elif step == "contact":
                digits = "1"
            else:
                raise CallFailed(f"unexpected step {step}")
            if self.think_time:
                await asyncio.sleep(self.think_time)
            actions = await self.post(step, action, self._params("gather_digits", Digits=digits))
        raise CallFailed("more than 20 prompts")

    async def _hold(self, enqueue: dict[str, Any]) -> str:
        wait_url = enqueue["waitUrl"]
        self.case_uuid = wait_url.rstrip("/").rsplit("/", 1)[1]
        self.enqueued_at = time.monotonic()
        for number in range(self.wait_polls):
            if number and time.monotonic() + self.wait_interval > self.hold_deadline:
                break  # the caller hangs up (at least the first waitUrl request is made)
            if self.wait_interval:
                await asyncio.sleep(self.wait_interval)
            await self.post("wait", wait_url, self._params("queue_wait"))
        queue_left = wait_url.replace("/voice/wait/", "/voice/queue-left/")
        await self.post("queue-left", queue_left, self._params("queue_wait", QueueResult="hangup"))
        await self.post("status", "/ivr/voice/status/", self._params("status_completed"))
        return "enqueued"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100) of `values` (non-empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


OWNER_KEY = "careline-bench:owner"


def free_redis_db(base: str, candidates: range = range(10, 16)) -> int:
    """The first Redis database number in `candidates` that was empty, claimed with a marker key
    (`OWNER_KEY` = this pid, set only if absent), so two benchmarks started together never share one. The
    caller flushes it at the end (`FLUSHDB`: it held nothing of anyone else's)."""
    for number in candidates:
        client = redis.Redis.from_url(f"{base}/{number}")
        if client.dbsize() == 0 and client.set(OWNER_KEY, str(os.getpid()), nx=True):
            if client.dbsize() == 1:
                return number
            client.delete(OWNER_KEY)  # something else wrote there meanwhile: not ours
    raise RuntimeError(f"no empty Redis database among {list(candidates)} on {base}")


def live_bench_setup(name: str, redis_base: str, **extra: str) -> int:
    """Prepare this process for a benchmark against live CareLine processes, then `django.setup()`: a Redis
    database of its own (`free_redis_db`, returned), the scratch PostgreSQL database `careline_bench_<name>`
    made anew (`benchdb.fresh_database`; `DATABASE_URL` wins if set), a channel-layer prefix per run, production
    settings with the demo clinic, a throwaway secret key and field-encryption key. `extra` sets more variables
    (defaults only, like the rest: the caller's environment wins). The live processes inherit the environment."""
    import base64
    import secrets

    redis_db = free_redis_db(redis_base)
    os.environ["REDIS_URL"] = f"{redis_base}/{redis_db}"
    defaults = {
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/careline_bench_{name}",
        "CHANNEL_LAYER_PREFIX": f"careline-bench-{name}-{os.getpid()}",
        "DJANGO_SETTINGS_MODULE": "careline.settings.base",
        "CARELINE_DEMO": "true",  # seed_demo (the demo clinic and its protocol library) and run_demo_ehr
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "FIELD_ENCRYPTION_KEYS": "bench:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        **extra,
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)

    import django
    from benchdb import fresh_database

    fresh_database(os.environ["DATABASE_URL"])
    django.setup()
    return redis_db


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group of `process` (SIGKILL after 20 s)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def wait_http(url: str, timeout: float = 90) -> None:
    """Until `url` answers 200 (RuntimeError after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url, timeout=5)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not answer 200 in {timeout} s")
