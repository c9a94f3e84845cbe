"""`/metrics` (careline.metrics, ops.collectors): access control, domain gauges from the database, and the
counters/histograms the code increments (claims, time to nurse, escalations, IVR webhook latency)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from careline import metrics
from clinics import db_scope
from ehr.models import WriteBack
from tests.ivr.phone import Phone
from triage.models import Case
from triage.services import case_claim_next, case_enqueue

pytestmark = pytest.mark.django_db(transaction=True)


def scrape(client: Client, **extra: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.status_code
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_refused_from_other_addresses_and_without_the_token(client: Client):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics").status_code == 200  # loopback (the test client's 127.0.0.1) is allowed
    with override_settings(METRICS_TOKEN="s3cret-token"):
        assert client.get("/metrics").status_code == 403  # a token, once set, is required from anywhere
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
        assert (
            client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token", REMOTE_ADDR="10.1.2.3").status_code == 200
        )
    with override_settings(METRICS_ALLOWED_IPS=["10.1.0.0/16"]):
        assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def test_waiting_longest_wait_and_outbox_gauges_come_from_the_database(personas, client: Client):
    now = timezone.now()
    old = case_enqueue(clinic=personas.north, callback_number="+15555550100", acuity=2)
    Case.objects.filter(pk=old.pk).update(arrived_at=now - timedelta(seconds=600))
    case_enqueue(clinic=personas.north, callback_number="+15555550101", acuity=2)
    case_enqueue(clinic=personas.south, callback_number="+15555550102", acuity=4)
    wb = WriteBack.objects.create(
        clinic=personas.north,
        source_id=old.pk,
        target="hl7v2",
        idempotency_key="k1",
        payload={},
        state="retrying",
        message_type="ORU^R01",
    )
    WriteBack.objects.filter(pk=wb.pk).update(created_at=now - timedelta(seconds=300))

    # A scrape comes from no staff member: like any anonymous request it starts with no row-level-security
    # scope (fail-closed); the collector reads in system scope itself.
    with override_settings(DATABASE_INITIAL_SCOPE=db_scope.UNSET), db_scope.scope(db_scope.UNSET):
        samples = scrape(client)
    assert value(samples, "careline_cases_waiting", clinic="north", acuity="2") == 2
    assert value(samples, "careline_cases_waiting", clinic="south", acuity="4") == 1
    assert value(samples, "careline_cases_waiting", clinic="north", acuity="1") == 0
    assert 595 <= value(samples, "careline_case_longest_wait_seconds", clinic="north", acuity="2") <= 700
    assert value(samples, "careline_writeback_outbox_depth", clinic="north", target="hl7v2", state="retrying") == 1
    age = value(
        samples, "careline_writeback_outbox_oldest_age_seconds", clinic="north", target="hl7v2", state="retrying"
    )
    assert 295 <= age <= 400
    assert value(samples, "careline_hl7_queue_depth", clinic="north", destination="ORU^R01") == 1
    # Labels are clinic slugs and codes, never people.
    assert "Alice" not in client.get("/metrics").content.decode()


def test_claims_and_time_to_nurse_are_counted(personas, client: Client):
    before = scrape(client)
    case = case_enqueue(clinic=personas.north, callback_number="+15555550100", acuity=3)
    Case.objects.filter(pk=case.pk).update(arrived_at=timezone.now() - timedelta(seconds=90))
    assert case_claim_next(clinic=personas.north, nurse=personas.alice) is not None
    assert case_claim_next(clinic=personas.north, nurse=personas.dave) is None
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("careline_claims_total", clinic="north", result="claimed") == 1
    assert delta("careline_claims_total", clinic="north", result="empty") == 1
    assert delta("careline_time_to_nurse_seconds_count", clinic="north", acuity="3") == 1
    assert delta("careline_time_to_nurse_seconds_bucket", clinic="north", acuity="3", le="60.0") == 0
    assert delta("careline_time_to_nurse_seconds_bucket", clinic="north", acuity="3", le="120.0") == 1


def test_a_claim_through_the_routing_path_is_counted_too(personas, client: Client):
    """A queued case with routing requirements sends claims through the two-statement path: counted as well."""
    before = scrape(client)
    case = case_enqueue(clinic=personas.north, callback_number="+15555550100", acuity=2)
    Case.objects.filter(pk=case.pk).update(required_skills=["pediatrics"], arrived_at=timezone.now())
    assert case_claim_next(clinic=personas.north, nurse=personas.alice) is None  # she lacks the skill
    after = scrape(client)
    assert (
        value(after, "careline_claims_total", clinic="north", result="empty")
        - value(before, "careline_claims_total", clinic="north", result="empty")
        == 1
    )


def test_ivr_webhook_latency_is_observed_per_webhook_and_status(personas, client: Client):
    before = scrape(client)
    phone = Phone(client, from_number="+15550009999")
    phone.dial()
    forged = client.post("/ivr/voice/", {"CallSid": "CA" + "0" * 32, "From": "+1", "To": "+1"})
    assert forged.status_code == 403
    after = scrape(client)
    name = "careline_ivr_webhook_seconds_count"
    assert value(after, name, webhook="voice", status="200") - value(before, name, webhook="voice", status="200") == 1
    assert value(after, name, webhook="voice", status="403") - value(before, name, webhook="voice", status="403") == 1


def test_video_and_client_stats_hooks_feed_their_metrics(personas, client: Client):
    before = scrape(client)
    metrics.record_call_setup(clinic_id=personas.north.pk, clinic_slug="north", kind="video", ok=True)
    metrics.record_ice_failure(clinic_slug="north")
    metrics.record_media_path(clinic_slug="north", relayed=True)
    metrics.record_client_stats(kind="video", rtt_seconds=0.12, jitter_seconds=0.01, loss_ratio=0.02)
    after = scrape(client)
    for name, labels in [
        ("careline_call_setup_total", {"clinic": "north", "kind": "video", "result": "success"}),
        ("careline_video_ice_failures_total", {"clinic": "north"}),
        ("careline_video_connections_total", {"clinic": "north", "path": "relay"}),
        ("careline_client_rtt_seconds_count", {"kind": "video"}),
        ("careline_client_packet_loss_ratio_count", {"kind": "video"}),
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == 1, name
