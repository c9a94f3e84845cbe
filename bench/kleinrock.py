"""The simulator (and so the project's ordering code) against Kleinrock's accumulating-priority formula.

Two classes, one server, non-preemptive M/M/1: lambda1 = 1, lambda2 = 0.75, service rate 2 for both
(rho = 0.875); class 1 accrues priority at b1 = 1, class 2 at b2. Kleinrock (1964):
    E[W2] = W0 / ((1 - rho)(1 - rho1 (1 - b))),  E[W1] = W0 / (1 - rho) - rho2 E[W2] (1 - b),
    W0 = sum_i lambda_i E[S_i^2] / 2,  b = b2 / b1.
Rows: b2 in {0.2, 0.5, 0.8} under `accumulating`; strict priority (`strict` mode, and `accumulating` with
b2 = 1e-6) against b = 0; FIFO (`fifo` mode, and `accumulating` with b2 = b1) against b = 1. Each row is the
mean of R independent replications (seeds seed..seed+R-1) of N calls each, with a 95 % confidence half-width
from the replications. PASS when both classes' simulated mean waits are within 5 % of the formula.

Usage: `python bench/kleinrock.py [--calls 200000] [--replications 10] [--seed 1] [--jobs 2]`
(defaults: 2,000,000 calls per row; about 1 min on 2 CPUs). The simulation orders its queue with
`triage.priority.ranked`, the function `case_claim_next` uses.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from triage.priority import Mode  # noqa: E402
from triage.simulation import Discipline, kleinrock_waits, simulate  # noqa: E402

LAMBDAS = (1.0, 0.75)
MU = 2.0
TOLERANCE = 0.05

ROWS: list[tuple[str, Discipline, float]] = [
    ("accumulating b2=0.2", Discipline(mode=Mode.ACCUMULATING, rates={1: 1.0, 2: 0.2}), 0.2),
    ("accumulating b2=0.5", Discipline(mode=Mode.ACCUMULATING, rates={1: 1.0, 2: 0.5}), 0.5),
    ("accumulating b2=0.8", Discipline(mode=Mode.ACCUMULATING, rates={1: 1.0, 2: 0.8}), 0.8),
    ("strict priority", Discipline(mode=Mode.STRICT), 0.0),
    ("accumulating b2=1e-6", Discipline(mode=Mode.ACCUMULATING, rates={1: 1.0, 2: 1e-6}), 0.0),
    ("FIFO", Discipline(mode=Mode.FIFO), 1.0),
    ("accumulating b2=1", Discipline(mode=Mode.ACCUMULATING, rates={1: 1.0, 2: 1.0}), 1.0),
]


def replicate(args: tuple[int, int, int]) -> tuple[int, float, float]:
    row, calls, seed = args
    result = simulate(
        arrival_rates={1: LAMBDAS[0], 2: LAMBDAS[1]},
        mean_service_seconds=1 / MU,
        servers=1,
        discipline=ROWS[row][1],
        calls=calls,
        seed=seed,
    )
    return row, result.levels[1].mean_wait, result.levels[2].mean_wait


def half_width(values: list[float]) -> float:
    """95 % confidence half-width of the mean (t quantile for R - 1 degrees of freedom, R <= 30)."""
    t95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 19: 2.09}
    n = len(values)
    if n < 2:
        return float("nan")
    return t95.get(n - 1, 2.05) * statistics.stdev(values) / n**0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000, help="calls per replication")
    parser.add_argument("--replications", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    started = time.perf_counter()
    tasks = [(row, args.calls, args.seed + rep) for row in range(len(ROWS)) for rep in range(args.replications)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(replicate, tasks))
    elapsed = time.perf_counter() - started

    rho = sum(LAMBDAS) / MU
    print(
        f"Kleinrock check: 2 classes, 1 server, non-preemptive M/M/1, lambda = {LAMBDAS}, mu = {MU}, "
        f"rho = {rho:.3f}; {args.replications} x {args.calls:,} calls per row, seeds {args.seed}.."
        f"{args.seed + args.replications - 1}"
    )
    header = (
        f"{'discipline':<22} {'b':>4} | {'E[W1] sim':>10} {'±95%':>6} {'theory':>7} {'err':>6} | "
        f"{'E[W2] sim':>10} {'±95%':>6} {'theory':>7} {'err':>6} | verdict"
    )
    print(header)
    print("-" * len(header))
    failures = 0
    for row, (label, _discipline, b) in enumerate(ROWS):
        w1s = [w1 for r, w1, _ in results if r == row]
        w2s = [w2 for r, _, w2 in results if r == row]
        w1, w2 = statistics.fmean(w1s), statistics.fmean(w2s)
        e1, e2 = kleinrock_waits(arrival_rates=LAMBDAS, service_rates=(MU, MU), b=b)
        err1, err2 = w1 / e1 - 1, w2 / e2 - 1
        ok = abs(err1) <= TOLERANCE and abs(err2) <= TOLERANCE
        failures += not ok
        print(
            f"{label:<22} {b:>4.2f} | {w1:>10.4f} {half_width(w1s):>6.3f} {e1:>7.4f} {err1:>+6.1%} | "
            f"{w2:>10.4f} {half_width(w2s):>6.3f} {e2:>7.4f} {err2:>+6.1%} | {'PASS' if ok else 'FAIL'}"
        )
    print(f"{len(ROWS) - failures}/{len(ROWS)} rows within {TOLERANCE:.0%}; {elapsed:.0f} s on {args.jobs} processes")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
