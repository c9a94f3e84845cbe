"""`manage.py seed_demo`: the demo clinic and logins, idempotent, demo mode only."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from clinics.models import Clinic, StaffMember

pytestmark = pytest.mark.django_db


def run(**options) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def test_seed_demo_creates_the_clinic_and_staff_and_prints_how_to_start(settings, monkeypatch):
    settings.CARELINE_DEMO = True
    monkeypatch.delenv("CARELINE_DEMO_PASSWORD", raising=False)
    output = run(base_url="http://demo.local:9000/")

    clinic = Clinic.objects.get(slug="demo")
    assert (clinic.name, clinic.twilio_number, clinic.on_call_number, clinic.timezone) == (
        "Northside Family Clinic",
        "+15550100100",
        "+15550100199",
        "America/New_York",
    )
    roles = dict(StaffMember.objects.filter(clinic=clinic).values_list("user__username", "role"))
    assert roles == {"nurse": "nurse", "supervisor": "supervisor", "admin": "admin"}
    for username in roles:
        assert authenticate(username=username, password="careline-demo") is not None
        assert username in output
    assert "+15550100100" in output
    assert "http://demo.local:9000/console/" in output
    assert "http://demo.local:9000/simulator/" in output


def test_seed_demo_is_idempotent_and_reads_the_password_from_the_environment(settings, monkeypatch):
    settings.CARELINE_DEMO = True
    run()
    monkeypatch.setenv("CARELINE_DEMO_PASSWORD", "another-demo-secret")
    output = run()
    assert Clinic.objects.filter(slug="demo").count() == 1
    assert StaffMember.objects.filter(clinic__slug="demo").count() == 3
    assert authenticate(username="nurse", password="another-demo-secret") is not None
    assert "another-demo-secret" not in output, "a password from the environment is not echoed"
    assert "http://127.0.0.1:8000/console/" in output


def test_seed_demo_refuses_to_run_outside_demo_mode(settings):
    settings.CARELINE_DEMO = False
    with pytest.raises(CommandError):
        run()
    assert not Clinic.objects.filter(slug="demo").exists()


def test_demo_users_get_published_totp_secrets_and_demo_otp_prints_a_working_code(settings, monkeypatch):
    from django.test import Client

    settings.CARELINE_DEMO = True
    monkeypatch.delenv("CARELINE_DEMO_PASSWORD", raising=False)
    output = run()
    assert "TOTP secret" in output and "manage.py demo_otp nurse" in output
    code_out = StringIO()
    call_command("demo_otp", "nurse", stdout=code_out)
    code = code_out.getvalue().strip()
    assert len(code) == 6 and code.isdigit()
    client = Client()
    client.post("/accounts/login/", {"username": "nurse", "password": "careline-demo"})
    assert client.post("/accounts/otp/", {"otp_token": code}).status_code == 302
    assert client.get("/console/").status_code == 200


def test_demo_otp_refuses_outside_demo_mode(settings):
    settings.CARELINE_DEMO = True
    run()
    settings.CARELINE_DEMO = False
    with pytest.raises(CommandError):
        call_command("demo_otp", "nurse", stdout=StringIO())
