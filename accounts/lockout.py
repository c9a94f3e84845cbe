"""The lockout reply (django-axes `AXES_LOCKOUT_CALLABLE`): a page for people, 429 JSON for the API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

LOCKED_MESSAGE = (
    "Too many failed sign-in attempts. Sign-in for this account from this address is locked for {minutes} "
    "minutes. If you need access now, ask your clinic admin or supervisor."
)


def locked_minutes() -> int:
    """AXES_COOLOFF_TIME in whole minutes (at least 1)."""
    return max(1, int(settings.AXES_COOLOFF_TIME.total_seconds() // 60))


def response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """HTTP 429 with `Retry-After` (seconds): JSON `{"detail": ...}` under /api/, else the lockout page."""
    message = LOCKED_MESSAGE.format(minutes=locked_minutes())
    if request.path.startswith("/api/"):
        reply: HttpResponse = JsonResponse({"detail": message, "code": "locked_out"}, status=429)
    else:
        reply = render(request, "accounts/locked_out.html", {"message": message}, status=429)
    reply["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return reply
