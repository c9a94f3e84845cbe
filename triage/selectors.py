"""Read queries on cases, always scoped to a clinic."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from clinics.models import Clinic
from clinics.selectors import staff_for_user
from triage.models import Case, CaseEvent, CaseState, RoutingLedgerEntry, RoutingRule

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


def case_list(*, clinic: Clinic, state: str | None = None) -> QuerySet[Case]:
    """Cases of `clinic`, newest first, optionally of one `state`."""
    qs = Case.objects.filter(clinic=clinic).select_related("reserved_by", "clinic", "protocol_version_ref")
    if state:
        qs = qs.filter(state=state)
    return qs.order_by("-created_at")


def queue_list(*, clinic: Clinic) -> QuerySet[Case]:
    """Open cases of `clinic` for the queue board: waiting first (most urgent, oldest), then being worked."""
    return (
        Case.objects.filter(clinic=clinic, state__in=[CaseState.QUEUED, CaseState.RESERVED, CaseState.IN_PROGRESS])
        .select_related("reserved_by", "clinic", "protocol_version_ref")
        .order_by("acuity", "arrived_at")
    )


def access_case(*, user: User | AnonymousUser, case_id: int) -> Case:
    """The case `case_id` if it belongs to the user's clinic.

    Raises Case.DoesNotExist for another clinic's case or an unknown id (callers answer 404, never 403,
    so a case's existence does not leak), and clinics.selectors.NotStaff for non-staff users.
    """
    staff = staff_for_user(user)
    return Case.objects.select_related("clinic", "reserved_by", "protocol_version_ref").get(
        pk=case_id, clinic=staff.clinic
    )


def case_timeline(*, case: Case) -> QuerySet[CaseEvent]:
    """The case's timeline, oldest first."""
    return case.events.select_related("actor").order_by("at", "pk")


def queue_position(*, case: Case) -> int:
    """1-based position of a queued case within its acuity band (cases of its level that arrived earlier + 1)."""
    ahead = Case.objects.filter(
        clinic_id=case.clinic_id, state=CaseState.QUEUED, acuity=case.acuity, arrived_at__lt=case.arrived_at
    ).count()
    return ahead + 1


def routing_ledger(*, case: Case) -> QuerySet[RoutingLedgerEntry]:
    """The case's routing ledger (routed, offered, skipped, timeout, relaxed, overflowed, escalated), oldest first."""
    return (
        RoutingLedgerEntry.objects.filter(case=case, clinic_id=case.clinic_id)
        .select_related("nurse")
        .order_by("at", "pk")
    )


def routing_rules(*, clinic: Clinic) -> QuerySet[RoutingRule]:
    """The clinic's routing rules in evaluation order."""
    return (
        RoutingRule.objects.filter(clinic=clinic)
        .select_related("target_queue", "fallback_queue")
        .order_by("order", "pk")
    )


def cases_for_routing_preview(*, clinic: Clinic, limit: int = 100) -> list[Case]:
    """The clinic's last `limit` routed cases (red-flag transfers are never queued, so never routed), newest first."""
    return list(
        Case.objects.filter(clinic=clinic)
        .exclude(state=CaseState.TRANSFERRED)
        .select_related("queue", "clinic")
        .order_by("-created_at", "-pk")[:limit]
    )
