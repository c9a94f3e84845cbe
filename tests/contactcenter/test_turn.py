"""TURN credentials (`contactcenter.turn`) in coturn's REST-API scheme, checked against a real coturn."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from aioice.stun import TransactionFailed
from aioice.turn import create_turn_endpoint

from contactcenter.turn import turn_credentials, turn_password
from tests.fixtures.coturn import RELAY_PORTS, TurnServer, free_port, running_turnserver


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


def _readme_production_coturn_config() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("Production coturn", 1)[1]
    return section.split("```ini\n", 1)[1].split("```", 1)[0]


async def _channel_bind(server: Any, username: str, password: str, peer: tuple[str, int]) -> None:
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol, server_addr=(server.host, server.port), username=username, password=password
        ),
        timeout=10,
    )
    try:
        # aioice binds a channel (which installs the permission, RFC 8656 §12) on the first send to a peer;
        # calling it directly surfaces the server's answer. Name-mangled attribute of aioice's TurnTransport.
        protocol = transport._TurnTransport__inner_protocol  # type: ignore[attr-defined]
        await asyncio.wait_for(protocol.channel_bind(0x4000, peer), timeout=10)
    finally:
        transport.close()


def test_readme_production_config_denies_private_loopback_and_link_local_peers(tmp_path, settings, turn_server):
    """The README's production coturn configuration, run for real (only its listening and TLS lines are
    swapped for loopback ones): relaying to loopback, RFC 1918, CGNAT and link-local peers is refused
    (403 Forbidden IP)."""
    port = free_port()
    keep = [
        line
        for line in _readme_production_coturn_config().splitlines()
        if not line.startswith(
            (
                "listening-port",
                "tls-listening-port",
                "cert=",
                "pkey=",
                "external-ip",
                "min-port",
                "max-port",
                "static-auth-secret",
            )
        )
    ]
    assert "denied-peer-ip=127.0.0.0-127.255.255.255" in keep and "no-loopback-peers" in keep
    secret = "readme-test-secret"
    config = "\n".join(
        [
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            f"listening-port={port}",
            f"min-port={RELAY_PORTS[0]}",
            f"max-port={RELAY_PORTS[1]}",
            f"static-auth-secret={secret}",
            "no-tls",
            "no-dtls",
            f"userdb={tmp_path / 'turndb'}",
            f"pidfile={tmp_path / 'turnserver.pid'}",
            "log-file=stdout",
            *keep,
            "",
        ]
    )
    server = TurnServer(host="127.0.0.1", port=port, secret=secret, realm="turn.example.org")
    settings.TURN_URLS = [server.url]
    settings.TURN_SECRET = secret
    with running_turnserver(config, port=port, folder=tmp_path):
        creds = turn_credentials(user_id="1-patient")
        for peer in ("127.0.0.1", "10.1.2.3", "172.16.0.5", "192.168.1.10", "169.254.169.254", "100.64.0.1"):
            with pytest.raises(TransactionFailed, match="403"):
                asyncio.run(_channel_bind(server, creds.username, creds.credential, (peer, 9)))

    # Control: the loopback test server (allow-loopback-peers) accepts the same request for 127.0.0.1, so the
    # refusals above come from the configuration, not from the client.
    settings.TURN_URLS = [turn_server.url]
    settings.TURN_SECRET = turn_server.secret
    creds = turn_credentials(user_id="1-patient")
    asyncio.run(_channel_bind(turn_server, creds.username, creds.credential, ("127.0.0.1", 9)))
