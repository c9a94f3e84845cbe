"""Prometheus metrics: the domain counters and histograms code increments, and the `/metrics` answer.

Per process, not multiprocess mode: each daphne node exposes its own `/metrics` (scrape every node on its
own address, `127.0.0.1:<port>/metrics`, never through the load balancer, which would mix nodes), and
Prometheus sums counters across nodes (`sum by (clinic) (rate(careline_claims_total[5m]))`). Gauges computed
from the database at scrape time (`ops.collectors.DomainCollector`: cases waiting, longest wait, outbox,
HL7 queues, KPI compliance, SLO state) are the same on every node: aggregate them with `max by (...)`.
Celery workers export nothing (their work shows in the database gauges). django-prometheus adds the
standard `django_http_*` request metrics.

Labels carry the clinic's slug (`clinic="north"`), acuity levels, targets and outcomes: never people or PHI.

Where the call metrics are recorded (README "Metrics", each after the fact's transaction commits):
`record_call_setup(kind="video")`, `record_ice_failure`, `record_media_path` once per visit (setup, ICE
failure) or per leg (media path) by `contactcenter.visits` from the visit socket's `ice` and `stats` reports
and the nurse's "video failed" report; `record_client_stats(kind="video")` for every stored quality report;
`record_call_setup(kind="voice")` once per "Call patient" call by `ivr.services.outbound_calls` from its
Twilio callbacks.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from careline import sli

logger = logging.getLogger(__name__)

CLAIMS = Counter("careline_claims_total", "Next-case claims by result (claimed, empty).", ["clinic", "result"])
ESCALATIONS = Counter("careline_escalations_total", "Cases escalated (supervisor alert + page).", ["clinic", "reason"])
IVR_WEBHOOK_SECONDS = Histogram(
    "careline_ivr_webhook_seconds",
    "Twilio webhook answer time in seconds, signature check included, by webhook and HTTP status.",
    ["webhook", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 15.0),
)
TIME_TO_NURSE_SECONDS = Histogram(
    "careline_time_to_nurse_seconds",
    "Seconds from a case's arrival in the queue to a nurse's reservation, by clinic and acuity.",
    ["clinic", "acuity"],
    buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400),
)
CALL_SETUPS = Counter(
    "careline_call_setup_total", "Nurse-to-patient call setups (voice, video) by result.", ["clinic", "kind", "result"]
)
VIDEO_ICE_FAILURES = Counter(
    "careline_video_ice_failures_total", "Video visits whose ICE negotiation failed.", ["clinic"]
)
VIDEO_MEDIA_PATHS = Counter(
    "careline_video_connections_total",
    "Connected video legs by media path; TURN relay ratio = relayed / all.",
    ["clinic", "path"],
)
CLIENT_RTT_SECONDS = Histogram(
    "careline_client_rtt_seconds",
    "Round-trip time reported by clients (WebRTC stats), seconds.",
    ["kind"],
    buckets=(0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0),
)
CLIENT_JITTER_SECONDS = Histogram(
    "careline_client_jitter_seconds",
    "Jitter reported by clients (WebRTC stats), seconds.",
    ["kind"],
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2),
)
CLIENT_LOSS_RATIO = Histogram(
    "careline_client_packet_loss_ratio",
    "Packet loss fraction reported by clients (0..1).",
    ["kind"],
    buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
)


# Labelled children of the claim metrics, cached per label values: `labels()` validates and locks on every
# call, and a claim is the hottest path that records metrics (bench/claim.py). Bounded by clinics x 2 and
# clinics x 5 levels.
@functools.cache
def _claims_child(clinic_slug: str, claimed: bool) -> Any:
    return CLAIMS.labels(clinic=clinic_slug, result="claimed" if claimed else "empty")


@functools.cache
def _time_to_nurse_child(clinic_slug: str, acuity: int) -> Any:
    return TIME_TO_NURSE_SECONDS.labels(clinic=clinic_slug, acuity=str(acuity))


def record_claim(
    *, clinic_slug: str, claimed: bool, wait_seconds: float | None = None, acuity: int | None = None
) -> None:
    """A next-case claim: counted by result; a claimed case's wait feeds the time-to-nurse histogram."""
    _claims_child(clinic_slug, claimed).inc()
    if claimed and wait_seconds is not None and acuity is not None:
        _time_to_nurse_child(clinic_slug, acuity).observe(max(0.0, wait_seconds))


