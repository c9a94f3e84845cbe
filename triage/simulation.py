"""Discrete-event simulation of a nurse line, ordered by the project's own queue code.

k nurses (servers) serve a multi-class queue, non-preemptively: calls of acuity level k arrive as a Poisson
process (rate per second), each brings an exponential handle time, and whenever a nurse becomes free the
next case is chosen by `triage.priority.ranked` over the per-level heads, exactly as `case_claim_next` does
(not a copy of it). The event list is a `heapq`; randomness is one seeded `random.Random`, and each call's
level and handle time are drawn on arrival, so runs with the same seed see the same calls whatever the
discipline (common random numbers: differences between disciplines are not sampling noise).

Statistics exclude a warm-up share of the first calls, and arrivals continue until every measured call has
been served, so the end of the run does not drain the queue in the measured calls' favour.

Time is in seconds; rates per second. Pure Python (no Django), so benches and tuning run without a database.
Reference for the two-class check: Kleinrock (1964), see `kleinrock_waits`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from triage.priority import Mode, ranked, rates_for_targets

# Simulated time 0. Any fixed instant works; arrivals are `EPOCH + t`.
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

_ARRIVAL = 0
_DEPARTURE = 1


@dataclass(frozen=True)
class Discipline:
    """A queue discipline to simulate: `mode` plus what it needs (`rates` for accumulating, targets for EDF)."""

    mode: Mode
    rates: Mapping[int, float] = field(default_factory=dict)
    targets_seconds: Mapping[int, int] | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or str(self.mode)


@dataclass(frozen=True, slots=True)
class SimCase:
    """One simulated call (satisfies `triage.priority.Waiting`)."""

    acuity: int
    arrived_at: datetime
    t: float
    service: float
    index: int


@dataclass(frozen=True)
class LevelStats:
    """Waits (seconds) of one level's measured calls; `within_target` is None without a target."""

    level: int
    calls: int
    mean_wait: float
    p50: float
    p90: float
    p95: float
    p99: float
    max_wait: float
    target_seconds: float | None
    within_target: float | None


@dataclass(frozen=True)
class SimulationResult:
    """Per-level statistics of one run; `utilisation` is busy nurse-time / (nurses x horizon)."""

    discipline: Discipline
    levels: dict[int, LevelStats]
    calls: int
    servers: int
    utilisation: float

    def slack(self, kpi_targets: Mapping[int, tuple[float, float]]) -> dict[int, float]:
        """Per level with calls: fraction within its target time minus the required fraction (>= 0 met)."""
        out: dict[int, float] = {}
        for level, (seconds, fraction) in kpi_targets.items():
            stats = self.levels.get(level)
            if stats is None or stats.calls == 0:
                continue
            out[level] = _within(stats, seconds) - fraction
        return out

    def meets(self, kpi_targets: Mapping[int, tuple[float, float]]) -> bool:
        """True when every level with calls reaches its required fraction within its target time."""
        return all(s >= 0 for s in self.slack(kpi_targets).values())


def _within(stats: LevelStats, seconds: float) -> float:
    """The fraction within `seconds`, which must be the target the run was measured against."""
    if stats.within_target is None or stats.target_seconds is None or stats.target_seconds != seconds:
        raise ValueError(f"level {stats.level} was not measured against a {seconds} s target")
    return stats.within_target


def _quantile(sorted_waits: list[float], q: float) -> float:
    if not sorted_waits:
        return 0.0
    return sorted_waits[min(len(sorted_waits) - 1, int(q * len(sorted_waits)))]


