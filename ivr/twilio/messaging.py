"""Outbound SMS through Twilio's Messages API (`twilio.rest.Client(...).messages.create`)."""

from __future__ import annotations

from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client


class SmsError(Exception):
    """Base class of SMS sending errors."""


class SmsUnavailable(SmsError):
    """Twilio could not be reached or answered 5xx / 429. Retry later."""


class SmsRejected(SmsError):
    """Twilio refused the message (4xx, e.g. 21211 invalid 'To'). Retrying the same message will not help."""


class SmsNotConfigured(SmsError):
    """No `TWILIO_ACCOUNT_SID`: messages are recorded, never sent."""


def sending_enabled() -> bool:
    """True when a Twilio account is configured (`TWILIO_ACCOUNT_SID`)."""
    return bool(settings.TWILIO_ACCOUNT_SID)


def send_sms(*, to: str, from_number: str, body: str, status_callback: str = "") -> str:
    """Send one SMS; returns Twilio's Message SID (`SM...`).

    `to` and `from_number` are E.164; `status_callback` (absolute URL, optional) receives the delivery
    status (`POST /ivr/sms/status/`). Raises SmsNotConfigured, SmsRejected (4xx except 429), SmsUnavailable
    (transport errors, 429, 5xx).
    """
    if not sending_enabled():
        raise SmsNotConfigured("TWILIO_ACCOUNT_SID is not set")
    client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
    try:
        extra = {"status_callback": status_callback} if status_callback else {}
        message = client.messages.create(to=to, from_=from_number, body=body, **extra)
    except TwilioRestException as exc:
        if exc.status == 429 or exc.status >= 500:
            raise SmsUnavailable(f"HTTP {exc.status} code {exc.code}") from exc
        raise SmsRejected(f"HTTP {exc.status} code {exc.code}") from exc
    except (TwilioException, OSError) as exc:
        raise SmsUnavailable(type(exc).__name__) from exc
    return str(message.sid)
