"""Strict per-patient order of outbound HL7 and the receiver-down drain, against a real MLLP peer.

A shift segment's outage is simulated by stopping the peer and moving the sweep's `now` past every backoff
due time (minutes, not hours, and no sleeping).
"""

from __future__ import annotations

from datetime import timedelta

import hl7
import pytest
from django.utils import timezone

from ehr.hl7.oru import control_id_for
from ehr.models import WriteBack
from ehr.services import writeback_enqueue, writeback_retry, writeback_skip, writeback_sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def hl7_settings(settings, mllp_peer):
    settings.HL7_MLLP_HOST = mllp_peer.host
    settings.HL7_MLLP_PORT = mllp_peer.port
    settings.HL7_TIMEOUT_SECONDS = 3
    return settings


def _record(personas, make_outcome, capture, patient: str, count: int, start: int) -> list[WriteBack]:
    """Record `count` outcomes for `patient`; return their HL7 rows in recording order."""
    rows = []
    for number in range(start, start + count):
        with capture(execute=True):
            recorded = writeback_enqueue(clinic=personas.north, outcome=make_outcome(patient, case_id=number))
        rows.append(WriteBack.objects.get(pk=recorded[-1].pk))
    return rows


def _received(peer) -> list[str]:
    return [str(hl7.parse(raw).segment("MSH")[10]) for raw in peer.messages]


def test_receiver_down_for_a_shift_segment_then_drains_in_order_per_patient(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    mllp_peer.stop()
    rows: list[WriteBack] = []
    for start in (1, 4, 7):  # interleave the two patients: three outcomes for pat-a, six for pat-b
        rows += _record(personas, make_outcome, django_capture_on_commit_callbacks, "pat-a", 1, start)
        rows += _record(personas, make_outcome, django_capture_on_commit_callbacks, "pat-b", 2, start + 1)
    rows = [WriteBack.objects.get(pk=row.pk) for row in rows]
    by_patient = {key: [r for r in rows if r.ordering_key == key] for key in ("fhir:pat-a", "fhir:pat-b")}
    # Each patient's first message was tried and is retrying; the later ones wait behind it, untried.
    for chain in by_patient.values():
        assert (chain[0].state, chain[0].attempts) == ("retrying", 1)
        assert all(r.state == "pending" and r.attempts == 0 for r in chain[1:])
        assert all(r.last_error.startswith(f"waiting for earlier message #{chain[0].pk}") for r in chain[1:])
    # Sweeps during the outage (15 minutes of beat, due times reached) keep them queued and in order.
    now = timezone.now()
    for minutes in range(1, 16):
        with django_capture_on_commit_callbacks(execute=True):
            writeback_sweep(now=now + timedelta(minutes=minutes))
    assert WriteBack.objects.filter(target="hl7v2", state="sent").count() == 0
    assert all(WriteBack.objects.get(pk=c[0].pk).attempts > 1 for c in by_patient.values())
    assert all(WriteBack.objects.get(pk=r.pk).attempts == 0 for c in by_patient.values() for r in c[1:])

    mllp_peer.start()  # same port: the receiver is back
    with django_capture_on_commit_callbacks(execute=True):
        writeback_sweep(now=now + timedelta(hours=1))

    assert set(WriteBack.objects.filter(target="hl7v2").values_list("state", flat=True)) == {"sent"}
    received = _received(mllp_peer)
    assert len(received) == len(set(received)) == 9
    for chain in by_patient.values():
        expected = [control_id_for(r.idempotency_key) for r in chain]
        assert [c for c in received if c in expected] == expected


def test_a_later_message_waits_while_an_earlier_one_of_the_same_patient_retries(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    mllp_peer.stop()
    [first] = _record(personas, make_outcome, django_capture_on_commit_callbacks, "pat-a", 1, 1)
    mllp_peer.start()
    [second] = _record(personas, make_outcome, django_capture_on_commit_callbacks, "pat-a", 1, 2)
    [other] = _record(personas, make_outcome, django_capture_on_commit_callbacks, "pat-b", 1, 3)

    # The receiver is up, but pat-a's second message must not overtake the first; pat-b is independent.
    assert (second.state, other.state) == ("pending", "sent")
    assert _received(mllp_peer) == [control_id_for(other.idempotency_key)]

    first.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        writeback_sweep(now=first.next_attempt_at)
    assert _received(mllp_peer)[1:] == [control_id_for(first.idempotency_key), control_id_for(second.idempotency_key)]


def test_a_dead_message_blocks_the_patient_until_an_analyst_skips_it(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    mllp_peer.ack_code = "AR"
    [first] = _record(personas, make_outcome, django_capture_on_commit_callbacks, "pat-a", 1, 1)
    mllp_peer.ack_code = "AA"
    [second] = _record(personas, make_outcome, django_capture_on_commit_callbacks, "pat-a", 1, 2)
    assert (first.state, second.state) == ("dead", "pending")
    with django_capture_on_commit_callbacks(execute=True):
        writeback_sweep(now=timezone.now() + timedelta(hours=1))
    assert WriteBack.objects.get(pk=second.pk).state == "pending"  # still held back: no operator action yet

    with django_capture_on_commit_callbacks(execute=True):
        writeback_skip(clinic=personas.north, writeback_id=first.pk, actor=personas.bob, reason="duplicate visit")

    assert WriteBack.objects.get(pk=first.pk).state == "skipped"
    assert WriteBack.objects.get(pk=second.pk).state == "sent"  # released on commit, no sweep needed
    assert _received(mllp_peer)[-1] == control_id_for(second.idempotency_key)


def test_a_dead_message_retried_by_an_analyst_goes_first(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    mllp_peer.ack_code = "AR"
    [first] = _record(personas, make_outcome, django_capture_on_commit_callbacks, "pat-a", 1, 1)
    [second] = _record(personas, make_outcome, django_capture_on_commit_callbacks, "pat-a", 1, 2)
    mllp_peer.ack_code = "AA"

    with django_capture_on_commit_callbacks(execute=True):
        writeback_retry(clinic=personas.north, writeback_id=first.pk, actor=personas.bob, reason="mapping fixed")

    assert [WriteBack.objects.get(pk=r.pk).state for r in (first, second)] == ["sent", "sent"]
    assert _received(mllp_peer)[-2:] == [control_id_for(first.idempotency_key), control_id_for(second.idempotency_key)]
