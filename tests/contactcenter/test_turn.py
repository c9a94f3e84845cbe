"""TURN credentials (`contactcenter.turn`) in coturn's REST-API scheme, checked against a real coturn."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac

import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint

from contactcenter.turn import turn_credentials, turn_password


def test_password_is_base64_hmac_sha1_of_the_username():
    # Independent vector: printf '%s' '1700000000:42-nurse' | openssl dgst -sha1 -hmac secret -binary | base64
    assert (
        turn_password(secret="secret", username="1700000000:42-nurse")
        == base64.b64encode(hmac.new(b"secret", b"1700000000:42-nurse", hashlib.sha1).digest()).decode()
    )
    assert turn_password(secret="secret", username="1700000000:42-nurse") == "zZxo7DqOvdDtKnVGkpLxzNy+MK4="


def test_username_is_expiry_colon_id_and_settings_apply(settings):
    settings.TURN_URLS = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]
    settings.TURN_SECRET = "s3cret"
    settings.TURN_TTL_SECONDS = 600
    creds = turn_credentials(user_id="7-patient", now=1_700_000_000)
    assert creds.username == "1700000600:7-patient"
    assert creds.credential == turn_password(secret="s3cret", username="1700000600:7-patient")
    assert creds.as_json() == {
        "iceServers": [
            {
                "urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"],
                "username": "1700000600:7-patient",
                "credential": creds.credential,
            }
        ],
        "ttl": 600,
    }


def test_no_secret_no_ice_servers(settings):
    settings.TURN_URLS = ["turn:turn.example.org:3478"]
    settings.TURN_SECRET = ""
    assert turn_credentials(user_id="1-nurse").as_json()["iceServers"] == []


async def _allocate(server, username: str, password: str) -> tuple[str, int]:
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol, server_addr=(server.host, server.port), username=username, password=password
        ),
        timeout=10,
    )
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


def test_coturn_accepts_the_credentials_and_refuses_expired_or_forged_ones(settings, turn_server):
    settings.TURN_URLS = [turn_server.url]
    settings.TURN_SECRET = turn_server.secret
    settings.TURN_TTL_SECONDS = 300
    good = turn_credentials(user_id="1-nurse")
    host, port = asyncio.run(_allocate(turn_server, good.username, good.credential))
    assert host == "127.0.0.1" and 22100 <= port <= 22999  # a relayed address was allocated

    settings.TURN_TTL_SECONDS = -5  # already expired
    expired = turn_credentials(user_id="1-nurse")
    with pytest.raises(TransactionFailed, match="401"):
        asyncio.run(_allocate(turn_server, expired.username, expired.credential))

    settings.TURN_TTL_SECONDS = 300
    settings.TURN_SECRET = "not-the-servers-secret"
    forged = turn_credentials(user_id="1-nurse")
    with pytest.raises(TransactionFailed, match="401"):
        asyncio.run(_allocate(turn_server, forged.username, forged.credential))
