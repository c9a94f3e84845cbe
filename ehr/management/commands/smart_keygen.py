"""`manage.py smart_keygen --alg RS384|ES384 --out PATH`: a new SMART client key (mode 0600); prints its kid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ehr.fhir.smart import SUPPORTED_ALGS, write_private_key


class Command(BaseCommand):
    help = (
        "Write a new private key for SMART backend services (PKCS#8 PEM, mode 0600, never overwrites) and print "
        "its kid (RFC 7638 thumbprint). Rotation: append the path to FHIR_SMART_PRIVATE_KEYS (published, not "
        "signing), wait until the EHR has re-read the JWKS, move it first (signing), later drop the old key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--alg", choices=SUPPORTED_ALGS, default="RS384")
        parser.add_argument("--out", required=True, help="path of the new PEM file (must not exist)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["out"])
        try:
            key = write_private_key(alg=options["alg"], path=path)
        except FileExistsError as exc:
            raise CommandError(f"{path} exists; choose a new file name (keys are never overwritten)") from exc
        self.stdout.write(key.kid)
        self.stderr.write(f"{key.alg} key written to {path} (mode 0600). kid: {key.kid}")
