"""`manage.py reminder_campaign --clinic SLUG --start 2026-11-23 --end 2026-11-24 [--name N]`: text a
reminder for every booked FHIR Appointment starting in [start, end) (dates in the clinic's timezone, or
ISO 8601 datetimes with an offset). The campaign is loaded and sent by Celery (`ivr.services.reminders`)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from clinics.db_scope import system_scoped
from clinics.models import Clinic
from ivr.services.reminders import campaign_create


def _moment(raw: str, zone: ZoneInfo) -> datetime:
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise CommandError(f"not an ISO 8601 date or datetime: {raw!r}") from exc
    if len(raw) == 10:  # a date: midnight in the clinic's timezone
        parsed = datetime.combine(parsed.date(), time(0), tzinfo=zone)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic", required=True)
        parser.add_argument("--start", required=True)
        parser.add_argument("--end", required=True)
        parser.add_argument("--name", default="")

    @system_scoped  # operator command: every clinic (PostgreSQL row-level security)
    def handle(self, *args: Any, **options: Any) -> None:
        clinic = Clinic.objects.filter(slug=options["clinic"]).first()
        if clinic is None:
            raise CommandError(f"no clinic {options['clinic']!r}")
        zone = ZoneInfo(clinic.timezone)
        start, end = _moment(options["start"], zone), _moment(options["end"], zone)
        try:
            with transaction.atomic():
                campaign = campaign_create(
                    clinic=clinic,
                    name=options["name"] or f"Reminders {start:%Y-%m-%d}",
                    window_start=start,
                    window_end=end,
                )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"campaign {campaign.pk}: appointments from {start.isoformat()} to {end.isoformat()}")
