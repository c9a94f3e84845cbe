"""The accumulating priority queue (DESIGN §5).

A waiting case of acuity level k has priority `b_k * wait_seconds`; the next case is the one with the
highest priority. Every case of one level accrues at the same rate, so each level is FIFO within itself and
the head of the whole queue is the best of at most five per-level heads: no re-sorting of the backlog as
time passes.

Rates: `b_k = 1 / target_k`, with `target_k` the clinic's time-to-nurse target for level k (CTAS 2016
defaults: level 2 15 min, 3 30 min, 4 60 min, 5 120 min; level 1 is "immediate" and uses a 1 s floor).
Priority is then the fraction of its target a case has used: a level-4 case that waited 45 min (0.75) goes
before a level-2 case that arrived 5 min ago (0.33), and neither level starves. Issue 3 tunes `b_k` to
per-clinic KPI targets; this module is where that happens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Protocol, TypeVar


class Waiting(Protocol):
    """What the engine needs of a waiting case (read-only)."""

    @property
    def acuity(self) -> int: ...

    @property
    def arrived_at(self) -> datetime | None: ...


W = TypeVar("W", bound=Waiting)


def rates_for_targets(targets_seconds: Mapping[int, int]) -> dict[int, float]:
    """Accrual rate per level (1/s) from target times in seconds: `b_k = 1 / max(target_k, 1)`."""
    return {level: 1.0 / max(int(target), 1) for level, target in targets_seconds.items()}


def priority(case: Waiting, *, rates: Mapping[int, float], now: datetime) -> float:
    """Accumulated priority of `case` at `now`: `b_acuity * wait_seconds` (dimensionless)."""
    assert case.arrived_at is not None
    wait = max((now - case.arrived_at).total_seconds(), 0.0)
    return rates[case.acuity] * wait


def ranked(heads: Iterable[W], *, rates: Mapping[int, float], now: datetime) -> list[W]:
    """Per-level heads best first: highest priority, then the more urgent level, then the older case."""
    return sorted(heads, key=lambda c: (-priority(c, rates=rates, now=now), c.acuity, c.arrived_at or now))
