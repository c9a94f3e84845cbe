"""KPI-driven choice of accumulating-priority rates b_k, by simulation.

Why. In an accumulating priority queue the rates' ratios decide how waiting time is shared between levels:
b_{k+1}/b_k -> 0 gives strict priority, equal rates give FIFO (Kleinrock 1964, "A delay-dependent queue
discipline", Naval Research Logistics Quarterly 11). Kleinrock's conservation law fixes the *total*
(load-weighted mean wait) for any work-conserving discipline; the rates only move waiting between levels.
Stanford, Taylor & Ziedins (2014, "Waiting time distributions in the accumulating priority queue",
Queueing Systems 77:297-330) derive the per-class waiting-time *distributions* of the APQ and propose
choosing the rates so that each class meets a tail KPI of the form P(W_k <= t_k) >= f_k — exactly the CTAS
shape "95 % of level 2 within 15 min". Their closed forms are for a single server (M/G/1); a nurse line has
several nurses, so here the same KPI-driven choice is made numerically with `triage.simulation`, which
orders its queue with the project's own `triage.priority.ranked`.

Method. Work in log-rates. Each iteration simulates the line with common random numbers (one seed, so
every candidate sees the same calls and the search is deterministic) and computes each level's slack
s_k = P(W_k <= t_k) - f_k. The aim is max-min slack: every level at or above its target with the same
margin. Levels with below-average slack gain rate, above-average lose it:
`log b_k <- log b_k - step * (s_k - mean(s))`, then rates are rescaled so the largest is 1 (only ratios
matter). The best candidate (largest minimum slack) is kept; when an iteration does not improve it the
search returns to the best and halves the step. It stops after `iterations`, when the step has shrunk
below `min_step`, or (if a `margin` is given) as soon as every level's slack reaches it. Without a margin
it keeps raising the smallest slack, which leaves every level the same headroom for the variability of a
real night (e.g. 3.4-3.7 points each in the bench's nurse-line scenario, against 0.3-6 points when it stops
at the first feasible rates). Starting point: the default `b_k = 1 / t_k`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from triage.priority import Mode, rates_for_targets
from triage.simulation import Discipline, SimulationResult, arrival_rates_per_second, simulate


@dataclass(frozen=True)
class TuningReport:
    """The outcome of a search: the best `rates`, its simulated `result`, slack per level, and whether met."""

    rates: dict[int, float]
    result: SimulationResult
    slack: dict[int, float]
    met: bool
    evaluations: int


def search_rates(
    *,
    kpi_targets: Mapping[int, tuple[float, float]],
    mix: Mapping[int, float],
    arrivals_per_hour: float,
    mean_service_minutes: float,
    nurses: int,
    calls: int = 60_000,
    seed: int = 7,
    iterations: int = 20,
    margin: float | None = None,
    step: float = 4.0,
    min_step: float = 0.1,
) -> TuningReport:
    """Search accumulating-priority rates meeting every level's KPI (method: module docstring).

    `kpi_targets`: level -> (target seconds, required fraction 0-1]; levels with a 0 s target are
    "immediate" (infinite rate, not tuned). `mix`: level -> arrival weight (normalised). `arrivals_per_hour`:
    total calls/hour; `mean_service_minutes`: mean exponential handle time; `nurses`: servers. `calls` per
    evaluation, `seed` for common random numbers, `margin`: stop early once every level's slack (fraction
    within target minus the required fraction) reaches it; None = maximise the smallest slack. Returns the
    best rates found (largest finite rate = 1.0) with its simulated result; `met` is False when no candidate
    met every target (e.g. too few nurses).
    """
    targets = {level: int(seconds) for level, (seconds, _f) in kpi_targets.items()}
    defaults = rates_for_targets(targets)
    tuned_levels = sorted(level for level in mix if level in defaults and math.isfinite(defaults[level]))
    if not tuned_levels:
        raise ValueError("no level with a finite target to tune")
    per_second = arrival_rates_per_second(arrivals_per_hour=arrivals_per_hour, mix=mix)
    log_rates = {level: math.log(defaults[level]) for level in tuned_levels}

    def evaluate(logs: Mapping[int, float]) -> tuple[dict[int, float], SimulationResult, dict[int, float]]:
        top = max(logs.values())
        rates = dict(defaults)
        rates.update({level: math.exp(value - top) for level, value in logs.items()})
        result = simulate(
            arrival_rates=per_second,
            mean_service_seconds=mean_service_minutes * 60.0,
            servers=nurses,
            discipline=Discipline(mode=Mode.ACCUMULATING, rates=rates, name="tuned"),
            calls=calls,
            seed=seed,
            targets_seconds=targets,
        )
        return rates, result, result.slack(kpi_targets)

    best_logs = dict(log_rates)
    best_rates, best_result, best_slack = evaluate(best_logs)
    evaluations = 1
    current_slack = best_slack
    current_logs = dict(best_logs)
    for _ in range(iterations):
        if (margin is not None and min(best_slack.values()) >= margin) or step < min_step:
            break
        slack_of_tuned = {level: current_slack.get(level, 0.0) for level in tuned_levels}
        mean_slack = sum(slack_of_tuned.values()) / len(slack_of_tuned)
        candidate = {level: current_logs[level] - step * (slack_of_tuned[level] - mean_slack) for level in tuned_levels}
        rates, result, slack = evaluate(candidate)
        evaluations += 1
        if min(slack.values()) > min(best_slack.values()):
            best_logs, best_rates, best_result, best_slack = candidate, rates, result, slack
            current_logs, current_slack = candidate, slack
        else:
            current_logs, current_slack = dict(best_logs), best_slack
            step /= 2
    finite = {level: rate for level, rate in best_rates.items() if level in tuned_levels}
    return TuningReport(
        rates=finite,
        result=best_result,
        slack=best_slack,
        met=min(best_slack.values()) >= 0,
        evaluations=evaluations,
    )


def tune_rates(
    *,
    kpi_targets: Mapping[int, tuple[float, float]],
    mix: Mapping[int, float],
    arrivals_per_hour: float,
    mean_service_minutes: float,
    nurses: int,
    calls: int = 60_000,
    seed: int = 7,
    iterations: int = 20,
    margin: float | None = None,
) -> dict[int, float]:
    """The tuned rates (level -> b_k, largest 1.0) of `search_rates`; see there for the arguments."""
    return search_rates(
        kpi_targets=kpi_targets,
        mix=mix,
        arrivals_per_hour=arrivals_per_hour,
        mean_service_minutes=mean_service_minutes,
        nurses=nurses,
        calls=calls,
        seed=seed,
        iterations=iterations,
        margin=margin,
    ).rates
