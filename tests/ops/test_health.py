"""`/healthz` and `/readyz` (careline.health): liveness without dependencies, readiness on the real database and
Redis channel layer, 503 while the node drains or when the channel layer is unreachable."""

from __future__ import annotations

import pytest
from channels.layers import channel_layers
from django.conf import settings
from django.test import Client, override_settings

from careline import drain

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_session_or_allowed_host(client: Client, node: str):
    with override_settings(ALLOWED_HOSTS=["careline.example"]):
        response = client.get("/healthz", HTTP_HOST="10.0.0.7:8001")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "node": node}


def test_readyz_checks_database_and_channel_layer(client: Client, node: str):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready" and body["node"] == node
    assert body["checks"]["database"]["ok"] is True and body["checks"]["database"]["ms"] >= 0
    assert body["checks"]["channel_layer"]["ok"] is True
    assert body["checks"]["draining"] == {"ok": True}
    assert response["Cache-Control"] == "no-store"


def test_readyz_is_503_while_draining_and_ready_again_after_cancel(client: Client, node: str):
    drain.drain_start(node=node, timeout_seconds=30)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unready"
    assert response.json()["checks"]["draining"] == {"ok": False}
    assert client.get("/healthz").status_code == 200  # liveness unaffected: the process is fine
    drain.drain_cancel(node=node)
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_channel_layer_is_unreachable(client: Client, node: str):
    broken = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"], "prefix": "readyz-broken"},
        }
    }
    channel_layers.backends = {}
    try:
        with override_settings(CHANNEL_LAYERS=broken, READYZ_TIMEOUT_SECONDS=1.0):
            response = client.get("/readyz")
    finally:
        channel_layers.backends = {}
    assert response.status_code == 503
    check = response.json()["checks"]["channel_layer"]
    assert check["ok"] is False and check["error"]
    assert "127.0.0.1:9" not in response.content.decode()  # no connection details leak
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] != ["redis://127.0.0.1:9/0"]
