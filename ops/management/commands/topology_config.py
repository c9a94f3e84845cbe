"""`manage.py topology_config --out DIR [--web-nodes 2 --port 8000 --first-web-port 8101 ...]`: write the scaled
topology's `haproxy.cfg` and `Procfile` (ops.topology) into DIR; `scripts/up-scaled.sh` runs it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops import topology


class Command(BaseCommand):
    help = "Generate the HAProxy config and honcho Procfile of the scaled local topology."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True)
        parser.add_argument("--web-nodes", type=int, default=2)
        parser.add_argument("--port", type=int, default=8000, help="the proxy's port (what browsers and Twilio use)")
        parser.add_argument("--first-web-port", type=int, default=8101)
        parser.add_argument("--fhir-port", type=int, default=8091)
        parser.add_argument("--mllp-port", type=int, default=2575)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["web_nodes"] < 2:
            raise CommandError("the scaled topology runs at least 2 web nodes")
        out = Path(options["out"]).resolve()
        out.mkdir(parents=True, exist_ok=True)
        nodes = topology.web_nodes(options["web_nodes"], options["first_web_port"])
        cfg = out / "haproxy.cfg"
        cfg.write_text(topology.haproxy_config(bind_port=options["port"], nodes=nodes))
        python = sys.executable
        (out / "Procfile").write_text(
            topology.procfile(
                python=python,
                bin_dir=str(Path(python).parent),
                nodes=nodes,
                haproxy_cfg=str(cfg),
                fhir_port=options["fhir_port"],
                mllp_port=options["mllp_port"],
                var_dir=str(out),
            )
        )
        self.stdout.write(
            f"wrote {cfg} and {out / 'Procfile'} ({len(nodes)} web nodes: "
            + ", ".join(f"{n.name}=127.0.0.1:{n.port}" for n in nodes)
            + ")"
        )
