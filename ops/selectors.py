"""Reads of the ops app, scoped to one clinic."""

from __future__ import annotations

from django.db.models import QuerySet

from clinics.models import Clinic
from ops.models import SloBreach, SloObjective


def slo_breaches_open(*, clinic: Clinic) -> QuerySet[SloBreach]:
    """The clinic's open SLO breach episodes, newest first (the supervisor dashboard shows them)."""
    return SloBreach.objects.filter(objective__clinic=clinic, cleared_at__isnull=True).select_related("objective")


def slo_objectives(*, clinic: Clinic) -> QuerySet[SloObjective]:
    """The clinic's objectives."""
    return SloObjective.objects.filter(clinic=clinic).order_by("kind")
