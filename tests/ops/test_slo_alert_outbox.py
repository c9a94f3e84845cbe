"""SLO alert webhook durability (ops.models.SloAlert outbox): the alert row commits with the breach change,
so a receiver that is down when the breach opens still gets the alert, once, when it is back: Celery's own
retries first, then the beat sweep (`ops.tasks.slo_alert_sweep`). Real HTTP receiver on 127.0.0.1, real
PostgreSQL, eager Celery (the test settings)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from ehr.models import WriteBack
from ops import services
from ops.models import SloAlert, SloBreach, SloObjective
from ops.tasks import slo_alert_deliver, slo_alert_sweep, slo_evaluate
from tests.fixtures.fhir_server import free_port
from tests.ops.test_slo import Receiver, _old_writeback

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def eager_retries() -> Iterator[None]:
    """Eager Celery as a worker runs it: a task's retries run (at once, no backoff wait) instead of the
    first `Retry` being raised to the caller (`task_eager_propagates`, on in the test settings)."""
    conf = slo_alert_deliver.app.conf
    before = conf.task_eager_propagates
    conf.task_eager_propagates = False
    yield
    conf.task_eager_propagates = before


def test_alert_written_with_the_breach_survives_a_receiver_that_is_down_and_arrives_once(personas, eager_retries):
    port = free_port()
    url = f"http://127.0.0.1:{port}/alerts"  # nothing listens there yet
    SloObjective.objects.create(clinic=personas.north, kind="writeback_age", threshold=300, window_minutes=15)
    wb = _old_writeback(personas.north, 900)

    with override_settings(SLO_ALERT_WEBHOOK_URL=url, SLO_ALERT_WEBHOOK_TIMEOUT_SECONDS=10.0):
        assert slo_evaluate.delay().get()["breached"] == 1
        breach = SloBreach.objects.get()
        alert = SloAlert.objects.get()
        assert (alert.breach_id, alert.event, alert.state) == (breach.pk, "slo.breached", "pending")
        # The task's own retries (eager: run at once) were all refused: the row is pending, not lost.
        assert alert.attempts == 1 + 8 and alert.last_error == "ConnectError"
        assert services.slo_alert_sweep() == 0, "just tried: still within the task's retry schedule"
        assert slo_evaluate.delay().get()["breached"] == 0  # same episode: no second alert row
        assert SloAlert.objects.count() == 1

        receiver = Receiver(port=port)  # the receiver comes back
        try:
            later = timezone.now() + services.ALERT_SWEEP_AGE + timedelta(seconds=5)
            assert services.slo_alert_sweep(now=later) == 1
            alert.refresh_from_db()
            assert alert.state == "sent" and alert.sent_at is not None
            assert [b["event"] for b in receiver.bodies] == ["slo.breached"]
            assert receiver.bodies[0]["breach_id"] == breach.pk and receiver.bodies[0]["alert_id"] == alert.pk
            assert receiver.headers[0]["Idempotency-Key"] == f"slo-alert-{alert.pk}"
            # Handed over again (a duplicate dispatch, a sweep): a sent row is not posted twice.
            assert services.slo_alert_sweep(now=later) == 0
            assert slo_alert_deliver.apply(args=[alert.pk]).get() == "sent"
            assert slo_alert_sweep.delay().get() == 0
            assert receiver.calls == 1

            # The next state change (cleared) is its own row, delivered once.
            WriteBack.objects.filter(pk=wb.pk).update(state="sent")
            assert slo_evaluate.delay().get()["cleared"] == 1
            assert slo_evaluate.delay().get()["cleared"] == 0
            assert [b["event"] for b in receiver.bodies] == ["slo.breached", "slo.cleared"]
            assert list(SloAlert.objects.order_by("pk").values_list("event", "state")) == [
                ("slo.breached", "sent"),
                ("slo.cleared", "sent"),
            ]
        finally:
            receiver.close()


def test_alert_rows_roll_back_with_the_breach(personas):
    """The outbox row is part of the evaluation's transaction: an evaluation that fails after writing it
    leaves neither breach nor alert (so nothing is ever posted for a breach that does not exist)."""
    SloObjective.objects.create(clinic=personas.north, kind="writeback_age", threshold=300)
    _old_writeback(personas.north, 900)
    receiver = Receiver()
    try:
        with override_settings(SLO_ALERT_WEBHOOK_URL=receiver.url), pytest.raises(RuntimeError):
            from django.db import transaction

            with transaction.atomic():
                services.slo_evaluate(objective_id=SloObjective.objects.get().pk)
                assert SloAlert.objects.count() == 1
                raise RuntimeError("crash before commit")
        assert SloBreach.objects.count() == 0 and SloAlert.objects.count() == 0
        assert receiver.calls == 0
    finally:
        receiver.close()
