"""`manage.py drain --node NODE_ID [--timeout S] [--wait] [--cancel]`: drain one daphne node (careline.drain)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from careline import drain


class Command(BaseCommand):
    help = (
        "Mark a web node draining: its /readyz answers 503, it refuses new WebSocket sessions (close 1013), tells "
        "open consoles to reconnect elsewhere, waits for open calls up to --timeout seconds, then exits 0. "
        "For a load balancer's scale-in hook: run it with --wait, then terminate the instance."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--node", required=True, help="the node's CARELINE_NODE_ID (default id: hostname:pid)")
        parser.add_argument("--timeout", type=float, default=None, help="seconds (default DRAIN_TIMEOUT_SECONDS)")
        parser.add_argument("--wait", action="store_true", help="return once the node reports no open session")
        parser.add_argument("--cancel", action="store_true", help="forget the drain flag instead")

    def handle(self, *args: Any, **options: Any) -> None:
        node = options["node"]
        if options["cancel"]:
            drain.drain_cancel(node=node)
            self.stdout.write(f"node {node}: drain flag removed")
            return
        deadline = drain.drain_start(node=node, timeout_seconds=options["timeout"])
        self.stdout.write(f"node {node}: draining, deadline in {max(0.0, deadline - time.time()):.0f} s")
        if not options["wait"]:
            return
        # The node exits by itself; its published session count reaching zero (or the deadline) ends the wait.
        while True:
            sessions = drain.open_sessions(node)
            if sessions is not None and sum(sessions.values()) == 0:
                self.stdout.write(f"node {node}: drained")
                return
            if time.time() > deadline + 10:
                raise CommandError(f"node {node}: still {sessions} open sessions 10 s past the deadline")
            time.sleep(1)
