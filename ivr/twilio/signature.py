"""Verification of Twilio webhooks: `X-Twilio-Signature` over the public URL, then the call parameters.

Source of the rules: Twilio, "Webhooks security" — the signature is HMAC-SHA1 (auth token) over the full
URL Twilio requested (scheme, host, path and query) followed by the POST parameters sorted by name, base64.
`twilio.request_validator.RequestValidator` implements it (and accepts the URL with or without the port).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, overload

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, QueryDict
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from careline.metrics import record_ivr_webhook
from clinics import db_scope

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
REQUIRED_PARAMS = ("CallSid", "From", "To")
_CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")


_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
MESSAGE_REQUIRED_PARAMS = ("MessageSid", "From", "To")
STATUS_REQUIRED_PARAMS = ("MessageSid", "MessageStatus")


class MalformedTwilioRequest(ValueError):
    """A signed request lacks a parameter every webhook of its kind carries (voice: CallSid, From, To;
    messaging: MessageSid, From, To; message status: MessageSid, MessageStatus)."""


def _require(post: QueryDict, names: tuple[str, ...]) -> dict[str, str]:
    missing = [name for name in names if not str(post.get(name, "")).strip()]
    if missing:
        raise MalformedTwilioRequest(f"missing {', '.join(missing)}")
    return {key: str(post.get(key, "")).strip() for key in post}


@dataclass(frozen=True)
class TwilioCall:
    """The parameters of a voice webhook that the IVR uses.

    `from_number` / `to_number` are as Twilio sent them (E.164, or e.g. "anonymous" for a withheld caller
    ID); `digits` is what `<Gather>` collected ("" for no input); `call_duration` is in seconds (status
    callbacks only); `params` holds every posted parameter.
    """

    call_sid: str
    from_number: str
    to_number: str
    digits: str
    call_status: str
    call_duration: int | None
    params: dict[str, str]

    @classmethod
    def from_post(cls, post: QueryDict) -> TwilioCall:
        """Parse a webhook's form parameters. Raises MalformedTwilioRequest when CallSid/From/To is missing."""
        value = _require(post, REQUIRED_PARAMS)
        duration = value.get("CallDuration", "")
        return cls(
            call_sid=value["CallSid"],
            from_number=value["From"],
            to_number=value["To"],
            digits=value.get("Digits", ""),
            call_status=value.get("CallStatus", ""),
            call_duration=int(duration) if duration.isdigit() else None,
            params=value,
        )


@dataclass(frozen=True)
class TwilioMessage:
    """The parameters of an incoming-message webhook (`POST /ivr/sms/`): `message_sid` (SM.../MM...),
    `from_number` / `to_number` (E.164), `body` (the text, up to 1,600 characters; "" for media only),
    `params` every posted parameter."""

    message_sid: str
    from_number: str
    to_number: str
    body: str
    params: dict[str, str]

    @classmethod
    def from_post(cls, post: QueryDict) -> TwilioMessage:
        """Parse the form parameters. Raises MalformedTwilioRequest when MessageSid/From/To is missing."""
        value = _require(post, MESSAGE_REQUIRED_PARAMS)
        # The body keeps its inner spacing; only the ends are trimmed (as for every parameter).
        return cls(
            message_sid=value["MessageSid"],
            from_number=value["From"],
            to_number=value["To"],
            body=value.get("Body", ""),
            params=value,
        )


@dataclass(frozen=True)
class TwilioMessageStatus:
    """A Messages status callback: `message_sid`, `status` (`MessageStatus`: queued, sent, delivered,
    undelivered, failed...), `error_code` ("" when none)."""

    message_sid: str
    status: str
    error_code: str

    @classmethod
    def from_post(cls, post: QueryDict) -> TwilioMessageStatus:
        """Parse the form parameters. Raises MalformedTwilioRequest when MessageSid/MessageStatus is missing."""
        value = _require(post, STATUS_REQUIRED_PARAMS)
        return cls(
            message_sid=value["MessageSid"], status=value["MessageStatus"], error_code=value.get("ErrorCode", "")
        )


