"""Security headers in every environment and `check --deploy` of the production settings (issue 6, Edges).

ASVS 5.0 V3.4 (browser security headers): Content-Security-Policy without 'unsafe-inline', nosniff,
Referrer-Policy, frame-ancestors / X-Frame-Options, COOP, Permissions-Policy; HIPAA 164.312(e)(1)
(transmission security): HSTS, secure cookies, TLS redirect in production.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.conftest import PASSWORD

ROOT = Path(settings.BASE_DIR)

pytestmark = pytest.mark.django_db


def _csp(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def test_production_settings_pass_check_deploy_with_no_warnings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "careline.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "PUBLIC_BASE_URL": "https://careline.example",
        "ALLOWED_HOSTS": "careline.example",
        # Production refuses to start without its own field-encryption key (never the demo or test key).
        "FIELD_ENCRYPTION_KEYS": "prod-1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_check_deploy_fails_with_a_weak_secret_key():
    """Control: the check is real; a short secret key is reported (security.W009) and fails the run."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "careline.settings.production",
        "DJANGO_SECRET_KEY": "short",
        "TWILIO_AUTH_TOKEN": "x",
        "PUBLIC_BASE_URL": "https://careline.example",
        "ALLOWED_HOSTS": "careline.example",
        # Production refuses to start without its own field-encryption key (never the demo or test key).
        "FIELD_ENCRYPTION_KEYS": "prod-1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


@pytest.mark.parametrize("path", ["/console/", "/console/dashboard/", "/accounts/login/", "/simulator/"])
def test_pages_carry_the_security_headers(personas, client: Client, path: str):
    client.login(username="bob", password=PASSWORD)
    response = client.get(path)
    assert response.status_code == 200
    csp = _csp(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["connect-src"][0] == "'self'"
    assert csp["img-src"] == ["'self'", "data:"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]
    assert csp["base-uri"] == ["'none'"]
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert "unsafe-eval" not in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    policy = response.headers["Permissions-Policy"]
    assert "camera=(self)" in policy and "microphone=(self)" in policy and "geolocation=()" in policy


def test_api_and_webhook_responses_carry_the_headers_too(personas, client: Client):
    response = client.get("/api/v1/cases/")  # 403 without credentials: error pages are covered as well
    assert response.status_code in (401, 403)
    assert "Content-Security-Policy" in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"


_INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> block"),
    (re.compile(r"\sstyle\s*=", re.I), "style= attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "inline event handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
    (re.compile(r"\bhx-on", re.I), "hx-on (evaluated script)"),
]


def test_templates_hold_no_inline_script_or_style():
    """The policy has no 'unsafe-inline', so an inline script or style in a template would break the page."""
    found = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        text = template.read_text()
        for pattern, what in _INLINE:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{template.relative_to(ROOT)}:{line}: {what}")
    assert found == []


def test_htmx_indicator_styles_come_from_the_stylesheet_not_inline():
    base = (ROOT / "templates" / "base.html").read_text()
    assert """<meta name="htmx-config" content='{"includeIndicatorStyles":false}'>""" in base
    assert ".htmx-indicator" in (ROOT / "static" / "console" / "console.css").read_text()
