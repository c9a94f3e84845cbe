"""`manage.py install_protocols [--clinic SLUG]`: seed CareLine's protocol library (idempotent).

Gives every clinic (or one) each library protocol it does not have yet, as version 1, active. Protocols a
clinic already has are never touched, so admins' edits survive re-runs. Content: `triage.protocol_library`.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.models import Clinic
from triage.protocol_versions import protocol_library_install


class Command(BaseCommand):
    help = "Install CareLine's protocol library into every clinic (or --clinic SLUG). Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic", help="slug of one clinic (default: all clinics)")

    def handle(self, *args: Any, **options: Any) -> None:
        clinics = Clinic.objects.order_by("slug")
        if options.get("clinic"):
            clinics = clinics.filter(slug=options["clinic"])
            if not clinics.exists():
                raise CommandError(f"no clinic with slug {options['clinic']!r}")
        for clinic in clinics:
            added = protocol_library_install(clinic=clinic)
            self.stdout.write(f"{clinic.slug}: {added} protocol(s) added")
