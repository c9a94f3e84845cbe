"""SLO evaluation (ops.services): a breach alerts exactly once per episode (supervisor event, log line, webhook)
and clears once; indicators from the shared SLI counters (careline.sli) and from the database."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client, override_settings
from django.utils import timezone

from careline import sli
from clinics import events
from ehr.models import WriteBack
from ops import services
from ops.models import SloAlert, SloBreach, SloObjective
from ops.tasks import slo_alert_deliver, slo_evaluate

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver:
    """A real HTTP server on 127.0.0.1 that records the JSON posted to it; the first `fail_first` posts get 500."""

    def __init__(self, fail_first: int = 0, port: int = 0) -> None:
        self.bodies: list[dict] = []
        self.fail_first = fail_first
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                receiver.calls += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.calls <= receiver.fail_first:
                    self.send_response(500)
                else:
                    receiver.bodies.append(body)
                    receiver.headers.append(dict(self.headers))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.headers: list[dict[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


class SupervisorFeed:
    """A channel subscribed to the clinic's supervisor group on the real Redis layer (`drain()` once per test)."""

    def __init__(self, clinic_id: int) -> None:
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(events.supervisor_group_name(clinic_id), self.channel)

    def drain(self) -> list[dict]:
        got = []

        async def receive_all() -> None:
            import asyncio

            while True:
                try:
                    got.append(await asyncio.wait_for(self.layer.receive(self.channel), timeout=0.5))
                except TimeoutError:
                    return

        async_to_sync(receive_all)()
        return [m for m in got if m["event"].startswith("slo.")]


def _old_writeback(clinic, seconds: int) -> WriteBack:
    wb = WriteBack.objects.create(clinic=clinic, source_id=1, target="fhir", idempotency_key=f"k{seconds}", payload={})
    WriteBack.objects.filter(pk=wb.pk).update(created_at=timezone.now() - timedelta(seconds=seconds))
    return wb


def test_writeback_age_breach_alerts_once_per_episode_and_clears(personas, receiver, caplog):
    objective = SloObjective.objects.create(
        clinic=personas.north, kind="writeback_age", threshold=300, window_minutes=15
    )
    feed = SupervisorFeed(personas.north.pk)
    wb = _old_writeback(personas.north, 900)

    with override_settings(SLO_ALERT_WEBHOOK_URL=receiver.url), caplog.at_level(logging.INFO, logger="ops.services"):
        assert slo_evaluate.delay().get() == {"evaluated": 1, "breached": 1, "cleared": 0}
        assert slo_evaluate.delay().get() == {"evaluated": 1, "breached": 0, "cleared": 0}  # same episode: quiet
        assert slo_evaluate.delay().get()["breached"] == 0
        assert SloBreach.objects.get().cleared_at is None
        assert [b["event"] for b in receiver.bodies] == ["slo.breached"]
        assert receiver.bodies[0]["clinic"] == "north" and receiver.bodies[0]["threshold"] == 300

        WriteBack.objects.filter(pk=wb.pk).update(state="sent")
        assert slo_evaluate.delay().get()["cleared"] == 1
        assert slo_evaluate.delay().get() == {"evaluated": 1, "breached": 0, "cleared": 0}
        assert [b["event"] for b in receiver.bodies] == ["slo.breached", "slo.cleared"]
        breach = SloBreach.objects.get()
        assert breach.cleared_at is not None and breach.worst_value >= 900 and breach.last_value == 0

        _old_writeback(personas.north, 1200)  # a new episode alerts again
        assert slo_evaluate.delay().get()["breached"] == 1
    assert SloBreach.objects.filter(objective=objective).count() == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "SLO breached" in r.getMessage()]
    assert len(warnings) == 2
    # The supervisors' feed got one event per transition (read once: the layer's buffers belong to one loop).
    received = feed.drain()
    assert [m["event"] for m in received] == ["slo.breached", "slo.cleared", "slo.breached"]
    assert received[0]["payload"]["kind"] == "writeback_age" and received[0]["payload"]["value"] >= 900


