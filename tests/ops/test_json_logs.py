"""JSON log lines (LOG_FORMAT=json): one object per record with the request id of the request being served
and the node id, through the formatter and filters settings.LOGGING configures."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import Client

from careline.middleware import NodeIdLogFilter, RequestIdLogFilter
from tests.e2e.test_no_phi_in_logs import configured_formatter

pytestmark = pytest.mark.django_db


def test_a_request_logs_json_with_its_request_id_and_node(client: Client, node: str):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configured_formatter("json"))
    handler.addFilter(RequestIdLogFilter())
    handler.addFilter(NodeIdLogFilter())
    logger = logging.getLogger("ivr.twilio.signature")
    logger.addHandler(handler)
    try:
        response = client.post("/ivr/voice/", {"CallSid": "CA" + "1" * 32, "From": "+15550001111", "To": "+1"})
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 403
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["request_id"] == response["X-Request-ID"] and len(line["request_id"]) == 32
    assert line["node"] == node
    assert line["level"] == "WARNING" and line["logger"] == "ivr.twilio.signature"
    assert "refused" in line["message"] and "+15550001111" not in stream.getvalue()


def test_production_defaults_to_json_logs(monkeypatch: pytest.MonkeyPatch):
    import importlib
    import sys

    for name, value in {
        "DJANGO_SECRET_KEY": "x" * 50,
        "TWILIO_AUTH_TOKEN": "t",
        "PUBLIC_BASE_URL": "https://careline.example",
        "ALLOWED_HOSTS": "careline.example",
        "FIELD_ENCRYPTION_KEYS": "k1:" + "A" * 43 + "=",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    sys.modules.pop("careline.settings.production", None)
    production = importlib.import_module("careline.settings.production")
    try:
        assert production.LOGGING["handlers"]["console"]["formatter"] == "json"
        assert production.LOGGING["handlers"]["console"]["filters"] == ["request_id", "node_id"]
    finally:
        sys.modules.pop("careline.settings.production", None)
