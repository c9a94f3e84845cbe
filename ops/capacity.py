"""Capacity planner: size each layer for a peak hour, printing the assumption next to every number.

Pure arithmetic (no database), used by `manage.py capacity_plan` and `/console/admin/capacity/`.

Per-process figures are the project's own measurements when `bench/figures.json` (setting
`CAPACITY_FIGURES_PATH`) holds them, else the documented defaults below. The benchmarks write that file as a
flat JSON object; the keys read (all optional, numbers):

- `daphne_http_requests_per_second`: req/s per daphne process on real views. Default 150: DESIGN.md
  measured ~340 req/s for a trivial view on daphne; halved for real views (assumption).
- `daphne_websocket_connections`: open sockets per daphne process. Default 1000: DESIGN.md, 1,000 consoles
  fan out in ~470 ms on daphne + the Redis layer.
- `celery_tasks_per_second`: tasks/s per Celery worker process. Default 10 (assumption: one FHIR/HL7 round
  trip ~100 ms).
- `claims_per_second`: next-case claims/s the database sustains. Default 137: bench/README.md claim_latency
  (50 nurses, p99 782 ms).

Telemedicine planning figures (video), from published TURN sizing guidance for telehealth platforms: a relayed
720p visit uses ~1.5 Mbit/s per direction; 15-20 % of visits need a relay; ~300 relayed visits fit one
1 Gbit/s link. Little's law (concurrency = arrival rate x duration) turns hourly arrivals into concurrency.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIGURE_DEFAULTS: dict[str, tuple[float, str]] = {
    "daphne_http_requests_per_second": (150.0, "default: ~340 req/s trivial view on daphne (DESIGN.md), halved"),
    "daphne_websocket_connections": (1000.0, "default: 1,000 consoles per daphne fan out in ~470 ms (DESIGN.md)"),
    "celery_tasks_per_second": (10.0, "default: ~100 ms per FHIR/HL7 round trip (assumption)"),
    "claims_per_second": (137.0, "default: bench/README.md claim_latency, 50 nurses"),
}

RELAYED_720P_MBITS_PER_DIRECTION = 1.5
RELAYED_VISITS_PER_GBIT_LINK = 300
MIN_REDUNDANT = 2  # every layer runs at least two of each (one can fail or drain)


@dataclass(frozen=True)
class Inputs:
    """The peak to plan for. Rates per hour, durations in minutes, shares as fractions 0..1."""

    peak_calls_per_hour: float
    video_share: float = 0.3  # visits that become video (the rest phone callbacks)
    relay_share: float = 0.175  # video visits that need TURN (published range 15-20 %)
    handle_minutes: float = 12.0  # nurse time per case (bench/nurse_line.py mean handle time)
    video_minutes: float = 15.0  # length of a video visit
    ivr_requests_per_call: float = 12.0  # Twilio webhooks per call: voice, ~8 gathers, waits, status
    console_requests_per_event: float = 1.0  # partial re-fetches per console per console event
    events_per_case: float = 6.0  # queued, reserved, accepted, updated, closed, writeback.changed
    consoles_per_nurse: float = 1.5  # open console tabs per nurse on shift
    target_utilisation: float = 0.85  # nurse occupancy to plan for
    tasks_per_case: float = 5.0  # Celery: FHIR write-back, HL7 types, SMS, EHR retries
    recording_share: float = 0.0  # video visits recorded (both directions kept)
    calls_per_day: float | None = None  # default: 12 after-hours hours at the peak rate
    headroom: float = 0.6  # run a process at most at this share of its measured maximum


@dataclass(frozen=True)
class Row:
    """One number of the plan: `layer`, what it is, its value and unit, and how it was computed."""

    layer: str
    quantity: str
    value: float
    unit: str
    assumption: str


@dataclass
class Plan:
    inputs: Inputs
    figures: dict[str, tuple[float, str]]
    rows: list[Row] = field(default_factory=list)

    def add(self, layer: str, quantity: str, value: float, unit: str, assumption: str) -> float:
        self.rows.append(Row(layer, quantity, value, unit, assumption))
        return value

    def value(self, quantity: str) -> float:
        """The value of the row named `quantity` (KeyError if none)."""
        for row in self.rows:
            if row.quantity == quantity:
                return row.value
        raise KeyError(quantity)

    def as_text(self) -> str:
        """The plan as an aligned text table, one row per number, its assumption alongside."""
        lines = [f"{'layer':<10} {'quantity':<38} {'value':>12} {'unit':<14} assumption"]
        for r in self.rows:
            shown = format_value(r.value)
            lines.append(f"{r.layer:<10} {r.quantity:<38} {shown:>12} {r.unit:<14} {r.assumption}")
        return "\n".join(lines)


def format_value(value: float) -> str:
    """Whole numbers and values >= 100 without decimals, others to 3 significant digits."""
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def load_figures(path: str | Path | None) -> dict[str, tuple[float, str]]:
    """Measured figures from the benchmarks' JSON (keys in the module docstring) over the defaults; each value
    comes with where it came from. A missing or unreadable file means defaults; unknown keys are ignored."""
    figures = dict(FIGURE_DEFAULTS)
    if not path:
        return figures
    try:
        data: Any = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return figures
    if isinstance(data, dict):
        for key in FIGURE_DEFAULTS:
            value, source = data.get(key), key
            if value is None and key in BENCH_KEYS:  # the benchmarks' own layout: {"claim": {...}, ...}
                bench, field = BENCH_KEYS[key]
                section = data.get(bench)
                value, source = (section.get(field) if isinstance(section, dict) else None), f"{bench}.{field}"
            if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                figures[key] = (float(value), f"measured: {Path(path).name} {source}")
    return figures


# Figures the benchmarks write in their per-benchmark sections (`bench/figures.py`): planner key -> (section,
# field). Only figures a benchmark measures for one process of the real code path are mapped.
BENCH_KEYS: dict[str, tuple[str, str]] = {
    "claims_per_second": ("claim", "project_claims_per_second"),
}


def plan(inputs: Inputs, figures: dict[str, tuple[float, str]] | None = None) -> Plan:
    """Size every layer for `inputs` (module docstring). Raises ValueError for a non-positive peak or a share
    outside 0..1."""
    if inputs.peak_calls_per_hour <= 0:
        raise ValueError("peak calls per hour must be positive")
    for name in ("video_share", "relay_share", "recording_share", "target_utilisation", "headroom"):
        if not 0 <= getattr(inputs, name) <= 1:
            raise ValueError(f"{name} must be between 0 and 1")
    figures = figures or dict(FIGURE_DEFAULTS)
    p = Plan(inputs=inputs, figures=figures)
    n = inputs.peak_calls_per_hour
    per_s = n / 3600

    # Nurses and consoles (Little's law).
    busy = p.add(
        "nurses",
        "cases in service at once",
        n * inputs.handle_minutes / 60,
        "cases",
        f"Little: {n:g}/h x {inputs.handle_minutes:g} min handle time",
    )
    nurses = p.add(
        "nurses",
        "nurses on shift",
        math.ceil(busy / inputs.target_utilisation),
        "nurses",
        f"at {inputs.target_utilisation:.0%} occupancy (the what-if simulates waits)",
    )
    consoles = p.add(
        "web",
        "console WebSockets",
        math.ceil(nurses * inputs.consoles_per_nurse),
        "connections",
        f"{inputs.consoles_per_nurse:g} console tabs per nurse",
    )
    video_now = p.add(
        "web",
        "video visits at once",
        n * inputs.video_share * inputs.video_minutes / 60,
        "visits",
        f"{inputs.video_share:.0%} of calls x {inputs.video_minutes:g} min",
    )
    sockets = p.add(
        "web",
        "WebSockets in all",
        consoles + math.ceil(video_now) * 2,
        "connections",
        "consoles + 2 signaling sockets per video visit (nurse, patient)",
    )

    # Signaling requests.
    ivr = p.add(
        "web",
        "IVR webhook requests/s",
        per_s * inputs.ivr_requests_per_call,
        "req/s",
        f"{inputs.ivr_requests_per_call:g} Twilio webhooks per call",
    )
    console_http = p.add(
        "web",
        "console re-fetch requests/s",
        per_s * inputs.events_per_case * consoles * inputs.console_requests_per_event,
        "req/s",
        f"{inputs.events_per_case:g} events per case, each re-fetched by every console",
    )
    http = p.add("web", "HTTP requests/s in all", ivr + console_http, "req/s", "IVR + console re-fetches")
    rps, rps_src = figures["daphne_http_requests_per_second"]
    ws, ws_src = figures["daphne_websocket_connections"]
    by_http = p.add(
        "web",
        "daphne processes for HTTP",
        math.ceil(http / (rps * inputs.headroom)),
        "processes",
        f"{rps:g} req/s each ({rps_src}) at {inputs.headroom:.0%}",
    )
    by_ws = p.add(
        "web",
        "daphne processes for WebSockets",
        math.ceil(sockets / (ws * inputs.headroom)),
        "processes",
        f"{ws:g} sockets each ({ws_src}) at {inputs.headroom:.0%}",
    )
    p.add(
        "web",
        "daphne processes",
        max(MIN_REDUNDANT, by_http, by_ws),
        "processes",
        f"the larger of the two, at least {MIN_REDUNDANT} (one can drain)",
    )

    # TURN.
    relayed = p.add(
        "turn",
        "relayed visits at once",
        video_now * inputs.relay_share,
        "visits",
        f"{inputs.relay_share:.1%} of video visits relayed (published 15-20 %)",
    )
    p.add(
        "turn",
        "TURN bandwidth",
        relayed * RELAYED_720P_MBITS_PER_DIRECTION * 2,
        "Mbit/s",
        f"{RELAYED_720P_MBITS_PER_DIRECTION:g} Mbit/s per direction per relayed 720p visit, both directions",
    )
    p.add(
        "turn",
        "TURN servers (1 Gbit/s)",
        max(MIN_REDUNDANT, math.ceil(relayed / RELAYED_VISITS_PER_GBIT_LINK)),
        "servers",
        f"~{RELAYED_VISITS_PER_GBIT_LINK} relayed visits per 1 Gbit/s link, at least {MIN_REDUNDANT}",
    )

    # Recording storage.
    per_day = inputs.calls_per_day if inputs.calls_per_day is not None else n * 12
    recorded_min = per_day * inputs.video_share * inputs.recording_share * inputs.video_minutes
    gb = recorded_min * 60 * RELAYED_720P_MBITS_PER_DIRECTION * 2 / 8 / 1000
    p.add(
        "storage",
        "recording growth per day",
        gb,
        "GB/day",
        f"{per_day:g} calls/day x {inputs.video_share:.0%} video x {inputs.recording_share:.0%} recorded x "
        f"{inputs.video_minutes:g} min at {RELAYED_720P_MBITS_PER_DIRECTION * 2:g} Mbit/s (both directions)",
    )
    p.add("storage", "recording growth per 30 days", gb * 30, "GB", "30 x the day")

    # Celery.
    tasks = p.add(
        "celery",
        "tasks/s",
        per_s * inputs.tasks_per_case + 10 / 60,
        "tasks/s",
        f"{inputs.tasks_per_case:g} tasks per case + ~10 beat sweeps a minute",
    )
    tps, tps_src = figures["celery_tasks_per_second"]
    p.add(
        "celery",
        "worker processes",
        max(MIN_REDUNDANT, math.ceil(tasks / (tps * inputs.headroom))),
        "processes",
        f"{tps:g} tasks/s each ({tps_src}) at {inputs.headroom:.0%}, at least {MIN_REDUNDANT}",
    )

    # Database claims headroom.
    cps, cps_src = figures["claims_per_second"]
    p.add(
        "database",
        "claim load / measured claim capacity",
        per_s / cps,
        "ratio",
        f"one claim per case vs {cps:g} claims/s ({cps_src})",
    )
    return p
