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
- queue discipline: `triage.selectors.queue_discipline` with the nurses present at a console (available,
  busy, wrap-up) as the nurses on duty: accumulating priority, or strict priority under overload, and why.
- SLO breaches (`ops`): the clinic's service level objectives currently breached (open episodes, with the
  value found and the threshold), re-fetched on every `slo.breached` / `slo.cleared` event.
- staffing what-if (on demand, `staffing_what_if`): the nurses needed to meet every KPI at the current or a
  typed arrival rate, simulated with the clinic's own ordering (`triage.simulation.nurses_needed`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db.models import Count, F, Min
from django.utils import timezone

from clinics.models import Clinic, StaffMember
from contactcenter.models import AgentPresence
from contactcenter.selectors import acuity_label
from ops.models import SloBreach
from ops.selectors import slo_breaches_open
from triage.models import OPEN_STATES, Case, CaseState
from triage.selectors import QueueDiscipline, clinic_rates, queue_discipline
from triage.simulation import nurses_needed

# The nurse-line mix of the simulation bench (levels 2-5, %), used when the clinic has no arrivals to learn from.
DEFAULT_MIX: dict[int, float] = {2: 12.0, 3: 30.0, 4: 36.0, 5: 20.0}
# Calls simulated per staffing trial: ~0.5 s each on this machine kind; the answer is cached per input.
WHAT_IF_CALLS = 10_000
WHAT_IF_CACHE_SECONDS = 300
# Below this many arrivals in the last 12 h the clinic's own mix is noise: the bench's mix is used instead.
MIN_MIX_SAMPLE = 20
MAX_ARRIVALS_PER_HOUR = 1000.0

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
    discipline: QueueDiscipline | None = None
    slo_breaches: tuple[SloBreach, ...] = ()

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
    presence = _presence(clinic)
    on_duty = sum(len(presence[state]) for state in ON_DUTY_STATES)
    return Dashboard(
        clinic=clinic,
        now=now,
        levels=_levels(clinic, now),
        breaches=breaches,
        presence=presence,
        callbacks_overdue=callbacks_overdue,
        discipline=queue_discipline(clinic=clinic, now=now, nurses_on_duty=on_duty or None),
        slo_breaches=tuple(slo_breaches_open(clinic=clinic)),
    )


ON_DUTY_STATES = (AgentPresence.State.AVAILABLE, AgentPresence.State.BUSY, AgentPresence.State.WRAP_UP)


class InvalidWhatIf(ValueError):
    """The typed arrival rate is not a number in (0, MAX_ARRIVALS_PER_HOUR]."""


@dataclass(frozen=True)
class StaffingWhatIf:
    """Nurses needed to meet every KPI (`nurses_needed`, None with `error` when no staffing does).

    `arrivals_per_hour` and its `source` ("typed", "last hour", or "last 12 h" when the last hour had none),
    `mix` (level -> share, %, of the last 12 h arrivals when there were at least `MIN_MIX_SAMPLE`, else the
    bench's nurse-line mix 12/30/36/20), and
    `mean_service_minutes` (the measured mean handle time of `queue_discipline`).
    """

    arrivals_per_hour: float
    source: str
    mix: dict[int, float]
    mean_service_minutes: float
    nurses_needed: int | None
    error: str = ""


def parse_arrivals(raw: str) -> float | None:
    """The typed arrival rate (calls per hour) or None for "use the current rate". Raises InvalidWhatIf."""
    if not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise InvalidWhatIf("Type the arrivals per hour as a number.") from exc
    if not 0 < value <= MAX_ARRIVALS_PER_HOUR:
        raise InvalidWhatIf(f"Arrivals per hour must be above 0 and at most {MAX_ARRIVALS_PER_HOUR:.0f}.")
    return value


def what_if_inputs(
    *, clinic: Clinic, arrivals_per_hour: float | None, now: datetime | None = None
) -> tuple[float, str, dict[int, float], float]:
    """Database reads for the what-if: (arrivals per hour, its source, mix by level in %, mean service min)."""
    now = now or timezone.now()
    discipline = queue_discipline(clinic=clinic, now=now)
    recent = (
        Case.objects.filter(clinic=clinic, arrived_at__gte=now - SHIFT, acuity__in=(2, 3, 4, 5))
        .values("acuity")
        .annotate(n=Count("pk"))
    )
    counts = {row["acuity"]: row["n"] for row in recent}
    total = sum(counts.values())
    if total >= MIN_MIX_SAMPLE:
        mix = {level: 100.0 * counts.get(level, 0) / total for level in (2, 3, 4, 5)}
    else:
        mix = dict(DEFAULT_MIX)
    if arrivals_per_hour is not None:
        rate, source = arrivals_per_hour, "typed"
    elif discipline.arrivals_last_hour:
        rate, source = float(discipline.arrivals_last_hour), "last hour"
    else:
        rate, source = total / (SHIFT.total_seconds() / 3600), "last 12 h"
    return rate, source, mix, discipline.mean_handle_seconds / 60.0


def staffing_what_if(
    *,
    clinic: Clinic,
    arrivals_per_hour: float,
    source: str,
    mix: dict[int, float],
    mean_service_minutes: float,
) -> StaffingWhatIf:
    """Simulate the clinic's ordering (its tuned or default rates) to find the nurses needed (CPU-bound,
    about 0.5 s per trial; cached for `WHAT_IF_CACHE_SECONDS` per input). No database access, so callers may
    run it off the request thread."""
    base = StaffingWhatIf(arrivals_per_hour, source, mix, mean_service_minutes, None)
    if arrivals_per_hour <= 0 or not any(mix.values()):
        return StaffingWhatIf(**{**base.__dict__, "error": "No arrivals to staff for."})
    kpis: dict[int, tuple[float, float]] = {}
    for level, share in mix.items():
        if share > 0:
            target = clinic.kpi_target(level)
            kpis[level] = (float(target.seconds), float(target.fraction))
    rates, _source = clinic_rates(clinic=clinic)
    inputs = (clinic.pk, round(arrivals_per_hour, 2), sorted(mix.items()), round(mean_service_minutes, 2))
    digest = hashlib.sha256(repr((*inputs, sorted(kpis.items()), sorted(rates.items()))).encode()).hexdigest()
    key = f"what-if:{digest}"
    needed = cache.get(key)
    if needed is None:
        try:
            needed = nurses_needed(
                arrivals_per_hour=arrivals_per_hour,
                mix=mix,
                mean_service_minutes=mean_service_minutes,
                kpi_targets=kpis,
                rates=rates,
                calls=WHAT_IF_CALLS,
            )
        except ValueError as exc:
            return StaffingWhatIf(**{**base.__dict__, "error": str(exc)})
        cache.set(key, needed, WHAT_IF_CACHE_SECONDS)
    return StaffingWhatIf(**{**base.__dict__, "nurses_needed": int(needed)})
