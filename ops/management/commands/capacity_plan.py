"""`manage.py capacity_plan --peak-calls-per-hour N [...]`: size every layer (ops.capacity), assumptions alongside."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops import capacity


class Command(BaseCommand):
    help = "Size web (daphne), TURN, recording storage and Celery for a peak hour; prints each assumption."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--peak-calls-per-hour", type=float, required=True)
        for f in dataclasses.fields(capacity.Inputs):
            if f.name == "peak_calls_per_hour":
                continue
            parser.add_argument(
                f"--{f.name.replace('_', '-')}", type=float, default=f.default, help=f"default {f.default}"
            )
        parser.add_argument("--figures", default=settings.CAPACITY_FIGURES_PATH, help="benchmarks' figures JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        values = {f.name: options[f.name] for f in dataclasses.fields(capacity.Inputs)}
        try:
            result = capacity.plan(capacity.Inputs(**values), capacity.load_figures(options["figures"]))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(result.as_text())
