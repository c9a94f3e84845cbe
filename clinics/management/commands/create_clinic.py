"""`manage.py create_clinic --slug --name --twilio-number --on-call-number --timezone` (idempotent).

Also installs the project's protocol library for the clinic (`install_protocols`; keeps the clinic's edits).
"""

from zoneinfo import available_timezones

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.db_scope import system_scoped
from clinics.services import clinic_create


class Command(BaseCommand):
    help = "Create or update a clinic (tenant). Inbound calls to --twilio-number are routed to it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", required=True)
        parser.add_argument("--name", required=True)
        parser.add_argument("--twilio-number", required=True, help="E.164, e.g. +15550100100")
        parser.add_argument("--on-call-number", required=True, help="E.164; red-flag transfers go here")
        parser.add_argument("--timezone", default="America/New_York")

    @system_scoped  # operator command: every clinic (PostgreSQL row-level security)
    def handle(self, *args: object, **opts: str) -> None:
        for key in ("twilio_number", "on_call_number"):
            if not opts[key].startswith("+") or not opts[key][1:].isdigit():
                raise CommandError(f"--{key.replace('_', '-')} must be E.164 (+ and digits), got {opts[key]!r}")
        if opts["timezone"] not in available_timezones():
            raise CommandError(f"unknown timezone {opts['timezone']!r}")
        clinic = clinic_create(
            slug=opts["slug"],
            name=opts["name"],
            twilio_number=opts["twilio_number"],
            on_call_number=opts["on_call_number"],
            timezone=opts["timezone"],
        )
        self.stdout.write(f"clinic {clinic.slug} (id {clinic.pk}) answers {clinic.twilio_number}")
        # The protocol library lives in triage, which clinics does not import: call its command by name.
        call_command("install_protocols", clinic=clinic.slug, stdout=self.stdout)
