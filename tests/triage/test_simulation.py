"""`triage.simulation` and `triage.tuning`: the simulator against queueing theory, its limits, rate tuning,
and the staffing what-if. Small seeded runs (each well under a second); the full-size figures are in
bench/kleinrock.py and bench/nurse_line.py."""

from __future__ import annotations

import math

import pytest

from triage.priority import Mode, rates_for_targets
from triage.simulation import (
    Discipline,
    arrival_rates_per_second,
    kleinrock_waits,
    nurses_needed,
    simulate,
)
from triage.tuning import search_rates, tune_rates

# Two classes, one server, exponential service rate 2: rho = 0.5 (so a 100k-call run is precise).
LAMBDAS = (0.5, 0.5)
MU = 2.0

NURSE_KPI = {2: (900.0, 0.95), 3: (1800.0, 0.90), 4: (3600.0, 0.85), 5: (7200.0, 0.80)}
NURSE_MIX = {2: 12.0, 3: 30.0, 4: 36.0, 5: 20.0}
NURSE_TARGETS = {level: seconds for level, (seconds, _f) in NURSE_KPI.items()}
NURSE_ARRIVALS_PER_HOUR = 0.90 * 4 * 60 / 12  # offered load 0.90 with 4 nurses, 12 min mean handle time


def _two_class(discipline: Discipline, *, calls: int = 100_000, seed: int = 3) -> tuple[float, float]:
    result = simulate(
        arrival_rates={1: LAMBDAS[0], 2: LAMBDAS[1]},
        mean_service_seconds=1 / MU,
        servers=1,
        discipline=discipline,
        calls=calls,
        seed=seed,
    )
    return result.levels[1].mean_wait, result.levels[2].mean_wait


def test_kleinrock_formula_limits_are_strict_priority_and_fifo():
    """b = 0 gives Cobham's non-preemptive priority waits, b = 1 the M/M/1 FIFO wait (pure arithmetic)."""
    w0 = sum(lam * 2 / MU**2 / 2 for lam in LAMBDAS)
    rho1, rho = LAMBDAS[0] / MU, sum(LAMBDAS) / MU
    strict = kleinrock_waits(arrival_rates=LAMBDAS, service_rates=(MU, MU), b=0.0)
    assert strict == pytest.approx((w0 / (1 - rho1), w0 / ((1 - rho1) * (1 - rho))))
    fifo = kleinrock_waits(arrival_rates=LAMBDAS, service_rates=(MU, MU), b=1.0)
    assert fifo == pytest.approx((w0 / (1 - rho), w0 / (1 - rho)))
    with pytest.raises(ValueError):
        kleinrock_waits(arrival_rates=(1.0, 1.5), service_rates=(MU, MU), b=0.5)


@pytest.mark.parametrize("b", [0.2, 0.5, 0.8])
def test_simulated_accumulating_priority_matches_kleinrock_within_5_percent(b):
    w1, w2 = _two_class(Discipline(mode=Mode.ACCUMULATING, rates={1: 1.0, 2: b}))
    e1, e2 = kleinrock_waits(arrival_rates=LAMBDAS, service_rates=(MU, MU), b=b)
    assert w1 == pytest.approx(e1, rel=0.05)
    assert w2 == pytest.approx(e2, rel=0.05)
    assert w1 < w2  # the faster-accruing class waits less


def test_strict_mode_is_the_b_to_zero_limit_and_fifo_mode_the_b_to_one_limit():
    strict = _two_class(Discipline(mode=Mode.STRICT))
    fifo = _two_class(Discipline(mode=Mode.FIFO))
    assert strict == pytest.approx(kleinrock_waits(arrival_rates=LAMBDAS, service_rates=(MU, MU), b=0.0), rel=0.05)
    assert fifo == pytest.approx(kleinrock_waits(arrival_rates=LAMBDAS, service_rates=(MU, MU), b=1.0), rel=0.05)
    # The limits of the accumulating code itself, on the same calls (common random numbers):
    assert _two_class(Discipline(mode=Mode.ACCUMULATING, rates={1: 1.0, 2: 1.0})) == fifo  # equal rates: FIFO
    nearly_strict = _two_class(Discipline(mode=Mode.ACCUMULATING, rates={1: 1.0, 2: 1e-9}))
    assert nearly_strict == pytest.approx(strict, rel=0.005)


