"""`manage.py demo_otp <username>`: print a demo user's current TOTP code (demo mode only).

For walking the demo without an authenticator app. Refuses outside CARELINE_DEMO and for any user but the
seeded demo users (whose secrets are published in `seed_demo.DEMO_TOTP_SECRETS`).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from contactcenter.management.commands.seed_demo import DEMO_TOTP_SECRETS


class Command(BaseCommand):
    help = "Print the current TOTP code of a demo user (nurse, supervisor, admin). Demo mode only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", choices=sorted(DEMO_TOTP_SECRETS))

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.CARELINE_DEMO:
            raise CommandError("demo_otp runs only with CARELINE_DEMO=true")
        username = options["username"]
        user = get_user_model().objects.filter(username=username).first()
        key = DEMO_TOTP_SECRETS[username].hex()
        device = TOTPDevice.objects.filter(user=user, key=key, confirmed=True).first() if user else None
        if device is None:
            raise CommandError(f"{username} has no demo TOTP device: run `manage.py seed_demo` first")
        code = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token()
        self.stdout.write(f"{code:0{device.digits}d}")
