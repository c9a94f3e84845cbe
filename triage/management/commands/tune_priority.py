"""`manage.py tune_priority --clinic SLUG [--arrivals-per-hour X] [--nurses N] [--mean-service-minutes M]
[--mix 12,30,36,20] [--calls C] [--seed S] [--iterations I] [--dry-run]`: tune and store a clinic's accumulation rates.

Searches accumulating-priority rates that meet the clinic's KPI targets (`Clinic.kpi_targets`) in simulation
(`triage.tuning.search_rates`), prints the per-level result, and stores the rates on
`Clinic.accumulation_rates`, which `case_claim_next` then uses. Defaults describe the design load: 4
nurses, the clinic's mean handle time (`queue_discipline`, else 12 min), the 12/30/36/20 % mix of levels
2-5, and the arrival rate that makes the offered load 0.90 (`--load`); lighter loads meet the targets
more easily, and from `Clinic.overload_threshold` on claims use strict priority anyway.
Refuses to store rates that miss a target unless `--force`.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from clinics.db_scope import system_scoped
from clinics.models import Clinic, validate_accumulation_rates
from clinics.services import audit_record
from triage.selectors import queue_discipline
from triage.tuning import search_rates

DEFAULT_MIX = "12,30,36,20"


def parse_mix(text: str) -> dict[int, float]:
    """ "12,30,36,20" (levels 2-5) or "2:12,3:30,..." -> {level: weight}; raises CommandError."""
    try:
        if ":" in text:
            pairs = (part.split(":", 1) for part in text.split(","))
            mix = {int(level): float(weight) for level, weight in pairs}
        else:
            mix = {level: float(weight) for level, weight in zip(range(2, 6), text.split(","), strict=True)}
    except ValueError as exc:
        raise CommandError(f"--mix: expected 4 weights for levels 2-5 or level:weight pairs, got {text!r}") from exc
    if any(level not in range(1, 6) or weight < 0 for level, weight in mix.items()) or sum(mix.values()) <= 0:
        raise CommandError(f"--mix: levels must be 1-5 and weights >= 0 with a positive sum, got {text!r}")
    return {level: weight for level, weight in mix.items() if weight > 0}


class Command(BaseCommand):
    help = "Tune a clinic's accumulating-priority rates to its KPI targets by simulation and store them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic", required=True, help="clinic slug")
        parser.add_argument("--arrivals-per-hour", type=float, help="default: the rate giving --load")
        parser.add_argument("--load", type=float, default=0.90, help="design offered load (default 0.90)")
        parser.add_argument("--nurses", type=int, default=4)
        parser.add_argument("--mean-service-minutes", type=float, help="default: the clinic's recent mean")
        parser.add_argument("--mix", default=DEFAULT_MIX, help="weights of levels 2-5, or level:weight pairs")
        parser.add_argument("--calls", type=int, default=60_000, help="simulated calls per evaluation")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--iterations", type=int, default=20, help="search iterations (simulations - 1)")
        parser.add_argument("--dry-run", action="store_true", help="print, do not store")
        parser.add_argument("--force", action="store_true", help="store even if a target is missed")

    @system_scoped  # operator command: every clinic (PostgreSQL row-level security)
    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            clinic = Clinic.objects.get(slug=opts["clinic"])
        except Clinic.DoesNotExist as exc:
            raise CommandError(f"no clinic {opts['clinic']!r}") from exc
        if opts["nurses"] < 1 or opts["calls"] < 1000:
            raise CommandError("--nurses must be >= 1 and --calls >= 1000")
        mix = parse_mix(opts["mix"])
        service = opts["mean_service_minutes"] or queue_discipline(clinic=clinic).mean_handle_seconds / 60.0
        arrivals = opts["arrivals_per_hour"] or opts["load"] * opts["nurses"] * 60.0 / service
        if arrivals * service / 60.0 >= opts["nurses"]:
            raise CommandError("offered load >= 1: no discipline can meet targets; add nurses")
        kpi = {level: (float(clinic.kpi_target(level).seconds), clinic.kpi_target(level).fraction) for level in mix}
        report = search_rates(
            kpi_targets=kpi,
            mix=mix,
            arrivals_per_hour=arrivals,
            mean_service_minutes=service,
            nurses=opts["nurses"],
            calls=opts["calls"],
            seed=opts["seed"],
            iterations=opts["iterations"],
        )
        load = arrivals * service / 60.0 / opts["nurses"]
        self.stdout.write(
            f"{clinic.slug}: {arrivals:.1f} calls/h, {opts['nurses']} nurses, {service:.1f} min mean handle time, "
            f"offered load {load:.2f}, {opts['calls']} calls x {report.evaluations} evaluations"
        )
        self.stdout.write("level  target           rate      within target  mean wait")
        for level in sorted(report.rates):
            stats = report.result.levels[level]
            seconds, fraction = kpi[level]
            self.stdout.write(
                f"{level:>5}  {fraction:>4.0%} in {seconds / 60:>4.0f} min  {report.rates[level]:.4f}    "
                f"{stats.within_target or 0:>6.1%}         {stats.mean_wait / 60:6.1f} min"
            )
        if not report.met and not opts["force"]:
            raise CommandError("no rates found that meet every target at this load (add nurses); nothing stored")
        if opts["dry_run"]:
            self.stdout.write("dry run: nothing stored")
            return
        with transaction.atomic():
            clinic.accumulation_rates = {str(level): float(f"{rate:.6g}") for level, rate in report.rates.items()}
            validate_accumulation_rates(clinic.accumulation_rates)
            clinic.save(update_fields=["accumulation_rates"])
            audit_record(
                clinic=clinic, actor=None, action="clinic.priority_tuned", object_type="clinic", object_id=clinic.pk
            )
        self.stdout.write(f"stored accumulation_rates on {clinic.slug}: {clinic.accumulation_rates}")
