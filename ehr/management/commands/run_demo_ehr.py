"""`manage.py run_demo_ehr`: the embedded demo EHR (sekmet-fhir on 127.0.0.1), loaded with demo patients.

Starts `sekmet serve` as a child process bound to 127.0.0.1 (never 0.0.0.0), waits until `/metadata`
answers, loads `ehr/demo_data/patients/` through `load_demo_patients` (idempotent), then stays in the
foreground until the server exits or the command is stopped (SIGINT/SIGTERM are passed on). Data lives in
`var/ehr/` and survives restarts. Demo only: production points `FHIR_BASE_URL` at the real EHR.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Run the local demo FHIR R4 server (sekmet-fhir) on 127.0.0.1 and load the demo patients."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8091)
        parser.add_argument("--data-dir", default=str(settings.VAR_DIR / "ehr"))

    def handle(self, *args: object, **opts: object) -> None:
        if not settings.CARELINE_DEMO:
            raise CommandError("run_demo_ehr is for the demo (CARELINE_DEMO); production uses FHIR_BASE_URL")
        port = int(opts["port"])  # type: ignore[call-overload]
        workdir = Path(str(opts["data_dir"]))
        workdir.mkdir(parents=True, exist_ok=True)
        base_url = f"http://127.0.0.1:{port}/fhir"
        config = workdir / "settings.yaml"
        config.write_text(f"base_url: {base_url}\nhost: 127.0.0.1\nport: {port}\ndata_dir: {workdir / 'data'}\n")
        sekmet = Path(sys.executable).with_name("sekmet")
        child = subprocess.Popen(
            [str(sekmet), "serve", "-c", str(config), "--host", "127.0.0.1", "--port", str(port)], cwd=workdir
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            child.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self._wait_ready(base_url, child)
        settings.FHIR_BASE_URL = base_url
        call_command("load_demo_patients")
        self.stdout.write(f"demo EHR ready at {base_url}")
        sys.exit(child.wait())

    def _wait_ready(self, base_url: str, child: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise CommandError(f"sekmet exited with {child.returncode}")
            try:
                if requests.get(f"{base_url}/metadata", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        child.terminate()
        raise CommandError("the demo EHR did not start within 60 s")
