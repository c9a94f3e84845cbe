"""Short-lived TURN credentials in coturn's REST-API scheme (`use-auth-secret` / `static-auth-secret`).

Source: coturn's `turnserver.conf` documentation of `use-auth-secret` and the IETF draft it implements
("A REST API For Access To TURN Services", draft-uberti-behave-turn-rest-00 §2.2): the username is
`"<expiry unix time>:<id>"` and the password is `base64(HMAC-SHA1(secret, username))`. coturn recomputes
the password from the username and refuses it once the expiry time has passed, so nothing is stored here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class TurnCredentials:
    """What a browser passes to `new RTCPeerConnection({iceServers})`.

    `urls`: the TURN URLs (`turn:host:port?transport=udp`, ...); `username` / `credential`: the REST-API
    pair; `ttl`: seconds they stay valid (from issue time).
    """

    urls: tuple[str, ...]
    username: str
    credential: str
    ttl: int

    def as_json(self) -> dict[str, Any]:
        """`{"iceServers": [{"urls", "username", "credential"}], "ttl"}`; no iceServers without TURN URLs."""
        servers = (
            [{"urls": list(self.urls), "username": self.username, "credential": self.credential}] if self.urls else []
        )
        return {"iceServers": servers, "ttl": self.ttl}


def turn_password(*, secret: str, username: str) -> str:
    """`base64(HMAC-SHA1(secret, username))`: coturn's password for `username` under `static-auth-secret`."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def turn_credentials(*, user_id: str, now: float | None = None) -> TurnCredentials:
    """Credentials valid for `TURN_TTL_SECONDS` from `now` (unix seconds; default the current time).

    `user_id` becomes the part after the colon (coturn logs it; pass an opaque id, never a name or a
    phone number). Settings: `TURN_URLS` (list), `TURN_SECRET`, `TURN_TTL_SECONDS`. Without a secret the
    username and credential are empty and no iceServers are returned.
    """
    ttl = int(settings.TURN_TTL_SECONDS)
    secret = str(settings.TURN_SECRET)
    urls = tuple(settings.TURN_URLS) if secret else ()
    if not urls:
        return TurnCredentials(urls=(), username="", credential="", ttl=ttl)
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{user_id}"
    return TurnCredentials(
        urls=urls, username=username, credential=turn_password(secret=secret, username=username), ttl=ttl
    )
