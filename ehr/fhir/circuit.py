"""A circuit breaker in front of the FHIR server, with its state in the Django cache (Redis in production).

Why: when the EHR is down or hanging, every IVR call would otherwise spend its whole EHR wait
(`FHIR_IVR_TIMEOUT_SECONDS`, half its 2 s budget) on a request that gets no answer, and every write-back a full
`FHIR_TIMEOUT_SECONDS`. After
`FHIR_CIRCUIT_FAILURE_THRESHOLD` consecutive transport failures or timeouts (or 5xx answers) the circuit
*opens* for `FHIR_CIRCUIT_OPEN_SECONDS`: requests fail at once with `EhrUnavailable("circuit open")`
without touching the network (the IVR carries on as for any EHR outage; write-backs go to `retrying`).
When that time has passed the circuit is *half-open*: one request (the one that wins an atomic
`cache.add` of the probe key) goes through; success closes the circuit, failure opens it again.
A 4xx is an answer, not an outage, so it counts as success for the breaker. Pattern: Nygard, *Release It!*
(2nd ed., 2018), "Circuit Breaker"; the same states as `pybreaker`.

Why not `pybreaker` / `circuitbreaker` (PyPI): neither is installed in CareLine's environment;
`circuitbreaker` keeps its state per process only, and `pybreaker`'s shared `CircuitRedisStorage` needs a
raw redis-py connection, which the embedded run (no Redis; LocMemCache) lacks. The Django cache gives the
same shared state in both runs: with Redis, every web, IVR and Celery process sees one circuit per FHIR
base URL; with LocMemCache (embedded, one process) it is per process, which is all there is.
Counting is approximate across processes (cache `incr` is atomic, the reset on success is not); a
threshold off by one under a race does not matter for a breaker.

`FHIR_CIRCUIT_FAILURE_THRESHOLD = 0` disables the breaker (the test settings do this so tests that stop the
server on purpose see the real transport error; tests/ehr/test_circuit.py turns it on).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache

from ehr.types import EhrUnavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitOpen(EhrUnavailable):
    """The FHIR circuit is open: the request was not sent (the server failed repeatedly just before)."""


def _keys(base_url: str) -> tuple[str, str, str]:
    digest = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]
    prefix = f"ehr:fhir-circuit:{digest}"
    return f"{prefix}:failures", f"{prefix}:opened-until", f"{prefix}:probe"


def _enabled() -> bool:
    return int(settings.FHIR_CIRCUIT_FAILURE_THRESHOLD) > 0


def state(base_url: str | None = None) -> str:
    """`closed`, `open` or `half-open` for `base_url` (default `FHIR_BASE_URL`)."""
    _, opened_key, _ = _keys(base_url or settings.FHIR_BASE_URL)
    opened_until = cache.get(opened_key)
    if opened_until is None:
        return CLOSED
    return OPEN if time.time() < float(opened_until) else HALF_OPEN


def before_request(base_url: str | None = None) -> None:
    """Raise CircuitOpen when a request to `base_url` must not be sent now; otherwise return (send it).

    In `half-open` only one caller at a time gets through (the probe); the others fail fast.
    """
    if not _enabled():
        return
    base = base_url or settings.FHIR_BASE_URL
    current = state(base)
    if current == CLOSED:
        return
    if current == OPEN:
        raise CircuitOpen("circuit open: the FHIR server failed repeatedly; not sent")
    _, _, probe_key = _keys(base)
    # The probe lease lasts as long as a request may take, so a probe that hangs does not block forever.
    if not cache.add(probe_key, "1", timeout=int(settings.FHIR_TIMEOUT_SECONDS) + 1):
        raise CircuitOpen("circuit half-open: a probe request is in flight; not sent")


def record_success(base_url: str | None = None) -> None:
    """The server answered (2xx-4xx): close the circuit and reset the failure count."""
    if not _enabled():
        return
    failures_key, opened_key, probe_key = _keys(base_url or settings.FHIR_BASE_URL)
    if cache.get(failures_key) or cache.get(opened_key) is not None:
        cache.delete_many([failures_key, opened_key, probe_key])


def record_failure(base_url: str | None = None) -> None:
    """A transport error, timeout or 5xx: count it; open the circuit at the threshold or after a failed probe."""
    if not _enabled():
        return
    base = base_url or settings.FHIR_BASE_URL
    failures_key, opened_key, probe_key = _keys(base)
    cache.add(failures_key, 0, timeout=None)
    try:
        failures = cache.incr(failures_key)
    except ValueError:  # evicted between add and incr
        cache.set(failures_key, 1, timeout=None)
        failures = 1
    was_probing = cache.get(opened_key) is not None
    if failures >= int(settings.FHIR_CIRCUIT_FAILURE_THRESHOLD) or was_probing:
        open_seconds = float(settings.FHIR_CIRCUIT_OPEN_SECONDS)
        # Kept a while after it expires: an expired `opened-until` means half-open, a missing one closed.
        cache.set(opened_key, time.time() + open_seconds, timeout=int(open_seconds) + 3600)
        cache.delete(probe_key)
        logger.warning("FHIR circuit open for %ss after %d consecutive failures", open_seconds, failures)


def reset(base_url: str | None = None) -> None:
    """Close the circuit of `base_url` (operators, tests)."""
    cache.delete_many(list(_keys(base_url or settings.FHIR_BASE_URL)))


def guarded(operation: Callable[[], T], *, base_url: str | None = None) -> T:
    """Run `operation` (which raises EhrUnavailable for an outage) through the breaker of `base_url`.

    Raises CircuitOpen (an EhrUnavailable) without running it when the circuit is open; otherwise what
    `operation` returns or raises, counting EhrUnavailable as a failure and anything else as an answer.
    """
    base = base_url or settings.FHIR_BASE_URL
    before_request(base)
    try:
        result = operation()
    except EhrUnavailable:
        record_failure(base)
        raise
    except Exception:
        record_success(base)
        raise
    record_success(base)
    return result
