"""Read queries on cases, always scoped to a clinic."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet
from django.utils import timezone

from clinics.models import Clinic
from clinics.selectors import staff_for_user
from clinics.services import audit_record
from triage import priority
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

    A refused lookup appends an `access.denied` audit row to the *user's* clinic log (object "case", the id
    asked for) in the caller's transaction: the same row for another clinic's case and for an unknown id, so
    the log itself does not tell the two apart either (HIPAA 164.312(b) audit controls; ASVS 5.0 V16.3.2,
    log failed authorization attempts). The row holds no data of the other clinic.
    """
    staff = staff_for_user(user)
    try:
        return Case.objects.select_related("clinic", "reserved_by", "protocol_version_ref").get(
            pk=case_id, clinic=staff.clinic
        )
    except Case.DoesNotExist:
        audit_record(clinic=staff.clinic, actor=user, action="access.denied", object_type="case", object_id=case_id)
        raise


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


# --- Queue discipline: accumulating priority, or strict priority under overload ------------------------------

# Offered load is estimated over this window of arrivals (the dashboard's "last hour").
LOAD_WINDOW = timedelta(hours=1)
# Handle time (accepted -> closed) is averaged over cases that arrived in this window, most recent first.
HANDLE_TIME_WINDOW = timedelta(hours=24)
HANDLE_TIME_SAMPLE = 200
# Below this many closed cases the handle time is this default: 12 min, the nurse-line scenario of the
# simulation bench (typical after-hours triage calls last 10-15 min).
HANDLE_TIME_MIN_SAMPLE = 5
DEFAULT_HANDLE_SECONDS = 12 * 60
_LEVELS = (1, 2, 3, 4, 5)
_HANDLED_STATES = (CaseState.RESERVED, CaseState.IN_PROGRESS, CaseState.WRAP_UP)


@dataclass(frozen=True)
class QueueDiscipline:
    """How `clinic`'s claims are ordered right now, and why (for claims and the supervisor dashboard).

    - `mode`: `priority.Mode.ACCUMULATING` or `priority.Mode.STRICT` (overload fallback).
    - `offered_load`: rho = arrivals/hour x mean handle seconds / 3600 / nurses on duty (1.0 = the nurses
      on duty are busy all the time; at or above 1 the queue grows without bound).
    - `threshold`: the clinic's `overload_threshold`; strict when `offered_load >= threshold`.
    - `arrivals_last_hour`: cases that entered the queue in the last hour (any state now).
    - `mean_handle_seconds`, `handle_time_sample`: mean accepted -> closed time of up to 200 cases closed
      among the last 24 h of arrivals, and how many; fewer than 5 -> `DEFAULT_HANDLE_SECONDS` with sample 0.
    - `nurses_on_duty`, `nurses_source`: "given" (the caller's count, e.g. presence), "counted" (distinct
      nurses holding a case now or who closed one in the last hour), or "assumed" (none counted: 1).
    - `rates`: level -> b_k the accumulating mode uses (`math.inf` for immediate levels); `rates_source`:
      "tuned" (the clinic's `accumulation_rates`) or "default" (1 / target).
    - `reason`: one sentence for people. `as_json()`: the same as a JSON-safe dict (inf -> None).
    """

    mode: priority.Mode
    offered_load: float
    threshold: float
    arrivals_last_hour: int
    mean_handle_seconds: float
    handle_time_sample: int
    nurses_on_duty: int
    nurses_source: str
    rates: dict[int, float] = field(default_factory=dict)
    rates_source: str = "default"
    reason: str = ""
    computed_at: datetime | None = None

    @property
    def strict(self) -> bool:
        return self.mode is priority.Mode.STRICT

    def as_json(self) -> dict[str, Any]:
        """JSON-safe dict for the dashboard and the API (infinite rates as None, times ISO 8601)."""
        return {
            "mode": str(self.mode),
            "offered_load": round(self.offered_load, 3),
            "threshold": self.threshold,
            "arrivals_last_hour": self.arrivals_last_hour,
            "mean_handle_seconds": round(self.mean_handle_seconds, 1),
            "handle_time_sample": self.handle_time_sample,
            "nurses_on_duty": self.nurses_on_duty,
            "nurses_source": self.nurses_source,
            "rates": {str(k): (None if math.isinf(v) else v) for k, v in sorted(self.rates.items())},
            "rates_source": self.rates_source,
            "reason": self.reason,
            "computed_at": self.computed_at.isoformat() if self.computed_at else None,
        }


