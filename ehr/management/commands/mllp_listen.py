"""`manage.py mllp_listen`: the inbound HL7 v2 ADT feed over MLLP (see `ehr.hl7.listener` and `ehr.hl7.adt`).

One listener serves one clinic when given `--clinic SLUG` (recommended: one port per feed, so a feed can
never write into another clinic's patients); without it each message is routed by MSH-6 (receiving
facility) = a clinic slug, and a message for no known clinic gets an AR. Binds 127.0.0.1 by default; put
it behind the site's VPN/stunnel for a remote sender (MLLP has no transport security of its own).
"""

from __future__ import annotations

import asyncio
import contextlib

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.models import Clinic
from ehr.hl7.listener import MllpListener


class Command(BaseCommand):
    help = "Listen for HL7 v2 ADT messages (A01/A04/A05/A08/A28/A31/A40) over MLLP and ACK each one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=2575)
        parser.add_argument("--clinic", default="", help="clinic slug this feed belongs to (default: MSH-6)")
        parser.add_argument("--max-frame-bytes", type=int, default=settings.HL7_MLLP_MAX_FRAME_BYTES)
        parser.add_argument("--idle-seconds", type=float, default=settings.HL7_MLLP_IDLE_SECONDS)

    def handle(self, *args: object, **opts: object) -> None:
        clinic = None
        if opts["clinic"]:
            clinic = Clinic.objects.filter(slug=str(opts["clinic"])).first()
            if clinic is None:
                raise CommandError(f"no clinic with slug {opts['clinic']!r}")
        listener = MllpListener(
            host=str(opts["host"]),
            port=int(opts["port"]),  # type: ignore[call-overload]
            clinic=clinic,
            max_frame_bytes=int(opts["max_frame_bytes"]),  # type: ignore[call-overload]
            idle_seconds=float(opts["idle_seconds"]),  # type: ignore[arg-type]
        )
        self.stdout.write(f"MLLP listener on {listener.host}:{listener.port}")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(listener.serve_forever())
