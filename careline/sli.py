"""Service level indicators shared by every process: per-clinic, per-minute counters in the Django cache.

Prometheus counters live in one process; an SLO is evaluated by a Celery task that must see what every web
node recorded. So the code that measures an SLO also counts here, in the shared cache (Redis in production),
in one-minute buckets kept `RETENTION_SECONDS` (2 h; SLO windows are at most 60 min):

- events (`record_event`): `good` and `total` counts, e.g. call setups -> `ratio()` over a window;
- latencies (`record_latency`): counts per upper bound of `LATENCY_BOUNDS_SECONDS` -> `quantile()` over a
  window, answered as the upper bound of the bucket that holds the quantile (a conservative estimate, as
  Prometheus' `histogram_quantile` without interpolation).

Recording never raises: a cache outage loses samples, never a webhook.
"""

from __future__ import annotations

import logging
import math
import time

from django.core.cache import cache

logger = logging.getLogger(__name__)

CALL_SETUP = "call_setup"
IVR_LATENCY = "ivr_latency"
RETENTION_SECONDS = 2 * 3600
LATENCY_BOUNDS_SECONDS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, math.inf)


def _minute(at: float | None) -> int:
    return int((time.time() if at is None else at) // 60)


def _key(name: str, clinic_id: int, minute: int, part: str) -> str:
    return f"careline:sli:{name}:{clinic_id}:{minute}:{part}"


def _incr(key: str) -> None:
    cache.add(key, 0, timeout=RETENTION_SECONDS)
    cache.incr(key)


def record_event(*, clinic_id: int, name: str, ok: bool, at: float | None = None) -> None:
    """Count one event of `name` for the clinic (good when `ok`); `at` is unix seconds (default now)."""
    minute = _minute(at)
    try:
        _incr(_key(name, clinic_id, minute, "total"))
        if ok:
            _incr(_key(name, clinic_id, minute, "good"))
    except Exception:  # noqa: BLE001 - never break the measured request
        logger.warning("SLI %s not recorded", name, exc_info=True)


def record_latency(*, clinic_id: int, name: str, seconds: float, at: float | None = None) -> None:
    """Count one latency sample of `name` (seconds) in the first bucket whose bound is >= it."""
    bound = next(b for b in LATENCY_BOUNDS_SECONDS if seconds <= b)
    try:
        _incr(_key(name, clinic_id, _minute(at), f"le:{bound}"))
    except Exception:  # noqa: BLE001 - never break the measured request
        logger.warning("SLI %s not recorded", name, exc_info=True)


def _window_minutes(window_minutes: int, now: float | None) -> range:
    end = _minute(now)
    return range(end - window_minutes + 1, end + 1)


def ratio(*, clinic_id: int, name: str, window_minutes: int, now: float | None = None) -> tuple[int, int]:
    """(good, total) events of `name` in the last `window_minutes` minutes (the current minute included)."""
    keys = [_key(name, clinic_id, m, part) for m in _window_minutes(window_minutes, now) for part in ("good", "total")]
    values = cache.get_many(keys)
    good = sum(int(v) for k, v in values.items() if k.endswith(":good"))
    total = sum(int(v) for k, v in values.items() if k.endswith(":total"))
    return good, total


def quantile(
    *, clinic_id: int, name: str, q: float, window_minutes: int, now: float | None = None
) -> tuple[float | None, int]:
    """(estimate in seconds, sample count) of the `q` quantile (0 < q <= 1) of `name` over the window; the
    estimate is None without samples, and the bucket's upper bound otherwise (math.inf past the last)."""
    minutes = list(_window_minutes(window_minutes, now))
    keys = {_key(name, clinic_id, m, f"le:{b}"): b for m in minutes for b in LATENCY_BOUNDS_SECONDS}
    values = cache.get_many(list(keys))
    per_bound: dict[float, int] = {}
    for key, count in values.items():
        per_bound[keys[key]] = per_bound.get(keys[key], 0) + int(count)
    total = sum(per_bound.values())
    if total == 0:
        return None, 0
    rank = math.ceil(q * total)
    seen = 0
    for bound in LATENCY_BOUNDS_SECONDS:
        seen += per_bound.get(bound, 0)
        if seen >= rank:
            return bound, total
    return math.inf, total