def simulate(
    *,
    arrival_rates: Mapping[int, float],
    mean_service_seconds: Mapping[int, float] | float,
    servers: int,
    discipline: Discipline,
    calls: int,
    seed: int,
    targets_seconds: Mapping[int, float] | None = None,
    warmup_fraction: float = 0.05,
) -> SimulationResult:
    """Simulate `calls` calls (plus a warm-up share of them, discarded) through `servers` nurses.

    `arrival_rates`: level -> Poisson arrival rate (calls per second). `mean_service_seconds`: mean of the
    exponential handle time, one for all levels or per level. `targets_seconds`: level -> target used for
    `within_target` (levels without one report None). Returns per-level wait statistics in seconds.
    Raises ValueError for no servers, no arrivals or a non-positive call count.
    """
    if servers < 1 or calls < 1:
        raise ValueError("need at least one server and one call")
    levels = sorted(level for level, rate in arrival_rates.items() if rate > 0)
    if not levels:
        raise ValueError("no arrivals")
    total_rate = sum(arrival_rates[level] for level in levels)
    cumulative: list[float] = []
    running = 0.0
    for level in levels:
        running += arrival_rates[level] / total_rate
        cumulative.append(running)
    means = (
        {level: float(mean_service_seconds) for level in levels}
        if isinstance(mean_service_seconds, int | float)
        else {level: float(mean_service_seconds[level]) for level in levels}
    )
    warmup = int(calls * warmup_fraction)
    measured_end = warmup + calls

    rng = random.Random(seed)
    queues: dict[int, deque[SimCase]] = {level: deque() for level in levels}
    waits: dict[int, list[float]] = {level: [] for level in levels}
    events: list[tuple[float, int, int]] = []
    seq = 0
    busy = 0
    busy_time = 0.0
    served_measured = 0
    arrived = 0
    rates = discipline.rates
    mode = discipline.mode
    targets = discipline.targets_seconds

    def start(case: SimCase, now: float) -> None:
        nonlocal seq, busy_time, served_measured
        if warmup <= case.index < measured_end:
            waits[case.acuity].append(now - case.t)
            served_measured += 1
            busy_time += case.service
        seq += 1
        heapq.heappush(events, (now + case.service, seq, _DEPARTURE))

    heapq.heappush(events, (rng.expovariate(total_rate), 0, _ARRIVAL))
    first_measured_t: float | None = None
    last_t = 0.0
    while served_measured < calls:
        now, _, kind = heapq.heappop(events)
        last_t = now
        if kind == _ARRIVAL:
            u = rng.random()
            level = levels[-1]
            for candidate, edge in zip(levels, cumulative, strict=True):
                if u < edge:
                    level = candidate
                    break
            case = SimCase(
                acuity=level,
                arrived_at=EPOCH + timedelta(seconds=now),
                t=now,
                service=rng.expovariate(1.0 / means[level]),
                index=arrived,
            )
            if arrived == warmup:
                first_measured_t = now
            arrived += 1
            seq += 1
            heapq.heappush(events, (now + rng.expovariate(total_rate), seq, _ARRIVAL))
            if busy < servers:
                busy += 1
                start(case, now)
            else:
                queues[level].append(case)
        else:
            heads = [queue[0] for queue in queues.values() if queue]
            if not heads:
                busy -= 1
                continue
            best = ranked(heads, rates=rates, now=EPOCH + timedelta(seconds=now), mode=mode, targets_seconds=targets)[0]
            queues[best.acuity].popleft()
            start(best, now)

    horizon = max(last_t - (first_measured_t or 0.0), 1e-9)
    stats: dict[int, LevelStats] = {}
    for level in levels:
        sample = sorted(waits[level])
        target = None if targets_seconds is None else targets_seconds.get(level)
        within = None
        if target is not None and sample:
            within = sum(1 for w in sample if w <= target + 1e-6) / len(sample)
        stats[level] = LevelStats(
            level=level,
            calls=len(sample),
            mean_wait=sum(sample) / len(sample) if sample else 0.0,
            p50=_quantile(sample, 0.50),
            p90=_quantile(sample, 0.90),
            p95=_quantile(sample, 0.95),
            p99=_quantile(sample, 0.99),
            max_wait=sample[-1] if sample else 0.0,
            target_seconds=target,
            within_target=within,
        )
    return SimulationResult(
        discipline=discipline,
        levels=stats,
        calls=calls,
        servers=servers,
        utilisation=min(busy_time / (servers * horizon), 1.0),
    )


