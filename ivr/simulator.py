"""Phone simulator (demo only, `CARELINE_DEMO`): a browser "calls" the IVR exactly as Twilio would.

The page (`simulator_page`) sends `{path, call: {sid, from, to}, params}` to `simulator_post`, an **async**
view: under daphne, sync views share one thread, so a sync view calling its own server over HTTP would
deadlock. It adds the parameters Twilio sends with every voice webhook (`twilio_params`), signs them with
`RequestValidator` for `PUBLIC_BASE_URL or this request's base` + path, POSTs them over real HTTP
(httpx) to this server, and returns the TwiML read into JSON actions (`ivr.twilio.twiml_reader`).

Because it signs whatever it is given, it only posts to `/ivr/voice/...` paths and only in demo mode.
Behind a proxy that rewrites the Host, the post goes to the host the browser used.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

import httpx
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from clinics.models import Clinic
from ehr.demo import demo_callers
from ivr.twilio.signature import SIGNATURE_HEADER, compute_signature
from ivr.twilio.twiml_reader import InvalidTwiml, twiml_to_actions

logger = logging.getLogger(__name__)

# A caller ID that no EHR holds, to try the unidentified path.
UNKNOWN_CALLER = {"number": "+15550009999", "label": "Unknown caller (not in the EHR)"}

DEMO_ACCOUNT_SID = "AC" + "0" * 32
# Parameters the page may set on top of the call's own; everything else is fixed by the simulator.
PAGE_PARAMS = frozenset({"Digits", "CallStatus", "CallDuration", "FinishedOnKey"})
_IVR_PATH = re.compile(r"^/ivr/voice/[A-Za-z0-9/_-]*(\?[A-Za-z0-9=&_-]*)?$")
HTTP_TIMEOUT_SECONDS = 15.0  # Twilio's own limit for a webhook answer


class SimulatorRequestError(ValueError):
    """The page's request is not one the simulator will sign (bad JSON, path outside /ivr/voice/, ...)."""


def twilio_params(*, call_sid: str, from_number: str, to_number: str, extra: dict[str, str]) -> dict[str, str]:
    """The form parameters Twilio posts for an inbound call's webhooks (see tests/fixtures/twilio_requests/),
    with `extra` (Digits, CallStatus, CallDuration) on top."""
    params = {
        "AccountSid": DEMO_ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "in-progress",
        "Called": to_number,
        "Caller": from_number,
        "Direction": "inbound",
        "From": from_number,
        "To": to_number,
    }
    params.update(extra)
    return params


def parse_page_request(body: bytes) -> tuple[str, dict[str, str], dict[str, str]]:
    """`(path, call, params)` from the page's JSON. A missing call SID on `/ivr/voice/` starts a new call.

    Raises SimulatorRequestError.
    """
    try:
        payload = json.loads(body or b"{}")
    except ValueError as exc:
        raise SimulatorRequestError("body is not JSON") from exc
    path = str(payload.get("path", ""))
    if not _IVR_PATH.match(path) or ".." in path:
        raise SimulatorRequestError("path must be an /ivr/voice/ webhook")
    call = payload.get("call") or {}
    sid = str(call.get("sid") or "")
    if not sid:
        sid = "CA" + uuid.uuid4().hex
    if not re.fullmatch(r"CA[0-9a-f]{32}", sid):
        raise SimulatorRequestError("bad CallSid")
    from_number, to_number = str(call.get("from", "")).strip(), str(call.get("to", "")).strip()
    if not from_number or not to_number:
        raise SimulatorRequestError("from and to are required")
    params = {str(k): str(v) for k, v in (payload.get("params") or {}).items() if k in PAGE_PARAMS}
    return path, {"sid": sid, "from": from_number, "to": to_number}, params


def says_of(actions: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The `<Say>` texts of a TwiML document's actions, with their language."""
    return [{"text": a["text"], "language": a["language"]} for a in actions if a["verb"] == "say"]


@require_POST
async def simulator_post(request: HttpRequest) -> HttpResponse:
    """`POST /simulator/api/post/` (JSON): sign and post one webhook like Twilio; answer the TwiML as JSON.

    Answer: `{"status": http status, "callSid", "actions": [...], "says": [{"text", "language"}]}`;
    400 for a request the simulator will not sign, 502 when the IVR could not be reached.
    """
    if not settings.CARELINE_DEMO:
        raise Http404
    try:
        path, call, extra = parse_page_request(request.body)
    except SimulatorRequestError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    own_base = f"{request.scheme}://{request.get_host()}"
    signed_base = (settings.PUBLIC_BASE_URL or own_base).rstrip("/")
    params = twilio_params(call_sid=call["sid"], from_number=call["from"], to_number=call["to"], extra=extra)
    headers = {SIGNATURE_HEADER: compute_signature(signed_base + path, params), "User-Agent": "TwilioProxy/1.1"}
    try:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as client:
            reply = await client.post(own_base + path, data=params, headers=headers)
    except httpx.HTTPError as exc:
        logger.warning("simulator: IVR not reachable (%s)", type(exc).__name__)
        return JsonResponse({"error": f"IVR not reachable: {type(exc).__name__}"}, status=502)
    actions: list[dict[str, Any]] = []
    error = ""
    if reply.status_code == 200 and reply.content:
        try:
            actions = twiml_to_actions(reply.content)
        except InvalidTwiml as exc:
            error = f"invalid TwiML: {exc}"
    elif reply.status_code >= 400:
        error = reply.text[:200]
    return JsonResponse(
        {
            "status": reply.status_code,
            "callSid": call["sid"],
            "actions": actions,
            "says": says_of(actions),
            "error": error,
        }
    )


@require_GET
def simulator_page(request: HttpRequest) -> HttpResponse:
    """`GET /simulator/`: the phone simulator page (demo only)."""
    if not settings.CARELINE_DEMO:
        raise Http404
    return render(
        request,
        "ivr/simulator.html",
        {
            "callers": (*demo_callers(), UNKNOWN_CALLER),
            "clinics": Clinic.objects.order_by("name").values("name", "twilio_number"),
            "endpoint": reverse("simulator:post"),
            "status_path": reverse("ivr:status"),
            "voice_path": reverse("ivr:voice"),
        },
    )