def public_url(request: HttpRequest) -> str:
    """The URL Twilio requested: `PUBLIC_BASE_URL` + path and query when set (behind a proxy), else the
    URL as this server saw it (`request.build_absolute_uri()`)."""
    if settings.PUBLIC_BASE_URL:
        return str(settings.PUBLIC_BASE_URL).rstrip("/") + request.get_full_path()
    return request.build_absolute_uri()


def compute_signature(url: str, params: dict[str, str]) -> str:
    """The `X-Twilio-Signature` Twilio would send for a POST of `params` to `url` (the simulator signs with it)."""
    return str(RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params))


def signature_is_valid(request: HttpRequest) -> bool:
    """True when the request carries a signature that matches its public URL and POST parameters."""
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        return False
    return bool(RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(public_url(request), request.POST, signature))


def _sid_for_log(request: HttpRequest) -> str:
    """The CallSid (or MessageSid) if it has Twilio's shape (so a forged request cannot inject text into the
    log), else "-"."""
    sid = request.POST.get("CallSid", "")
    if _CALL_SID.match(sid):
        return sid
    sid = request.POST.get("MessageSid", "")
    return sid if _MESSAGE_SID.match(sid) else "-"


View = Callable[..., HttpResponse]


@overload
def twilio_webhook(view: View) -> View: ...
@overload
def twilio_webhook(*, payload: Callable[[QueryDict], Any]) -> Callable[[View], View]: ...


def twilio_webhook(
    view: View | None = None, *, payload: Callable[[QueryDict], Any] = TwilioCall.from_post
) -> View | Callable[[View], View]:
    """Decorate a Twilio webhook view: POST only, CSRF-exempt, signature verified, parameters parsed.

    `@twilio_webhook` (voice): the view is called as `view(request, call: TwilioCall, *args, **kwargs)`.
    `@twilio_webhook(payload=TwilioMessage.from_post)` (messaging) passes a `TwilioMessage` instead, and
    `payload=TwilioMessageStatus.from_post` a status callback. A missing or wrong signature answers 403, a
    signed request without the kind's required parameters answers 400; neither reaches the view, so
    nothing is written. The view runs in the database's system scope (`clinics.db_scope`). Log lines carry
    the path, the reason and the Call/Message SID only (no number: PHI).

    Every answer is timed (`careline_ivr_webhook_seconds{webhook=<view name>, status}`), and counted towards
    the clinic's IVR latency SLO when the view resolved the clinic (`request.careline_clinic_id`).
    """
    if view is None:
        return lambda inner: _verified(inner, payload)
    return _verified(view, payload)


def _verified(view: View, payload: Callable[[QueryDict], Any]) -> View:
    @csrf_exempt
    @require_POST
    @wraps(view)
    def timed(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        started = time.perf_counter()
        response = verified(request, *args, **kwargs)
        record_ivr_webhook(
            webhook=view.__name__,
            status=response.status_code,
            seconds=time.perf_counter() - started,
            clinic_id=getattr(request, "careline_clinic_id", None),
        )
        return response

    def verified(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not signature_is_valid(request):
            reason = "missing" if SIGNATURE_HEADER not in request.headers else "invalid"
            logger.warning(
                "twilio webhook %s refused: %s signature (CallSid %s)", request.path, reason, _sid_for_log(request)
            )
            return HttpResponseForbidden("invalid signature")
        try:
            parsed = payload(request.POST)
        except MalformedTwilioRequest as exc:
            logger.warning("twilio webhook %s refused: %s (CallSid %s)", request.path, exc, _sid_for_log(request))
            return HttpResponseBadRequest("malformed webhook")
        # Twilio acts for the service, not a staff member: system scope for row-level security (the view finds
        # the clinic from the called number, `To`, and scopes its own queries to it).
        with db_scope.system_scope():
            return view(request, parsed, *args, **kwargs)

    return timed