def test_same_seed_same_calls_whatever_the_discipline():
    """Common random numbers: every discipline sees the same calls, so the busy time is identical."""
    runs = [
        simulate(
            arrival_rates={1: 0.6, 2: 0.6},
            mean_service_seconds=0.5,
            servers=2,
            discipline=d,
            calls=5_000,
            seed=11,
        )
        for d in (Discipline(mode=Mode.STRICT), Discipline(mode=Mode.FIFO), Discipline(mode=Mode.STRICT))
    ]
    assert runs[0].levels == runs[2].levels  # deterministic
    assert [r.levels[1].calls for r in runs] == [runs[0].levels[1].calls] * 3
    assert runs[0].levels[1].mean_wait < runs[1].levels[1].mean_wait  # and the discipline matters


def test_edf_needs_targets():
    with pytest.raises(ValueError):
        _two_class(Discipline(mode=Mode.EDF), calls=100)


def _nurse_line(rates: dict[int, float], *, calls: int = 40_000, seed: int = 101):
    return simulate(
        arrival_rates=arrival_rates_per_second(arrivals_per_hour=NURSE_ARRIVALS_PER_HOUR, mix=NURSE_MIX),
        mean_service_seconds=12 * 60,
        servers=4,
        discipline=Discipline(mode=Mode.ACCUMULATING, rates=rates),
        calls=calls,
        seed=seed,
        targets_seconds=NURSE_TARGETS,
    )


def test_tuned_rates_meet_every_kpi_where_the_default_rates_miss():
    default = _nurse_line(rates_for_targets({lv: int(s) for lv, s in NURSE_TARGETS.items()}))
    assert not default.meets(NURSE_KPI)
    assert default.slack(NURSE_KPI)[2] < 0  # 1/target rates under-serve level 2 at this load

    rates = tune_rates(
        kpi_targets=NURSE_KPI,
        mix=NURSE_MIX,
        arrivals_per_hour=NURSE_ARRIVALS_PER_HOUR,
        mean_service_minutes=12,
        nurses=4,
        calls=20_000,
        seed=7,
        margin=0.01,
    )
    assert max(rates.values()) == 1.0
    assert rates[2] > rates[3] > rates[4] > rates[5] > 0
    # Out of sample: a different seed and a longer run than the search used.
    tuned = _nurse_line(rates)
    assert tuned.meets(NURSE_KPI), tuned.slack(NURSE_KPI)


def test_search_reports_unmet_targets_when_too_few_nurses():
    report = search_rates(
        kpi_targets=NURSE_KPI,
        mix=NURSE_MIX,
        arrivals_per_hour=NURSE_ARRIVALS_PER_HOUR,
        mean_service_minutes=12,
        nurses=4,
        calls=5_000,
        iterations=3,
        margin=0.5,  # an impossible margin: the search must say it did not get there
    )
    assert report.evaluations == 4
    assert min(report.slack.values()) < 0.5


def test_nurses_needed_is_the_smallest_staffing_meeting_every_kpi():
    kwargs = {
        "arrivals_per_hour": NURSE_ARRIVALS_PER_HOUR,
        "mix": NURSE_MIX,
        "mean_service_minutes": 12.0,
        "kpi_targets": NURSE_KPI,
        "calls": 10_000,
        "seed": 5,
    }
    needed = nurses_needed(**kwargs)
    assert needed >= 4  # 3.6 erlangs of offered work
    per_second = arrival_rates_per_second(arrivals_per_hour=NURSE_ARRIVALS_PER_HOUR, mix=NURSE_MIX)
    default_rates = rates_for_targets({lv: int(s) for lv, s in NURSE_TARGETS.items()})

    def meets(nurses: int) -> bool:
        return simulate(
            arrival_rates=per_second,
            mean_service_seconds=720,
            servers=nurses,
            discipline=Discipline(mode=Mode.ACCUMULATING, rates=default_rates),
            calls=10_000,
            seed=5,
            targets_seconds=NURSE_TARGETS,
        ).meets(NURSE_KPI)

    assert meets(needed) and not meets(needed - 1)
    # Doubling the arrivals needs more nurses; a typed rate is what the dashboard's what-if passes.
    assert nurses_needed(**{**kwargs, "arrivals_per_hour": 2 * NURSE_ARRIVALS_PER_HOUR}) > needed
    with pytest.raises(ValueError):
        nurses_needed(**{**kwargs, "max_nurses": 3})


def test_immediate_level_has_infinite_rate():
    rates = rates_for_targets({1: 0, 2: 900})
    assert math.isinf(rates[1]) and rates[2] == pytest.approx(1 / 900)
