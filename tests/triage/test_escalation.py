"""Escalation sweep, surge paging, closed-loop callbacks and reconciliation (`triage.escalation`,
`triage.callbacks`, orchestrated by `contactcenter.escalation`), on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from contactcenter import presence
from contactcenter.escalation import callback_attempt, escalation_sweep_clinic, reconcile
from contactcenter.models import AgentPresence
from ivr.models import CallLeg, OutboundMessage
from tests.conftest import NORTH_ON_CALL
from triage.exceptions import NotYourCase
from triage.models import CallbackAttempt, Case, CaseEvent, CaseState, SurgeEpisode
from triage.services import case_claim_next, case_complete, case_enqueue

pytestmark = pytest.mark.django_db


def _enqueue(clinic, acuity=3, minutes_ago=0, **fields):
    case = case_enqueue(clinic=clinic, callback_number="+15555550100", acuity=acuity, **fields)
    if minutes_ago:
        Case.objects.filter(pk=case.pk).update(arrived_at=timezone.now() - timedelta(minutes=minutes_ago))
        case.refresh_from_db()
    return case


def _pages(to):
    # `to` is encrypted at rest (clinics.crypto): match in Python, keep a queryset for the callers.
    return OutboundMessage.objects.filter(pk__in=[m.pk for m in OutboundMessage.objects.all() if m.to == to])


# --- Escalation of cases past their target -------------------------------------------------------------------


def test_case_past_target_is_escalated_and_on_call_paged_once(personas):
    overdue = _enqueue(personas.north, acuity=2, minutes_ago=16)  # CTAS level 2 target: 15 min
    within = _enqueue(personas.north, acuity=3, minutes_ago=16)  # level 3 target: 30 min
    other_clinic = _enqueue(personas.south, acuity=2, minutes_ago=5)

    first = escalation_sweep_clinic(clinic=personas.north)
    second = escalation_sweep_clinic(clinic=personas.north)

    assert first["escalated"] == 1 and second["escalated"] == 0
    overdue.refresh_from_db()
    within.refresh_from_db()
    assert overdue.escalated and overdue.escalated_at is not None
    assert not within.escalated and within.escalated_at is None
    assert overdue.events.filter(kind=CaseEvent.Kind.ESCALATED).count() == 1
    pages = _pages(NORTH_ON_CALL)
    assert pages.count() == 1
    page = pages.get()
    assert page.case_id == overdue.pk and f"case {overdue.pk}" in page.body
    assert "+1555" not in page.body, "a page names the case, never the patient's number"
    assert not Case.objects.get(pk=other_clinic.pk).escalated


def test_escalated_case_keeps_its_place_and_callback_waits_are_not_escalated(personas):
    waiting_for_retry = _enqueue(personas.north, acuity=2, minutes_ago=60)
    Case.objects.filter(pk=waiting_for_retry.pk).update(callback_due_at=timezone.now() + timedelta(minutes=5))
    assert escalation_sweep_clinic(clinic=personas.north)["escalated"] == 0


# --- Surge paging ---------------------------------------------------------------------------------------------


def _surge_setup(personas):
    north = personas.north
    north.surge_wait_threshold_seconds = 10 * 60
    north.mean_handle_seconds = 12 * 60
    north.save()
    dave = personas.dave.staff
    dave.on_shift, dave.phone = False, "+15550100777"
    dave.save()
    carol = personas.carol.staff  # off-shift in the other clinic: never paged for North
    carol.on_shift, carol.phone = False, "+15550200777"
    carol.save()
    presence.presence_connect(user=personas.alice)  # one nurse working


def test_surge_pages_off_shift_nurses_once_per_episode(personas):
    _surge_setup(personas)
    first = _enqueue(personas.north, acuity=3)  # 1 case * 12 min / 1 nurse = 12 min > 10 min threshold

    assert escalation_sweep_clinic(clinic=personas.north)["surge_pages"] == 1
    assert escalation_sweep_clinic(clinic=personas.north)["surge_pages"] == 0, "one page per episode"
    assert _pages("+15550100777").count() == 1
    assert not _pages("+15550200777").exists()
    # The level-3 case is ahead of any new level 3, 4 or 5 case: those three levels surge; one page in all.
    episodes = SurgeEpisode.objects.filter(clinic=personas.north, ended_at__isnull=True).order_by("acuity")
    assert [(e.acuity, e.paged) for e in episodes] == [(3, 1), (4, 0), (5, 0)]

    Case.objects.filter(pk=first.pk).update(state=CaseState.CLOSED)  # queue drained: episode over
    escalation_sweep_clinic(clinic=personas.north)
    assert not SurgeEpisode.objects.filter(ended_at__isnull=True).exists()

    _enqueue(personas.north, acuity=3)  # a new surge is a new episode: paged again
    assert escalation_sweep_clinic(clinic=personas.north)["surge_pages"] == 1
    assert _pages("+15550100777").count() == 2


def test_no_surge_when_enough_nurses_are_working(personas):
    _surge_setup(personas)
    presence.presence_connect(user=personas.dave)  # dave is off-shift but at his console: he counts
    _enqueue(personas.north, acuity=3)  # 12 min / 2 nurses = 6 min < 10 min
    assert escalation_sweep_clinic(clinic=personas.north)["surges"] == 0


# --- Closed-loop callbacks ------------------------------------------------------------------------------------


def _claim(personas, nurse):
    return case_claim_next(clinic=personas.north, nurse=nurse)


def test_unanswered_callback_requeues_with_place_kept_until_due(personas):
    case = _enqueue(personas.north, acuity=4, minutes_ago=20, contact_preference=Case.ContactPreference.CALLBACK)
    arrived_at = case.arrived_at
    assert _claim(personas, personas.alice).pk == case.pk

    outcome = callback_attempt(user=personas.alice, case_id=case.pk, result=CallbackAttempt.Result.NO_ANSWER)

    assert outcome.requeued and not outcome.exhausted
    case.refresh_from_db()
    assert case.state == CaseState.QUEUED and case.arrived_at == arrived_at and case.reserved_by is None
    assert case.callback_due_at is not None
    assert abs((case.callback_due_at - timezone.now()).total_seconds() - 600) < 30  # default spacing 10 min
    assert _claim(personas, personas.dave) is None, "not claimable before the next attempt is due"
    Case.objects.filter(pk=case.pk).update(callback_due_at=timezone.now() - timedelta(seconds=1))
    assert _claim(personas, personas.dave).pk == case.pk


def test_n_unanswered_attempts_text_the_patient_page_on_call_and_need_a_disposition(personas):
    case = _enqueue(personas.north, acuity=4, contact_preference=Case.ContactPreference.CALLBACK)
    results = [CallbackAttempt.Result.NO_ANSWER, CallbackAttempt.Result.VOICEMAIL, CallbackAttempt.Result.NO_ANSWER]
    for number, result in enumerate(results, start=1):
        Case.objects.filter(pk=case.pk).update(callback_due_at=None)
        assert _claim(personas, personas.alice).pk == case.pk
        outcome = callback_attempt(user=personas.alice, case_id=case.pk, result=result)
        assert outcome.attempt.number == number
        assert outcome.exhausted == (number == 3)
        if number < 3:
            assert not _pages(NORTH_ON_CALL).exists()

    case.refresh_from_db()
    assert case.state == CaseState.IN_PROGRESS and case.reserved_by_id == personas.alice.pk
    assert case.escalated and case.escalated_at is not None
    patient_sms = [m for m in _pages("+15555550100") if "We received your call" not in m.body]
    assert len(patient_sms) == 1 and "(555) 010-0100" in patient_sms[0].body  # the clinic's number
    assert _pages(NORTH_ON_CALL).count() == 1
    assert list(case.callback_attempts.values_list("number", flat=True)) == [1, 2, 3]
    closed = case_complete(
        case_id=case.pk, clinic=personas.north, nurse=personas.alice, disposition_code="clinician-24h"
    )
    assert closed.state == CaseState.CLOSED and closed.disposition == "clinician-24h"


def test_wrong_number_closes_the_loop_at_once_without_texting_that_number(personas):
    case = _enqueue(personas.north, acuity=3, contact_preference=Case.ContactPreference.CALLBACK)
    _claim(personas, personas.alice)
    outcome = callback_attempt(user=personas.alice, case_id=case.pk, result=CallbackAttempt.Result.WRONG_NUMBER)
    assert outcome.exhausted and not outcome.notify_patient
    assert not _pages("+15555550100").exists()
    assert _pages(NORTH_ON_CALL).count() == 1


def test_answered_callback_stays_in_progress_and_others_cannot_record_attempts(personas):
    case = _enqueue(personas.north, acuity=3, contact_preference=Case.ContactPreference.CALLBACK)
    _claim(personas, personas.alice)
    with pytest.raises(NotYourCase):
        callback_attempt(user=personas.dave, case_id=case.pk, result=CallbackAttempt.Result.ANSWERED)
    with pytest.raises(Case.DoesNotExist):
        callback_attempt(user=personas.carol, case_id=case.pk, result=CallbackAttempt.Result.ANSWERED)
    outcome = callback_attempt(user=personas.alice, case_id=case.pk, result=CallbackAttempt.Result.ANSWERED)
    assert not outcome.requeued and not outcome.exhausted
    assert Case.objects.get(pk=case.pk).state == CaseState.IN_PROGRESS


# --- Reconciliation -------------------------------------------------------------------------------------------


def test_reservation_of_an_offline_nurse_goes_back_to_the_queue(personas):
    case = _enqueue(personas.north, acuity=3, minutes_ago=3)
    arrived_at = case.arrived_at
    presence.presence_connect(user=personas.alice)
    _claim(personas, personas.alice)
    assert reconcile()["requeued"] == 0, "her console is live: nothing to repair"

    presence.presence_disconnect(user=personas.alice)
    assert reconcile()["requeued"] == 1
    case.refresh_from_db()
    assert case.state == CaseState.QUEUED and case.arrived_at == arrived_at and case.reserved_by is None
    assert case.events.filter(kind=CaseEvent.Kind.RECONCILED).count() == 1
    assert reconcile()["requeued"] == 0


def test_holding_case_whose_call_ended_switches_to_callback(personas):
    case = _enqueue(personas.north, acuity=3, contact_preference=Case.ContactPreference.HOLD)
    still_on_line = _enqueue(personas.north, acuity=3, contact_preference=Case.ContactPreference.HOLD)
    CallLeg.objects.create(
        call_sid="CAended", clinic=personas.north, from_number="+1", case=case, ended_at=timezone.now()
    )
    CallLeg.objects.create(call_sid="CAlive", clinic=personas.north, from_number="+1", case=still_on_line)

    assert reconcile()["to_callback"] == 1
    assert Case.objects.get(pk=case.pk).contact_preference == Case.ContactPreference.CALLBACK
    assert Case.objects.get(pk=still_on_line.pk).contact_preference == Case.ContactPreference.HOLD
    assert case.events.filter(kind=CaseEvent.Kind.RECONCILED).exists()
    assert reconcile()["to_callback"] == 0


# --- Presence -------------------------------------------------------------------------------------------------


def test_presence_counts_sockets_buttons_and_sweep(personas):
    alice = personas.alice
    presence.presence_connect(user=alice)
    presence.presence_connect(user=alice)  # a second tab
    presence.presence_disconnect(user=alice)
    row = AgentPresence.objects.get(user=alice)
    assert row.state == AgentPresence.State.AVAILABLE and row.channels == 1 and row.clinic_id == personas.north.pk

    presence.presence_set(user=alice, state=AgentPresence.State.AWAY)
    assert AgentPresence.objects.get(user=alice).state == AgentPresence.State.AWAY
    with pytest.raises(presence.InvalidPresenceState):
        presence.presence_set(user=alice, state=AgentPresence.State.OFFLINE)

    assert presence.presence_sweep() == 0
    AgentPresence.objects.filter(user=alice).update(last_seen=timezone.now() - timedelta(seconds=91))
    assert presence.presence_sweep() == 1
    row = AgentPresence.objects.get(user=alice)
    assert row.state == AgentPresence.State.OFFLINE and row.channels == 0

    presence.presence_heartbeat(user=alice)  # the socket was alive after all
    assert AgentPresence.objects.get(user=alice).state == AgentPresence.State.AVAILABLE
