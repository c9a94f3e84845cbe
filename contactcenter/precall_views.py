"""Pre-call test edges: the echo endpoint (`POST /precall/offer/`), hang-up, and the staff page.

`POST /precall/offer/` — JSON ``{"type": "offer", "sdp": "..."}`` -> 200 ``{"type": "answer", "sdp": "...",
"session": "<id>", "max_seconds": 30}``. Authorized by a pre-call token in the ``X-Precall-Token`` header
(`contactcenter.precall.precall_token`, rendered into the patient's visit page) or, without a token, by a
signed-in staff session (CSRF-checked, as for any session-authenticated POST). 403 for anything else
(forged, expired or wrong-salt token; anonymous; signed in but not staff); 429 + Retry-After past the rate
limit; 503 + Retry-After when this process runs `PRECALL_MAX_SESSIONS` echoes; 400 for a body that is not
an SDP offer with audio or video.

`POST /precall/sessions/<id>/hangup/` — ends a session now (204; 404 if it already ended). The session id is
an unguessable capability returned only to the caller that made the offer.

Async views: the echo peer lives on daphne's event loop, after the response is sent.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from clinics.selectors import NotStaff, staff_for_user
from contactcenter import precall

TOKEN_HEADER = "X-Precall-Token"


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    """Django's CSRF check for a session-authenticated call (the view is exempt so token calls need none)."""

    def _unused(_: HttpRequest) -> HttpResponse:
        return HttpResponse()

    return CsrfViewMiddleware(_unused).process_view(request, None, (), {})  # type: ignore[arg-type]


async def _rate_key(request: HttpRequest) -> str:
    """The rate-limit key of an authorized caller: ``token:<subject>`` or ``session:<key>``; raises
    PermissionDenied for anyone else."""
    token = request.headers.get(TOKEN_HEADER, "")
    if token:
        try:
            return f"token:{precall.precall_subject(token)}"
        except precall.InvalidPrecallToken as exc:
            raise PermissionDenied("Invalid or expired pre-call token.") from exc
    user = await request.auser()
    if not user.is_authenticated:
        raise PermissionDenied("A pre-call token or a staff sign-in is required.")
    try:
        await sync_to_async(staff_for_user)(user)
    except NotStaff as exc:
        raise PermissionDenied("Not a member of any clinic.") from exc
    if _csrf_failure(request) is not None:
        raise PermissionDenied("CSRF check failed.")
    return f"session:{request.session.session_key}"


def _retry(status: int, message: str, retry_after: int) -> JsonResponse:
    response = JsonResponse({"error": message, "retry_after": retry_after}, status=status)
    response["Retry-After"] = str(retry_after)
    return response


@csrf_exempt
@require_POST
async def offer(request: HttpRequest) -> HttpResponse:
    """Answer a pre-call offer with a server-side echo peer (see the module docstring for the contract)."""
    key = await _rate_key(request)
    try:
        await precall.count_offer(key=key)
    except precall.RateLimited as exc:
        return _retry(429, "Too many pre-call tests; try again later.", exc.retry_after)
    try:
        body: Any = json.loads(request.body)
        sdp, kind = body["sdp"], body["type"]
        if not isinstance(sdp, str) or not isinstance(kind, str):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": "Expected JSON {type: 'offer', sdp: '...'}."}, status=400)
    try:
        session_id, answer = await precall.echo_answer(sdp=sdp, type=kind)
    except precall.EchoCapacityExceeded as exc:
        return _retry(503, "The pre-call test is busy; try again shortly.", exc.retry_after)
    except precall.InvalidOffer as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(
        {
            "type": "answer",
            "sdp": answer,
            "session": session_id,
            "max_seconds": settings.PRECALL_MAX_SECONDS,
            "hangup_url": reverse("precall:hangup", kwargs={"session_id": session_id}),
        }
    )


@csrf_exempt
@require_POST
async def hangup(request: HttpRequest, session_id: str) -> HttpResponse:
    """End an echo session now: 204, or 404 if it had already ended (time limit, failure, earlier hang-up)."""
    if await precall.hang_up(session_id=session_id):
        return HttpResponse(status=204)
    return HttpResponse(status=404)
