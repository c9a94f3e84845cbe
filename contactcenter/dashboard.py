"""Supervisor dashboard figures, read from the database for one clinic (never from process memory).

Definitions (issue 3):
- waiting / longest wait per level: cases `queued` now, and `now - arrived_at` of the oldest (seconds).
- KPI compliance per level over the last shift (`SHIFT`, 12 h): among cases that arrived in the window,
  a case *met* its target when a nurse reserved it within the clinic's target for its level
  (`reserved_at - arrived_at <= target`); it *missed* when it was reserved later, or still waits past the
  target. Cases still waiting within the target, and red-flag transfers (never queued), are not counted.
  `reserved_at` is the latest reservation (an expired reservation is cleared when the case is requeued).
- breaches: cases escalated in the window (`escalated_at`), open ones first.
- nurses by presence state (`contactcenter.AgentPresence`; nurses with no row are offline).
- open callbacks past target: open cases whose contact preference is callback and that arrived more than
  the clinic's `callback_target_seconds` ago.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import F, Min
from django.utils import timezone

from clinics.models import Clinic, StaffMember
from contactcenter.models import AgentPresence
from contactcenter.selectors import acuity_label
from triage.models import OPEN_STATES, Case, CaseState

SHIFT = timedelta(hours=12)
LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class LevelRow:
    """One acuity level's figures. `compliance` is `met / (met + missed)`, None when nothing counted."""

    acuity: int
    label: str
    target_seconds: int
    waiting: int
    longest_wait_seconds: int
    met: int
    missed: int

    @property
    def compliance(self) -> float | None:
        counted = self.met + self.missed
        return self.met / counted if counted else None

    @property
    def longest_over_target(self) -> bool:
        return self.waiting > 0 and self.longest_wait_seconds > self.target_seconds


@dataclass(frozen=True)
class Dashboard:
    """Everything the supervisor dashboard shows for one clinic at `now`."""

    clinic: Clinic
    now: datetime
    levels: tuple[LevelRow, ...]
    breaches: tuple[Case, ...]
    presence: dict[str, list[str]] = field(default_factory=dict)
    callbacks_overdue: tuple[Case, ...] = ()

    @property
    def waiting_total(self) -> int:
        return sum(row.waiting for row in self.levels)


def _levels(clinic: Clinic, now: datetime) -> tuple[LevelRow, ...]:
    queued = Case.objects.filter(clinic=clinic, state=CaseState.QUEUED)
    heads = {row["acuity"]: row for row in queued.values("acuity").annotate(n=Min("arrived_at")).values("acuity", "n")}
    counts: dict[int, int] = {level: 0 for level in LEVELS}
    for acuity in queued.values_list("acuity", flat=True):
        counts[acuity] += 1
    met = {level: 0 for level in LEVELS}
    missed = {level: 0 for level in LEVELS}
    recent = (
        Case.objects.filter(clinic=clinic, arrived_at__gte=now - SHIFT)
        .exclude(state=CaseState.TRANSFERRED)
        .values_list("acuity", "arrived_at", "reserved_at", "state")
    )
    for acuity, arrived_at, reserved_at, state in recent:
        target = clinic.target_seconds(acuity)
        if arrived_at is None:  # the filter excludes it; kept for the type checker
            continue
        if reserved_at is not None:
            if (reserved_at - arrived_at).total_seconds() <= target:
                met[acuity] += 1
            else:
                missed[acuity] += 1
        elif state == CaseState.QUEUED and (now - arrived_at).total_seconds() > target:
            missed[acuity] += 1
    rows = []
    for level in LEVELS:
        oldest = heads.get(level, {}).get("n")
        rows.append(
            LevelRow(
                acuity=level,
                label=acuity_label(level),
                target_seconds=clinic.target_seconds(level),
                waiting=counts[level],
                longest_wait_seconds=int((now - oldest).total_seconds()) if oldest else 0,
                met=met[level],
                missed=missed[level],
            )
        )
    return tuple(rows)


def _presence(clinic: Clinic) -> dict[str, list[str]]:
    by_state: dict[str, list[str]] = {state: [] for state in AgentPresence.State.values}
    nurses = StaffMember.objects.filter(clinic=clinic, role=StaffMember.Role.NURSE).select_related("user")
    states = dict(AgentPresence.objects.filter(clinic=clinic).values_list("user_id", "state"))
    for member in nurses.order_by("user__username"):
        name = member.user.get_full_name() or member.user.get_username()
        by_state[states.get(member.user_id, AgentPresence.State.OFFLINE)].append(name)
    return by_state


def dashboard_for_clinic(*, clinic: Clinic, now: datetime | None = None) -> Dashboard:
    """The dashboard figures of `clinic` at `now` (see the module docstring for each definition)."""
    now = now or timezone.now()
    breaches = tuple(
        Case.objects.filter(clinic=clinic, escalated_at__gte=now - SHIFT)
        .select_related("reserved_by")
        .order_by(F("closed_at").asc(nulls_first=True), "-escalated_at")[:50]
    )
    callbacks_overdue = tuple(
        Case.objects.filter(
            clinic=clinic,
            state__in=OPEN_STATES,
            contact_preference=Case.ContactPreference.CALLBACK,
            arrived_at__lt=now - timedelta(seconds=clinic.callback_target_seconds),
        ).order_by("arrived_at")[:50]
    )
    return Dashboard(
        clinic=clinic,
        now=now,
        levels=_levels(clinic, now),
        breaches=breaches,
        presence=_presence(clinic),
        callbacks_overdue=callbacks_overdue,
    )