def record_escalation(*, clinic_slug: str, reason: str, count: int = 1) -> None:
    """`count` cases escalated for `reason` (`past_target`, `callback_unreached`, `red_flag_while_waiting`)."""
    if count:
        ESCALATIONS.labels(clinic=clinic_slug, reason=reason).inc(count)


def record_ivr_webhook(*, webhook: str, status: int, seconds: float, clinic_id: int | None) -> None:
    """One Twilio webhook answered in `seconds`; also a sample of the clinic's IVR latency SLO (`careline.sli`)."""
    IVR_WEBHOOK_SECONDS.labels(webhook=webhook, status=str(status)).observe(seconds)
    if clinic_id is not None:
        sli.record_latency(clinic_id=clinic_id, name=sli.IVR_LATENCY, seconds=seconds)


def record_call_setup(*, clinic_id: int, clinic_slug: str, kind: str, ok: bool) -> None:
    """A call setup attempt (`kind` "voice" or "video") that connected (`ok`) or not; feeds the call setup
    success SLO. Success = media flowing between nurse and patient (video: ICE connected)."""
    CALL_SETUPS.labels(clinic=clinic_slug, kind=kind, result="success" if ok else "failure").inc()
    sli.record_event(clinic_id=clinic_id, name=sli.CALL_SETUP, ok=ok)


def record_ice_failure(*, clinic_slug: str) -> None:
    """A video visit's ICE negotiation failed (a leg's ICE connection state went `failed`; counted once per
    visit by `contactcenter.visits.video_ice_report`)."""
    VIDEO_ICE_FAILURES.labels(clinic=clinic_slug).inc()


def record_media_path(*, clinic_slug: str, relayed: bool) -> None:
    """A connected video leg: through TURN (`relayed`, candidate type `relay`) or direct (host/srflx)."""
    VIDEO_MEDIA_PATHS.labels(clinic=clinic_slug, path="relay" if relayed else "direct").inc()


def record_client_stats(
    *, kind: str, rtt_seconds: float | None = None, jitter_seconds: float | None = None, loss_ratio: float | None = None
) -> None:
    """One client stats report (`kind` "video" or "voice"): RTT and jitter in seconds, loss as a fraction."""
    if rtt_seconds is not None:
        CLIENT_RTT_SECONDS.labels(kind=kind).observe(rtt_seconds)
    if jitter_seconds is not None:
        CLIENT_JITTER_SECONDS.labels(kind=kind).observe(jitter_seconds)
    if loss_ratio is not None:
        CLIENT_LOSS_RATIO.labels(kind=kind).observe(min(1.0, max(0.0, loss_ratio)))


def scrape_allowed(request: HttpRequest) -> bool:
    """`Authorization: Bearer <METRICS_TOKEN>` when a token is set; else a source address (`REMOTE_ADDR`, the
    TCP peer: scrape nodes directly) within `METRICS_ALLOWED_IPS` (addresses or networks)."""
    token = str(settings.METRICS_TOKEN)
    if token:
        offered = request.headers.get("Authorization", "")
        return hmac.compare_digest(offered.encode(), f"Bearer {token}".encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_IPS)


def metrics_response(request: HttpRequest) -> HttpResponse:
    """`GET /metrics`: the process registry in Prometheus text format; 403 for callers not allowed."""
    if not scrape_allowed(request):
        return HttpResponse("forbidden", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
