"""Session limits and the OTP gate, for every HTTP request.

`SessionTimeoutMiddleware`: a signed-in session ends after `SESSION_IDLE_TIMEOUT_SECONDS` (15 min) without
activity or `SESSION_ABSOLUTE_TIMEOUT_SECONDS` (12 h) after sign-in, whatever happens in between (ASVS 5.0
V7.3.1/V7.3.2; HIPAA 164.312(a)(2)(iii) automatic logoff). *Activity* is a page load or a form submission;
background refreshes are not: a GET sent by htmx (`HX-Request` header: the console's 30 s polling and its
WebSocket-triggered re-fetches) and the WebSocket keepalive never extend a session, so a console left open
by a nurse who walked away signs out. The timestamps live in the session (`SESSION_STARTED_KEY`,
`SESSION_ACTIVITY_KEY`, Unix seconds) so every process and the WebSocket consumers (`careline.ws`) read the
same ones.

`OtpRequiredMiddleware`: a user who passed the password but not the OTP step reaches only the OTP pages,
sign-out and static files; pages redirect to the OTP step, the API answers 403 JSON. Nothing PHI-bearing
(console, API, admin) is reachable before `request.user.is_verified()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse

SESSION_STARTED_KEY = "careline_auth_started_at"
SESSION_ACTIVITY_KEY = "careline_last_activity_at"
# The activity stamp is rewritten at most this often (seconds): fewer session writes, at most this much slack.
ACTIVITY_WRITE_GRANULARITY_SECONDS = 15

# Reachable while signed in but not yet OTP-verified (prefixes of request.path).
OTP_EXEMPT_PREFIXES = ("/accounts/", "/static/", "/ivr/", "/simulator/", "/.well-known/")


def session_expired_reason(session: object, *, now: float | None = None) -> str:
    """ "idle", "absolute" or "" for a session mapping holding the stamps (missing stamps: not expired)."""
    now = time.time() if now is None else now
    get = getattr(session, "get", None)
    if get is None:
        return ""
    started = get(SESSION_STARTED_KEY)
    last = get(SESSION_ACTIVITY_KEY)
    if started is not None and now - float(started) >= settings.SESSION_ABSOLUTE_TIMEOUT_SECONDS:
        return "absolute"
    if last is not None and now - float(last) >= settings.SESSION_IDLE_TIMEOUT_SECONDS:
        return "idle"
    return ""


def session_deadline(session: object) -> float | None:
    """Unix time at which the session expires unless there is activity first (None: no stamps)."""
    get = getattr(session, "get", None)
    if get is None:
        return None
    started, last = get(SESSION_STARTED_KEY), get(SESSION_ACTIVITY_KEY)
    deadlines = []
    if started is not None:
        deadlines.append(float(started) + settings.SESSION_ABSOLUTE_TIMEOUT_SECONDS)
    if last is not None:
        deadlines.append(float(last) + settings.SESSION_IDLE_TIMEOUT_SECONDS)
    return min(deadlines) if deadlines else None


def stamp_new_session(session: object, *, now: float | None = None) -> None:
    """Start both clocks (called on sign-in)."""
    now = time.time() if now is None else now
    session[SESSION_STARTED_KEY] = now  # type: ignore[index]
    session[SESSION_ACTIVITY_KEY] = now  # type: ignore[index]


def _is_activity(request: HttpRequest) -> bool:
    return not (request.method in ("GET", "HEAD") and request.headers.get("HX-Request") == "true")


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


class SessionTimeoutMiddleware:
    """Sign out sessions past their idle or absolute limit (audited `auth.session_expired`, sockets closed)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            if SESSION_STARTED_KEY not in request.session:  # a session from before this check existed
                stamp_new_session(request.session)
            reason = session_expired_reason(request.session)
            if reason:
                from accounts.services import audit_auth
                from accounts.sockets import close_user_sockets

                audit_auth(user=user, action="auth.session_expired", reason=reason)
                close_user_sockets(user_id=user.pk, reason="expired")
                request.careline_session_expired = True  # type: ignore[attr-defined]  # (logout is not audited twice)
                logout(request)
                if _wants_json(request):
                    return JsonResponse({"detail": "Your session expired. Sign in again."}, status=401)
                return redirect(f"{reverse('login')}?expired={reason}")
            now = time.time()
            last = float(request.session.get(SESSION_ACTIVITY_KEY, 0))
            if _is_activity(request) and now - last >= ACTIVITY_WRITE_GRANULARITY_SECONDS:
                request.session[SESSION_ACTIVITY_KEY] = now
        return self.get_response(request)


class OtpRequiredMiddleware:
    """Keep a signed-in but not OTP-verified session out of everything but the OTP step (see module doc)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not user.is_verified()
            and not request.path.startswith(OTP_EXEMPT_PREFIXES)
        ):
            if _wants_json(request):
                return JsonResponse({"detail": "Two-factor verification required."}, status=403)
            return redirect(f"{reverse('otp-verify')}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)
