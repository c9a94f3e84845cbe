"""Post webhooks exactly as Twilio does: form-encoded, signed with `X-Twilio-Signature`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.test import Client
from twilio.request_validator import RequestValidator


def sign(path: str, params: dict[str, str], *, token: str | None = None, base: str | None = None) -> str:
    """The signature Twilio would send for a POST of `params` to `PUBLIC_BASE_URL + path`."""
    url = (base or settings.PUBLIC_BASE_URL).rstrip("/") + path
    return RequestValidator(token or settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)


def signed_post(client: Client, path: str, params: dict[str, str], **extra: Any) -> Any:
    """POST `params` to `path` with a valid Twilio signature; returns the test client's response."""
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=sign(path, params), **extra)
