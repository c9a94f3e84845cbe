"""`create_clinic` and `create_staff`: the operator's commands (README, issue 2 interfaces)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from clinics.models import Clinic, StaffMember
from triage.models import Protocol, ProtocolVersion


@pytest.mark.django_db
def test_create_clinic_creates_the_tenant_and_installs_the_protocol_library():
    out = StringIO()
    call_command(
        "create_clinic",
        slug="east",
        name="East Clinic",
        twilio_number="+15550300300",
        on_call_number="+15550300399",
        timezone="America/Chicago",
        stdout=out,
    )
    clinic = Clinic.objects.get(slug="east")
    assert clinic.twilio_number == "+15550300300" and clinic.timezone == "America/Chicago"
    active = ProtocolVersion.objects.filter(protocol__clinic=clinic, status="active")
    assert Protocol.objects.filter(clinic=clinic).count() >= 20
    assert active.count() == Protocol.objects.filter(clinic=clinic).count()
    # Idempotent: running it again adds nothing.
    call_command(
        "create_clinic",
        slug="east",
        name="East Clinic",
        twilio_number="+15550300300",
        on_call_number="+15550300399",
        stdout=StringIO(),
    )
    assert ProtocolVersion.objects.filter(protocol__clinic=clinic).count() == active.count()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("twilio_number", "555-0100"), ("on_call_number", "+1-555"), ("timezone", "Mars/Olympus")],
)
def test_create_clinic_refuses_bad_input_and_writes_nothing(field, value):
    args = {"slug": "west", "name": "West", "twilio_number": "+15550400400", "on_call_number": "+15550400499"}
    args[field] = value
    with pytest.raises(CommandError):
        call_command("create_clinic", stdout=StringIO(), **args)
    assert not Clinic.objects.filter(slug="west").exists()


@pytest.mark.django_db
def test_create_staff_adds_a_member_and_refuses_an_unknown_clinic(personas):
    call_command(
        "create_staff",
        clinic="north",
        role="supervisor",
        username="erin",
        password="long-password-1",
        stdout=StringIO(),
    )
    member = StaffMember.objects.get(user__username="erin")
    assert member.clinic == personas.north and member.role == "supervisor"
    assert member.user.check_password("long-password-1")
    with pytest.raises(CommandError):
        call_command("create_staff", clinic="nowhere", role="nurse", username="x", password="y", stdout=StringIO())
