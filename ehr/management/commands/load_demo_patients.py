"""`manage.py load_demo_patients [--folder PATH] [--wait SECONDS]`: seed the FHIR server with demo patients.

POSTs each transaction Bundle of the folder (default `ehr/demo_data/patients/`) unchanged to
`FHIR_BASE_URL`. Idempotent: a bundle whose Patient already exists, found by its MRN
(`Patient?identifier=<system>|<value>`, the identifier with type code MR), is skipped. Prints counts only
(no names: the demo data is synthetic, but the habit is the same as for real charts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ehr.demo import DEMO_PATIENTS_DIR

DEFAULT_FOLDER = DEMO_PATIENTS_DIR
FHIR_JSON = "application/fhir+json"


def _mrn(bundle: dict[str, Any]) -> tuple[str, str] | None:
    for entry in bundle.get("entry", []):
        resource = entry.get("resource", {})
        if resource.get("resourceType") != "Patient":
            continue
        for identifier in resource.get("identifier", []):
            codes = {c.get("code") for c in identifier.get("type", {}).get("coding", [])}
            if "MR" in codes and identifier.get("system") and identifier.get("value"):
                return identifier["system"], identifier["value"]
    return None


class Command(BaseCommand):
    help = "POST the demo patients' FHIR transaction bundles to FHIR_BASE_URL (skips patients already there)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="folder of bundle .json files")
        parser.add_argument(
            "--wait", type=float, default=0.0, help="wait up to SECONDS for the server's /metadata before loading"
        )

    def handle(self, *args: Any, folder: Path, wait: float, **options: Any) -> None:
        base = settings.FHIR_BASE_URL.rstrip("/")
        session = requests.Session()
        session.headers.update({"Accept": FHIR_JSON})
        self._wait_for(session, base, wait)
        files = sorted(p for p in Path(folder).glob("*.json") if p.name != "index.json")
        if not files:
            raise CommandError(f"no bundles in {folder}")
        loaded = skipped = 0
        for path in files:
            bundle = json.loads(path.read_text())
            mrn = _mrn(bundle)
            if mrn is not None:
                found = session.get(
                    f"{base}/Patient",
                    params={"identifier": f"{mrn[0]}|{mrn[1]}", "_count": "1"},
                    timeout=settings.FHIR_TIMEOUT_SECONDS,
                )
                found.raise_for_status()
                if found.json().get("entry"):
                    skipped += 1
                    continue
            response = session.post(base, data=json.dumps(bundle), headers={"Content-Type": FHIR_JSON}, timeout=60)
            if response.status_code >= 400:
                raise CommandError(f"{path.name}: HTTP {response.status_code}")
            loaded += 1
        self.stdout.write(f"demo patients: {loaded} loaded, {skipped} already present ({base})")

    def _wait_for(self, session: requests.Session, base: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                if session.get(f"{base}/metadata", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() >= deadline:
                raise CommandError(f"FHIR server at {base} is not answering /metadata")
            time.sleep(0.5)
