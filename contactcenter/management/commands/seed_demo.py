"""`manage.py seed_demo [--base-url URL]`: the demo clinic and its staff, for the embedded run.

Idempotent: running it again resets the demo users' passwords and roles and leaves everything else as it
is. Refuses to run unless `settings.CARELINE_DEMO` (never in production). Passwords come from the
`CARELINE_DEMO_PASSWORD` environment variable (default "careline-demo").

Each demo user gets a confirmed TOTP device (the second sign-in step) whose secret is published below
(`DEMO_TOTP_SECRETS`, DEMO ONLY): add it to an authenticator app, or run `manage.py demo_otp <username>`
for the current code. Production settings never run this command (CARELINE_DEMO is off there).
"""

from __future__ import annotations

import os
from base64 import b32encode
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinics.db_scope import system_scoped
from clinics.services import clinic_create, staff_create
from triage.protocol_versions import protocol_library_install

DEMO_CLINIC = {
    "slug": "demo",
    "name": "Northside Family Clinic",
    "twilio_number": "+15550100100",
    "on_call_number": "+15550100199",
    "timezone": "America/New_York",
}
# (username, role, first name, last name)
DEMO_STAFF = (
    ("nurse", "nurse", "Nora", "Nurse"),
    ("supervisor", "supervisor", "Sam", "Supervisor"),
    ("admin", "admin", "Ada", "Admin"),
)
DEFAULT_PASSWORD = "careline-demo"
# DEMO ONLY, public: 20-byte TOTP secrets of the demo users (RFC 6238, SHA-1, 6 digits, 30 s).
DEMO_TOTP_SECRETS: dict[str, bytes] = {
    "nurse": b"careline-demo-nurse!",
    "supervisor": b"careline-demo-super!",
    "admin": b"careline-demo-admin!",
}


def demo_totp_device(user: Any) -> TOTPDevice:
    """Give `user` (a demo user) exactly one confirmed TOTP device with its published demo secret."""
    key = DEMO_TOTP_SECRETS[user.get_username()].hex()
    TOTPDevice.objects.filter(user=user).exclude(key=key).delete()
    device, _ = TOTPDevice.objects.update_or_create(
        user=user, key=key, defaults={"name": "demo authenticator", "confirmed": True}
    )
    return device


def base32_secret(username: str) -> str:
    """The demo secret as an authenticator app takes it (base32, no padding)."""
    return b32encode(DEMO_TOTP_SECRETS[username]).decode().rstrip("=")


class Command(BaseCommand):
    help = "Create (or refresh) the demo clinic with a nurse, a supervisor and an admin. Demo mode only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="where the server listens (for the printed URLs)"
        )

    @system_scoped  # operator command: every clinic (PostgreSQL row-level security)
    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.CARELINE_DEMO:
            raise CommandError("seed_demo runs only with CARELINE_DEMO=true (demo data must never reach production)")
        password = os.environ.get("CARELINE_DEMO_PASSWORD") or DEFAULT_PASSWORD
        base_url = str(options["base_url"]).rstrip("/")
        with transaction.atomic():
            clinic = clinic_create(**DEMO_CLINIC)
            protocol_library_install(clinic=clinic)
            for username, role, first_name, last_name in DEMO_STAFF:
                member = staff_create(
                    clinic=clinic,
                    role=role,
                    username=username,
                    password=password,
                    first_name=first_name,
                    last_name=last_name,
                    languages=["en", "es"] if role == "nurse" else ["en"],
                )
                demo_totp_device(member.user)
                if role == "admin":
                    # The demo admin manages everything through /admin/ (no per-model permissions to grant).
                    member.user.is_superuser = True
                    member.user.save(update_fields=["is_superuser"])

        shown_password = "(from CARELINE_DEMO_PASSWORD)" if os.environ.get("CARELINE_DEMO_PASSWORD") else password
        out = self.stdout
        out.write(self.style.SUCCESS(f"Demo clinic ready: {clinic.name} ({clinic.slug})"))
        out.write(f"  Clinic phone number: {clinic.twilio_number}   on-call: {clinic.on_call_number}")
        out.write("  Logins:")
        for username, role, _, _ in DEMO_STAFF:
            out.write(f"    {role:<11} {username:<11} password {shown_password}  TOTP secret {base32_secret(username)}")
        out.write("  Second step (demo only): add a TOTP secret above to an authenticator app, or print the")
        out.write("  current code with:  python manage.py demo_otp nurse   (or supervisor, admin)")
        out.write(f"  Nurse console:   {base_url}/console/")
        out.write(f"  Phone simulator: {base_url}/simulator/")
        out.write(f"  Admin:           {base_url}/admin/")
        out.write(f"  API schema:      {base_url}/api/v1/schema/")
