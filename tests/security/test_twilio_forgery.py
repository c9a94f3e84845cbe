"""500 forged or altered Twilio webhooks across every webhook endpoint: all 403, nothing written (issue 6).

HIPAA 164.312(c)(1) integrity and 164.312(d) entity authentication: only Twilio, holding the auth token, can
make the IVR create or change a call leg or a case. The signature rule (Twilio, "Webhooks security"):
HMAC-SHA1 with the auth token over the full public URL (scheme, host, port, path, query) followed by every POST
parameter sorted by name, base64 — verified by `ivr.twilio.signature.twilio_webhook` against PUBLIC_BASE_URL.

Each forgery is built from a request that would be valid and changes one thing the signature covers (or the
signature itself). Every model's row count is taken before and after the 500 requests. The control: the same
requests signed correctly are answered (not 403) and do write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.conf import settings
from django.test import Client

from ivr.models import CallLeg
from tests.ivr.phone import new_call_sid, twilio_form
from tests.twilio import sign

pytestmark = pytest.mark.django_db

FORGERIES = 500
CALLER = "+15553031209"


@dataclass(frozen=True)
class Endpoint:
    path: str  # path + query as Twilio requests it
    form: str  # fixture form post


def _endpoints() -> list[Endpoint]:
    case = uuid.uuid4()
    return [
        Endpoint("/ivr/voice/", "voice_inbound"),
        Endpoint("/ivr/voice/status/", "status_completed"),
        Endpoint("/ivr/voice/step/language/?seq=1", "gather_digits"),
        Endpoint("/ivr/voice/step/dob/?seq=2", "gather_digits"),
        Endpoint(f"/ivr/voice/wait/{case}/", "queue_wait"),
        Endpoint(f"/ivr/voice/queue-left/{case}/", "queue_wait"),
    ]


def _row_counts() -> dict[str, int]:
    return {model._meta.label: model._default_manager.count() for model in apps.get_models()}


def _hmac(token: str, url: str, params: dict[str, str], digest: Callable = hashlib.sha1) -> str:
    data = url + "".join(key + params[key] for key in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), digest).digest()).decode()


@dataclass
class Forgery:
    kind: str
    path: str
    params: dict[str, str | list[str]]
    headers: dict[str, str]


def _forgeries(rng: random.Random) -> Iterator[Forgery]:
    """An endless stream of forged variants, cycling endpoints and kinds; each one is a single alteration."""
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    token = settings.TWILIO_AUTH_TOKEN
    endpoints = _endpoints()

    def fresh(endpoint: Endpoint) -> dict[str, str]:
        return twilio_form(endpoint.form, CallSid=new_call_sid(), From=CALLER, Caller=CALLER)

    def header(signature: str) -> dict[str, str]:
        return {"HTTP_X_TWILIO_SIGNATURE": signature}

    def kinds(endpoint: Endpoint) -> list[Forgery]:
        params = fresh(endpoint)
        good = sign(endpoint.path, params)
        other = rng.choice([e for e in endpoints if e.path != endpoint.path])
        key = rng.choice(sorted(params))
        out = [
            Forgery("no signature", endpoint.path, params, {}),
            Forgery("empty signature", endpoint.path, params, header("")),
            Forgery("wrong token", endpoint.path, params, header(sign(endpoint.path, params, token="not-" + token))),
            Forgery("empty token", endpoint.path, params, header(_hmac("", base + endpoint.path, params))),
            Forgery(f"changed {key}", endpoint.path, {**params, key: params[key] + "1"}, header(good)),
            Forgery("changed Digits", endpoint.path, {**params, "Digits": str(rng.randint(0, 9)) * 3}, header(good)),
            Forgery("changed From", endpoint.path, {**params, "From": "+15559999999"}, header(good)),
            Forgery("extra parameter", endpoint.path, {**params, "Extra": "x"}, header(good)),
            Forgery("removed parameter", endpoint.path, {k: v for k, v in params.items() if k != key}, header(good)),
            Forgery("renamed parameter", endpoint.path, {**params, key.lower() + "_": params[key]}, header(good)),
            Forgery("other path (replay)", other.path, params, header(good)),
            Forgery("signed for other path", endpoint.path, params, header(sign(other.path, params))),
            Forgery(
                "http scheme", endpoint.path, params, header(sign(endpoint.path, params, base="http://careline.test"))
            ),
            Forgery("other host", endpoint.path, params, header(sign(endpoint.path, params, base="https://evil.test"))),
            Forgery(
                "other port",
                endpoint.path,
                params,
                header(sign(endpoint.path, params, base="https://careline.test:8443")),
            ),
            Forgery("truncated signature", endpoint.path, params, header(good[: rng.randint(0, len(good) - 1)])),
            Forgery("signature + suffix", endpoint.path, params, header(good + "A")),
            Forgery("flipped character", endpoint.path, params, header(_flip(good, rng))),
            Forgery("lower-cased signature", endpoint.path, params, header(good.lower())),
            Forgery(
                "sha256 instead of sha1",
                endpoint.path,
                params,
                header(_hmac(token, base + endpoint.path, params, hashlib.sha256)),
            ),
            Forgery(
                "unsigned query", endpoint.path + ("&" if "?" in endpoint.path else "?") + "seq=9", params, header(good)
            ),
            Forgery(
                "duplicated parameter",
                endpoint.path,
                {**params, "From": [params["From"], "+15559999999"]},
                header(good),
            ),
            Forgery(
                "bodySHA256 trick",
                endpoint.path
                + ("&" if "?" in endpoint.path else "?")
                + "bodySHA256="
                + hashlib.sha256(b"").hexdigest(),
                params,
                header(
                    sign(
                        endpoint.path
                        + ("&" if "?" in endpoint.path else "?")
                        + "bodySHA256="
                        + hashlib.sha256(b"").hexdigest(),
                        {},
                    )
                ),
            ),
            Forgery("another call's signature", endpoint.path, params, header(sign(endpoint.path, fresh(endpoint)))),
        ]
        if "?" in endpoint.path:
            changed = endpoint.path.replace("seq=", "seq=9")
            out.append(Forgery("changed query", changed, params, header(good)))
        return out

    while True:
        for endpoint in endpoints:
            yield from kinds(endpoint)


def _flip(signature: str, rng: random.Random) -> str:
    index = rng.randrange(len(signature))
    replacement = "A" if signature[index] != "A" else "B"
    return signature[:index] + replacement + signature[index + 1 :]


def test_500_forged_webhooks_are_refused_with_403_and_write_nothing(personas, client: Client):
    rng = random.Random(20261121)
    stream = _forgeries(rng)
    before = _row_counts()
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    not_refused = []
    for _ in range(FORGERIES):
        forgery = next(stream)
        response = client.post(forgery.path, forgery.params, **forgery.headers)
        statuses[response.status_code] += 1
        kinds[forgery.kind] += 1
        if response.status_code != 403:
            not_refused.append((forgery.kind, forgery.path, response.status_code))
    assert not_refused == []
    assert statuses == Counter({403: FORGERIES})
    assert _row_counts() == before
    # Every endpoint and every kind of alteration was exercised.
    assert len(kinds) >= 24
    assert sum(kinds.values()) == FORGERIES


def test_control_the_same_requests_signed_correctly_are_accepted(personas, client: Client):
    """Without this, a webhook refusing everything would pass the forgery test."""
    call_sid = new_call_sid()
    before = CallLeg.objects.count()
    for endpoint in _endpoints():
        params = twilio_form(endpoint.form, CallSid=call_sid, From=CALLER, Caller=CALLER)
        response = client.post(endpoint.path, params, HTTP_X_TWILIO_SIGNATURE=sign(endpoint.path, params))
        # Signature accepted: TwiML (200/204) or a business refusal (400 for an unknown step or case), never 403.
        assert response.status_code in (200, 204, 400), (endpoint.path, response.status_code)
    assert CallLeg.objects.count() == before + 1
    assert CallLeg.objects.filter(call_sid=call_sid).exists()
