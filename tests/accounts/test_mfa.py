"""MFA for all staff (issue 6; HIPAA 164.312(d); ASVS 5.0 V6): password then TOTP, enrolment on first sign-in,
backup codes, the API token needs the code too, and every step is audited."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from clinics.models import AuditEvent
from clinics.services import staff_create
from tests.conftest import PASSWORD, current_totp

pytestmark = pytest.mark.django_db


def _password_only(username: str) -> Client:
    client = Client()
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302
    return client


def _code(device: TOTPDevice) -> str:
    return f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():06d}"


def test_a_password_alone_reaches_nothing_phi_bearing(personas, make_case):
    current_totp(personas.alice)  # alice is enrolled
    case = make_case(personas.north)
    client = _password_only("alice")
    for path in ("/console/", f"/console/cases/{case.pk}/", "/console/dashboard/", "/admin/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/otp/"), path
    api = client.get("/api/v1/cases/")
    assert api.status_code == 403 and "Two-factor" in api.json()["detail"]
    assert not AuditEvent.objects.filter(action="auth.login").exists()


def test_the_right_code_opens_the_console_a_wrong_one_is_refused_both_audited(personas):
    code = current_totp(personas.alice)
    client = _password_only("alice")
    wrong = client.post("/accounts/otp/", {"otp_token": "000000" if code != "000000" else "111111"})
    assert wrong.status_code == 200 and b"did not match" in wrong.content
    assert client.get("/console/").status_code == 302
    failure = AuditEvent.objects.get(action="auth.failure")
    assert failure.clinic == personas.north and failure.object_id == str(personas.alice.pk) and failure.reason == "otp"

    right = client.post("/accounts/otp/", {"otp_token": current_totp(personas.alice), "next": "/console/"})
    assert right.status_code == 302 and right["Location"] == "/console/"
    assert client.get("/console/").status_code == 200
    login = AuditEvent.objects.get(action="auth.login")
    assert login.actor == personas.alice and login.role == "nurse"


def test_first_sign_in_forces_enrolment_with_an_inline_svg_qr_and_the_secret(personas):
    nina = staff_create(clinic=personas.north, role="nurse", username="nina", password=PASSWORD).user
    client = _password_only("nina")
    assert client.get("/accounts/otp/")["Location"].startswith("/accounts/otp/enrol/")
    page = client.get("/accounts/otp/enrol/")
    html = page.content.decode()
    assert page.status_code == 200 and "<svg" in html and 'class="segno"' in html
    assert "style=" not in html.split("<svg", 1)[1].split("</svg>", 1)[0]  # strict CSP: no inline style
    assert "'unsafe-inline'" not in page["Content-Security-Policy"]
    device = TOTPDevice.objects.get(user=nina, confirmed=False)
    secret = re.search(r'<code id="otp-secret">([A-Z2-7 ]+)</code>', html).group(1)
    import base64

    assert base64.b32decode(secret.replace(" ", "") + "=" * (-len(secret.replace(" ", "")) % 8)) == device.bin_key
    assert client.get("/console/").status_code == 302  # not yet

    done = client.post("/accounts/otp/enrol/", {"otp_token": _code(device), "next": "/console/"})
    assert done.status_code == 200 and done.content.decode().count("<li><code>") == 10
    assert client.get("/console/").status_code == 200
    assert TOTPDevice.objects.get(user=nina).confirmed
    actions = set(AuditEvent.objects.filter(actor=nina).values_list("action", flat=True))
    assert {"auth.mfa_enrolled", "auth.login"} <= actions


def test_an_enrolled_user_cannot_re_enrol_from_a_password_only_session(personas):
    current_totp(personas.alice)
    client = _password_only("alice")
    response = client.get("/accounts/otp/enrol/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/otp/?")
    assert TOTPDevice.objects.filter(user=personas.alice).count() == 1


def test_a_backup_code_works_once(personas):
    nina = staff_create(clinic=personas.north, role="nurse", username="nina", password=PASSWORD).user
    client = _password_only("nina")
    client.get("/accounts/otp/enrol/")
    device = TOTPDevice.objects.get(user=nina, confirmed=False)
    page = client.post("/accounts/otp/enrol/", {"otp_token": _code(device)}).content.decode()
    backup = re.findall(r"<li><code>(\w+)</code></li>", page)[0]
    client.post("/accounts/logout/")

    again = _password_only("nina")
    assert again.post("/accounts/otp/", {"otp_token": backup}).status_code == 302
    assert again.get("/console/").status_code == 200
    third = _password_only("nina")
    assert third.post("/accounts/otp/", {"otp_token": backup}).status_code == 200  # used up
    assert third.get("/console/").status_code == 302


def test_the_api_token_endpoint_requires_the_otp_code(personas):
    api = APIClient()
    url = "/api/v1/auth/token/"
    assert api.post(url, {"username": "alice", "password": PASSWORD}, format="json").status_code == 400
    current_totp(personas.alice)
    wrong = api.post(url, {"username": "alice", "password": PASSWORD, "otp_token": "12345"}, format="json")
    assert wrong.status_code == 400 and "token" not in wrong.json()
    ok = api.post(
        url, {"username": "alice", "password": PASSWORD, "otp_token": current_totp(personas.alice)}, format="json"
    )
    assert ok.status_code == 200 and ok.json()["token"]
    assert AuditEvent.objects.filter(action="auth.login", actor=personas.alice).exists()


def test_the_api_token_endpoint_refuses_an_unenrolled_user(personas):
    staff_create(clinic=personas.north, role="nurse", username="nina", password=PASSWORD)
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "nina", "password": PASSWORD, "otp_token": "123456"}, format="json"
    )
    assert response.status_code == 403 and response.json()["code"] == "mfa_enrolment"


def test_logout_is_audited(personas):
    client = Client()
    client.force_login(personas.bob)
    client.post("/accounts/logout/")
    assert AuditEvent.objects.filter(action="auth.logout", actor=personas.bob).count() == 1


def test_an_api_token_expires_after_the_absolute_session_limit(personas, make_case):
    from datetime import timedelta

    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    make_case(personas.north)
    credentials = {"username": "alice", "password": PASSWORD, "otp_token": current_totp(personas.alice)}
    key = APIClient().post("/api/v1/auth/token/", credentials, format="json").json()["token"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/v1/cases/").status_code == 200
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=12, seconds=1))
    # 401 or 403: DRF answers 403 when the first authentication class (session) sends no challenge.
    expired = api.get("/api/v1/cases/")
    assert expired.status_code in (401, 403) and "expired" in expired.json()["detail"]
    assert not Token.objects.filter(key=key).exists()
