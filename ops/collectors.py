"""Domain gauges computed from the database at scrape time (registered once per process by `ops.apps`).

| metric | labels | meaning |
|---|---|---|
| `careline_cases_waiting` | clinic, acuity | cases `queued` now |
| `careline_case_longest_wait_seconds` | clinic, acuity | `now - arrived_at` of the oldest queued case (0: none) |
| `careline_kpi_compliance_ratio` | clinic, acuity | dashboard KPI compliance, last 12 h (absent: none counted) |
| `careline_writeback_outbox_depth` | clinic, target, state | undelivered rows (pending, retrying, held, failed, dead) |
| `careline_writeback_outbox_oldest_age_seconds` | clinic, target, state | age of the oldest such row |
| `careline_hl7_queue_depth` | clinic, destination | undelivered HL7 rows per message type (the destination) |
| `careline_slo_breached` | clinic, slo | 1 while the SLO has an open breach episode, else 0 |

A failing database makes the collector yield nothing (logged) rather than fail the whole scrape: the
process metrics and `/readyz` already report the outage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from clinics import db_scope

logger = logging.getLogger(__name__)

OUTBOX_STATES = ("pending", "retrying", "held", "failed", "dead")


class DomainCollector(Collector):
    """Prometheus collector of the domain gauges in the module docstring."""

    def describe(self) -> list[Any]:
        """Nothing: registering must not query the database (prometheus_client would call `collect` instead)."""
        return []

    def collect(self) -> Iterator[Any]:
        try:
            # A scrape acts for the service, not a staff member: every clinic's rows (PostgreSQL row-level
            # security is fail-closed for a connection with no scope, `clinics.db_scope`).
            with db_scope.system_scope():
                families = self._families()
        except Exception:  # noqa: BLE001 - never fail the scrape on a database error
            logger.warning("domain metrics unavailable", exc_info=True)
            return
        yield from families

    def _families(self) -> list[GaugeMetricFamily]:
        from django.db import close_old_connections

        from clinics.models import Clinic
        from contactcenter.dashboard import _levels
        from ehr.models import WriteBack
        from ops.models import SloObjective

        close_old_connections()
        now = timezone.now()
        waiting = GaugeMetricFamily("careline_cases_waiting", "Cases queued now.", labels=["clinic", "acuity"])
        longest = GaugeMetricFamily(
            "careline_case_longest_wait_seconds",
            "Wait of the oldest queued case, seconds.",
            labels=["clinic", "acuity"],
        )
        kpi = GaugeMetricFamily(
            "careline_kpi_compliance_ratio",
            "Cases reserved within their acuity target, last 12 h (dashboard definition).",
            labels=["clinic", "acuity"],
        )
        depth = GaugeMetricFamily(
            "careline_writeback_outbox_depth", "Undelivered write-backs.", labels=["clinic", "target", "state"]
        )
        age = GaugeMetricFamily(
            "careline_writeback_outbox_oldest_age_seconds",
            "Age of the oldest undelivered write-back, seconds.",
            labels=["clinic", "target", "state"],
        )
        hl7 = GaugeMetricFamily(
            "careline_hl7_queue_depth", "Undelivered HL7 v2 messages per destination.", labels=["clinic", "destination"]
        )
        slo = GaugeMetricFamily("careline_slo_breached", "1 while the SLO is breached.", labels=["clinic", "slo"])

        slugs = dict(Clinic.objects.values_list("pk", "slug"))
        for clinic in Clinic.objects.all():
            for level_row in _levels(clinic, now):
                level = str(level_row.acuity)
                waiting.add_metric([clinic.slug, level], level_row.waiting)
                longest.add_metric([clinic.slug, level], level_row.longest_wait_seconds)
                if level_row.compliance is not None:
                    kpi.add_metric([clinic.slug, level], level_row.compliance)
        rows = (
            WriteBack.objects.filter(state__in=OUTBOX_STATES)
            .values("clinic_id", "target", "state")
            .annotate(n=Count("pk"), oldest=Min("created_at"))
        )
        for row in rows:
            labels = [slugs.get(row["clinic_id"], str(row["clinic_id"])), row["target"], row["state"]]
            depth.add_metric(labels, row["n"])
            age.add_metric(labels, max(0.0, (now - row["oldest"]).total_seconds()))
        hl7_rows = (
            WriteBack.objects.filter(target=WriteBack.Target.HL7V2, state__in=OUTBOX_STATES)
            .values("clinic_id", "message_type")
            .annotate(n=Count("pk"))
        )
        for row in hl7_rows:
            hl7.add_metric([slugs.get(row["clinic_id"], str(row["clinic_id"])), row["message_type"] or "-"], row["n"])
        open_ids = set(
            SloObjective.objects.filter(breaches__cleared_at__isnull=True).values_list("pk", flat=True).distinct()
        )
        for objective in SloObjective.objects.filter(enabled=True).values("pk", "clinic_id", "kind"):
            slo.add_metric(
                [slugs.get(objective["clinic_id"], "-"), objective["kind"]], 1.0 if objective["pk"] in open_ids else 0.0
            )
        return [waiting, longest, kpi, depth, age, hl7, slo]
