"""Queue ordering: the accumulating priority queue (DESIGN §5) and the disciplines it is measured against.

A waiting case of acuity level k has priority `b_k * wait_seconds`; the next case is the one with the
highest priority (Kleinrock 1964, "A delay-dependent queue discipline", Naval Research Logistics Quarterly
11(3-4); Stanford, Taylor & Ziedins 2014, "Waiting time distributions in the accumulating priority queue",
Queueing Systems 77). Every case of one level accrues at the same rate, so each level is FIFO within itself
and the head of the whole queue is the best of at most five per-level heads: no re-sorting of the backlog
as time passes. The same holds for every discipline here (strict priority, FIFO and earliest deadline first
are FIFO within a level too), so `ranked` only ever sees per-level heads.

Rates. Default `b_k = 1 / target_k`, with `target_k` the clinic's time-to-nurse target for level k in
seconds (CTAS 2016: level 2 15 min, 3 30 min, 4 60 min, 5 120 min): priority is then the fraction of its
target a case has used. A level with target 0 ("immediate", CTAS level 1) gets an infinite rate: it goes
before every finite-rate level from the moment it arrives. Rates tuned to a clinic's KPI targets
(`triage.tuning.tune_rates`, stored on `Clinic.accumulation_rates`) replace the defaults for the
finite-rate levels; only their ratios matter.

Disciplines (`Mode`):
- `accumulating`: highest `b_k * wait`, then the more urgent level, then the older case.
- `strict`: most urgent level first, FIFO within (the limit b_{k+1}/b_k -> 0). Used under overload
  (`triage.selectors.queue_discipline`) so the most urgent class stays protected.
- `fifo`: oldest case first (the limit of equal rates).
- `edf`: earliest deadline first, deadline = arrival + target_k (simulation baseline only).
The simulator (`triage.simulation`) orders its queue with this module, so benchmarks measure this code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar


class Mode(StrEnum):
    """A queue discipline (see the module docstring)."""

    ACCUMULATING = "accumulating"
    STRICT = "strict"
    FIFO = "fifo"
    EDF = "edf"


class Waiting(Protocol):
    """What the engine needs of a waiting case (read-only)."""

    @property
    def acuity(self) -> int: ...

    @property
    def arrived_at(self) -> datetime | None: ...


W = TypeVar("W", bound=Waiting)


def rates_for_targets(targets_seconds: Mapping[int, int]) -> dict[int, float]:
    """Default accrual rate per level (1/s) from target times in seconds: `b_k = 1 / target_k`.

    A target of 0 s (immediate) gives `math.inf`: that level precedes every other from arrival.
    """
    return {level: (1.0 / int(target) if int(target) > 0 else math.inf) for level, target in targets_seconds.items()}


def effective_rates(
    *, targets_seconds: Mapping[int, int], stored: Mapping[str, float] | Mapping[int, float] | None
) -> dict[int, float]:
    """The rates a clinic's claims use: `stored` (tuned) rates when they cover every finite-target level.

    `targets_seconds`: level -> target seconds (every level 1-5). `stored`: the clinic's
    `accumulation_rates` (keys "2".."5" or ints, values > 0, relative). Stored rates replace the defaults
    only as a complete set, because tuned and default rates are on different scales; immediate levels
    (target 0) keep `math.inf`. Incomplete or empty `stored` -> the defaults of `rates_for_targets`.
    """
    defaults = rates_for_targets(targets_seconds)
    tuned = {int(level): float(rate) for level, rate in (stored or {}).items()}
    finite_levels = [level for level, rate in defaults.items() if math.isfinite(rate)]
    if not tuned or any(level not in tuned or not tuned[level] > 0 for level in finite_levels):
        return defaults
    return {level: (tuned[level] if level in finite_levels else defaults[level]) for level in defaults}


def priority(case: Waiting, *, rates: Mapping[int, float], now: datetime) -> float:
    """Accumulated priority of `case` at `now`: `b_acuity * wait_seconds` (dimensionless; inf if b is inf)."""
    assert case.arrived_at is not None
    rate = rates[case.acuity]
    if math.isinf(rate):
        return math.inf
    wait = max((now - case.arrived_at).total_seconds(), 0.0)
    return rate * wait


def ranked(
    heads: Iterable[W],
    *,
    rates: Mapping[int, float],
    now: datetime,
    mode: Mode | str = Mode.ACCUMULATING,
    targets_seconds: Mapping[int, int] | None = None,
) -> list[W]:
    """Per-level heads best first under `mode` (see the module docstring).

    `rates` (level -> b_k) are used by `accumulating`; `targets_seconds` (level -> s) by `edf` (required
    there, ValueError otherwise). Ties always fall to the more urgent level, then the older case.
    """
    mode = Mode(mode)
    if mode is Mode.ACCUMULATING:
        return sorted(heads, key=lambda c: (-priority(c, rates=rates, now=now), c.acuity, c.arrived_at or now))
    if mode is Mode.STRICT:
        return sorted(heads, key=lambda c: (c.acuity, c.arrived_at or now))
    if mode is Mode.FIFO:
        return sorted(heads, key=lambda c: (c.arrived_at or now, c.acuity))
    if targets_seconds is None:
        raise ValueError("earliest-deadline-first needs targets_seconds")
    targets = targets_seconds

    def deadline(c: W) -> datetime:
        return (c.arrived_at or now) + timedelta(seconds=targets[c.acuity])

    return sorted(heads, key=lambda c: (deadline(c), c.acuity))