def clinic_rates(*, clinic: Clinic) -> tuple[dict[int, float], str]:
    """The accumulating-priority rates of `clinic` and their source ("tuned" or "default")."""
    targets = {level: clinic.target_seconds(level) for level in _LEVELS}
    rates = priority.effective_rates(targets_seconds=targets, stored=clinic.accumulation_rates or {})
    return rates, ("default" if rates == priority.rates_for_targets(targets) else "tuned")


def queue_discipline(
    *, clinic: Clinic, now: datetime | None = None, nurses_on_duty: int | None = None
) -> QueueDiscipline:
    """Estimate `clinic`'s offered load and choose accumulating or strict priority (shape: `QueueDiscipline`).

    rho = lambda x E[S] / c: lambda from the last hour's arrivals, E[S] from recently closed cases
    (accepted, or reserved if never accepted, -> closed), c = `nurses_on_duty` if given (the console's
    presence count), else the distinct nurses holding a case now or who closed one in the last hour (at
    least 1). When rho reaches `clinic.overload_threshold` (default 0.95) claims use strict priority: under
    overload an accumulating queue lets lower levels' accrued priority delay new urgent cases, whereas strict
    priority bounds the most urgent level's wait by its own load (non-preemptive priority queue, Cobham
    1954; Kleinrock 1976 vol. 2 §3.6), so the most urgent class stays protected.

    Every query filters on (clinic, state, acuity, arrived_at range) so it reads the `case_queue_head`
    index; the cost follows the last day's arrivals, not the backlog.
    """
    now = now or timezone.now()
    rates, rates_source = clinic_rates(clinic=clinic)
    recent = Case.objects.filter(clinic=clinic, acuity__in=_LEVELS)
    arrivals = recent.filter(state__in=CaseState.values, arrived_at__gt=now - LOAD_WINDOW, arrived_at__lte=now).count()

    closed = list(
        recent.filter(state=CaseState.CLOSED, arrived_at__gt=now - HANDLE_TIME_WINDOW, closed_at__isnull=False)
        .order_by("-arrived_at")
        .values_list("accepted_at", "reserved_at", "closed_at")[:HANDLE_TIME_SAMPLE]
    )
    durations = [
        (closed_at - started).total_seconds()
        for accepted_at, reserved_at, closed_at in closed
        if closed_at is not None and (started := accepted_at or reserved_at) is not None
    ]
    if len(durations) >= HANDLE_TIME_MIN_SAMPLE:
        handle_seconds, sample = max(sum(durations) / len(durations), 1.0), len(durations)
    else:
        handle_seconds, sample = float(DEFAULT_HANDLE_SECONDS), 0

    if nurses_on_duty is not None:
        nurses, source = max(int(nurses_on_duty), 1), "given"
    else:
        holding = set(
            recent.filter(state__in=_HANDLED_STATES, reserved_by__isnull=False).values_list("reserved_by", flat=True)
        )
        finished = set(
            recent.filter(
                state=CaseState.CLOSED,
                arrived_at__gt=now - HANDLE_TIME_WINDOW,
                closed_at__gt=now - LOAD_WINDOW,
                reserved_by__isnull=False,
            ).values_list("reserved_by", flat=True)
        )
        counted = len(holding | finished)
        nurses, source = (counted, "counted") if counted else (1, "assumed")

    load = arrivals * handle_seconds / 3600.0 / nurses
    threshold = float(clinic.overload_threshold)
    basis = (
        f"{arrivals} arrival{'s' if arrivals != 1 else ''} in the last hour"
        f" x {handle_seconds / 60:.1f} min mean handle time"
        f" / {nurses} nurse{'s' if nurses != 1 else ''} on duty"
    )
    if load >= threshold:
        mode = priority.Mode.STRICT
        reason = (
            f"Overload: offered load {load:.2f} ({basis}) is at or above {threshold:.2f}; strict priority "
            "(most urgent level first) protects the most urgent callers."
        )
    else:
        mode = priority.Mode.ACCUMULATING
        reason = (
            f"Accumulating priority ({rates_source} rates): offered load {load:.2f} ({basis}) is below {threshold:.2f}."
        )
    return QueueDiscipline(
        mode=mode,
        offered_load=load,
        threshold=threshold,
        arrivals_last_hour=arrivals,
        mean_handle_seconds=handle_seconds,
        handle_time_sample=sample,
        nurses_on_duty=nurses,
        nurses_source=source,
        rates=rates,
        rates_source=rates_source,
        reason=reason,
        computed_at=now,
    )