def test_a_refused_webhook_is_retried_until_delivered(personas):
    """The receiver answers 500 twice. The on-commit hand-over tries once (eager Celery raises the retry it
    asks for instead of scheduling it: the row stays pending); the task run again retries by itself (eager
    Celery re-runs a retry at once; a worker waits the backoff) and the alert arrives once."""
    receiver = Receiver(fail_first=2)
    try:
        SloObjective.objects.create(clinic=personas.north, kind="writeback_age", threshold=300)
        _old_writeback(personas.north, 900)
        with override_settings(SLO_ALERT_WEBHOOK_URL=receiver.url):
            assert slo_evaluate.delay().get()["breached"] == 1
            alert = SloAlert.objects.get()
            assert (receiver.calls, alert.state, alert.attempts, alert.last_error) == (1, "pending", 1, "HTTP 500")
            result = slo_alert_deliver.apply(args=[alert.pk], throw=False)
        assert result.state == "SUCCESS" and result.result == "sent"
        assert receiver.calls == 3 and [b["event"] for b in receiver.bodies] == ["slo.breached"]
        alert.refresh_from_db()
        assert (alert.state, alert.attempts, alert.last_error) == ("sent", 3, "")
        assert receiver.bodies[0]["alert_id"] == alert.pk
    finally:
        receiver.close()


def test_ivr_latency_p99_from_shared_counters_needs_min_samples(personas):
    objective = SloObjective.objects.create(
        clinic=personas.north, kind="ivr_latency_p99", threshold=2.0, window_minutes=5, min_samples=50
    )
    for _ in range(49):
        sli.record_latency(clinic_id=personas.north.pk, name=sli.IVR_LATENCY, seconds=0.04)
    assert services.slo_evaluate(objective_id=objective.pk).value is None  # too few samples: no data
    sli.record_latency(clinic_id=personas.north.pk, name=sli.IVR_LATENCY, seconds=0.04)
    result = services.slo_evaluate(objective_id=objective.pk)
    assert result.value == 0.05 and result.met is True  # bucket bound holding the p99
    for _ in range(2):  # 2 of 52 samples slow: p99 lands in the 3 s bucket
        sli.record_latency(clinic_id=personas.north.pk, name=sli.IVR_LATENCY, seconds=2.5)
    result = services.slo_evaluate(objective_id=objective.pk)
    assert result.value == 3.0 and result.transition == "breached"
    # South has its own counters.
    assert sli.quantile(clinic_id=personas.south.pk, name=sli.IVR_LATENCY, q=0.99, window_minutes=5) == (None, 0)


def test_call_setup_success_ratio(personas):
    objective = SloObjective.objects.create(
        clinic=personas.north, kind="call_setup_success", threshold=0.995, window_minutes=60, min_samples=10
    )
    for i in range(200):
        sli.record_event(clinic_id=personas.north.pk, name=sli.CALL_SETUP, ok=i != 0)
    result = services.slo_evaluate(objective_id=objective.pk)
    assert result.value == pytest.approx(199 / 200) and result.met is True
    sli.record_event(clinic_id=personas.north.pk, name=sli.CALL_SETUP, ok=False)
    result = services.slo_evaluate(objective_id=objective.pk)
    assert result.value == pytest.approx(199 / 201) and result.transition == "breached"
    # Samples older than the window do not count.
    old = timezone.now().timestamp() - 2 * 3600
    assert sli.ratio(clinic_id=personas.north.pk, name=sli.CALL_SETUP, window_minutes=60, now=old) == (0, 0)


def test_dashboard_shows_open_breaches_to_supervisors(personas, client: Client):
    SloObjective.objects.create(clinic=personas.north, kind="writeback_age", threshold=60)
    _old_writeback(personas.north, 600)
    services.slo_evaluate_all()
    client.force_login(personas.bob)
    html = client.get("/console/dashboard/panels/").content.decode()
    assert "SLO breached" in html and 'data-slo-kind="writeback_age"' in html
    client.force_login(personas.carol)
    assert client.get("/console/dashboard/panels/").status_code == 403  # a nurse (of South) never sees it


def test_default_objectives_install_once(personas):
    assert len(services.slo_defaults_install(clinic=personas.north)) == 4
    assert services.slo_defaults_install(clinic=personas.north) == []