def arrival_rates_per_second(*, arrivals_per_hour: float, mix: Mapping[int, float]) -> dict[int, float]:
    """Split a total arrival rate (calls/hour) over levels by `mix` (weights, normalised; e.g. 12/30/36/20)."""
    total = sum(mix.values())
    if total <= 0 or arrivals_per_hour <= 0:
        raise ValueError("mix and arrival rate must be positive")
    return {level: arrivals_per_hour / 3600.0 * weight / total for level, weight in mix.items() if weight > 0}


def kleinrock_waits(
    *, arrival_rates: tuple[float, float], service_rates: tuple[float, float], b: float
) -> tuple[float, float]:
    """Mean waits (E[W1], E[W2]) of a two-class non-preemptive M/M/1 accumulating priority queue.

    Class 1 accrues priority at b1, class 2 at b2 <= b1, `b = b2 / b1` in [0, 1]. Kleinrock (1964):
    `E[W2] = W0 / ((1 - rho)(1 - rho1 (1 - b)))`, `E[W1] = W0 / (1 - rho) - rho2 E[W2] (1 - b)`, with
    `W0 = sum_i lambda_i E[S_i^2] / 2` (E[S^2] = 2 / mu^2 for exponential service). b = 0 is strict priority,
    b = 1 FIFO. Raises ValueError when rho >= 1.
    """
    (lam1, lam2), (mu1, mu2) = arrival_rates, service_rates
    rho1, rho2 = lam1 / mu1, lam2 / mu2
    rho = rho1 + rho2
    if rho >= 1:
        raise ValueError("unstable: rho >= 1")
    w0 = lam1 * 2 / mu1**2 / 2 + lam2 * 2 / mu2**2 / 2
    w2 = w0 / ((1 - rho) * (1 - rho1 * (1 - b)))
    w1 = w0 / (1 - rho) - rho2 * w2 * (1 - b)
    return w1, w2


def nurses_needed(
    *,
    arrivals_per_hour: float,
    mix: Mapping[int, float],
    mean_service_minutes: float,
    kpi_targets: Mapping[int, tuple[float, float]],
    rates: Mapping[int, float] | None = None,
    calls: int = 20_000,
    seed: int = 1,
    max_nurses: int = 200,
) -> int:
    """The smallest number of nurses whose simulated waits meet every level's KPI (staffing what-if).

    `arrivals_per_hour`: total calls per hour; `mix`: level -> weight (normalised); `mean_service_minutes`:
    mean handle time (exponential); `kpi_targets`: level -> (target seconds, required fraction); `rates`:
    the accumulating-priority rates to simulate (a clinic's tuned rates), default `b_k = 1 / target_k`.
    Starts at the least stable staffing (offered load in erlangs, rounded down, + 1) and adds nurses until
    the KPIs are met. `calls` per trial (default 20,000 ~ 1-2 s) trades precision for speed. Raises
    ValueError when even `max_nurses` does not meet the targets.
    """
    per_second = arrival_rates_per_second(arrivals_per_hour=arrivals_per_hour, mix=mix)
    targets = {level: seconds for level, (seconds, _fraction) in kpi_targets.items()}
    chosen_rates = dict(rates) if rates else rates_for_targets({lv: int(s) for lv, s in targets.items()})
    discipline = Discipline(mode=Mode.ACCUMULATING, rates=chosen_rates)
    erlangs = arrivals_per_hour * mean_service_minutes / 60.0
    nurses = max(1, math.floor(erlangs) + 1)
    while nurses <= max_nurses:
        result = simulate(
            arrival_rates=per_second,
            mean_service_seconds=mean_service_minutes * 60.0,
            servers=nurses,
            discipline=discipline,
            calls=calls,
            seed=seed,
            targets_seconds=targets,
        )
        if result.meets(kpi_targets):
            return nurses
        nurses += 1
    raise ValueError(f"no staffing up to {max_nurses} nurses meets the KPI targets")
