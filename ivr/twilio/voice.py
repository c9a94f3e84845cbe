"""Outbound calls through Twilio's Calls API (`twilio.rest.Client(...).calls.create`).

Source: Twilio REST API, "Call resource: create a Call" - `to`, `from_`, `url` (TwiML fetched when the
callee answers), `status_callback` with `status_callback_event` (initiated, ringing, answered, completed)
and `timeout` (seconds to let the phone ring).
"""

from __future__ import annotations

from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from ivr.twilio.messaging import SmsNotConfigured, SmsRejected, SmsUnavailable, sending_enabled

# The same three outcomes as SMS sending; named for calls where that reads better.
CallNotConfigured = SmsNotConfigured
CallRejected = SmsRejected
CallUnavailable = SmsUnavailable

RING_TIMEOUT_SECONDS = 25


def place_call(*, to: str, from_number: str, url: str, status_callback: str) -> str:
    """Place one call; returns Twilio's CallSid (`CA...`).

    `to`, `from_number` E.164; `url` the absolute TwiML URL fetched when `to` answers; `status_callback`
    the absolute URL posted at each status change. Rings `to` for `RING_TIMEOUT_SECONDS` (25 s).
    Raises CallNotConfigured, CallRejected (4xx except 429), CallUnavailable (transport errors, 429, 5xx).
    """
    if not sending_enabled():
        raise CallNotConfigured("TWILIO_ACCOUNT_SID is not set")
    client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
    try:
        call = client.calls.create(
            to=to,
            from_=from_number,
            url=url,
            method="POST",
            status_callback=status_callback,
            status_callback_method="POST",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            timeout=RING_TIMEOUT_SECONDS,
        )
    except TwilioRestException as exc:
        if exc.status == 429 or exc.status >= 500:
            raise CallUnavailable(f"HTTP {exc.status} code {exc.code}") from exc
        raise CallRejected(f"HTTP {exc.status} code {exc.code}") from exc
    except (TwilioException, OSError) as exc:
        raise CallUnavailable(type(exc).__name__) from exc
    return str(call.sid)
