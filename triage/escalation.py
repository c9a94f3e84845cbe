"""Escalation decisions: cases past their target time, surge detection, and returning a case to the queue.

These functions decide and record (case rows, timeline, console events); they send nothing outside.
The orchestrator (`contactcenter.escalation`) pages people by SMS for what they return, because triage
never imports ivr (DESIGN §3).

Clinical/queueing sources: the target time-to-nurse per acuity level is the clinic's
(`Clinic.target_seconds`, CTAS 2016 defaults); DESIGN §5: "a case past its target time is escalated
(supervisor alert, on-call page)".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.db import transaction
from django.utils import timezone

from careline import metrics
from clinics import events
from clinics.models import Clinic, StaffMember
from triage.models import Case, CaseEvent, CaseState, SurgeEpisode
from triage.services import case_add_event

LEVELS = (1, 2, 3, 4, 5)


def cases_escalate_overdue(*, clinic: Clinic, now: datetime | None = None) -> list[Case]:
    """Escalate, once, every queued case of `clinic` waiting longer than its level's target time.

    A case is overdue when `now - arrived_at > clinic.target_seconds(acuity)` (seconds). Cases already
    escalated, and callback cases waiting for their next attempt (`callback_due_at` set: their loop has its
    own escalation, `triage.callbacks`), are left alone. Each escalated case gets `escalated=True`,
    `escalated_at=now`, a timeline entry, and the supervisor-only event `case.escalated`. Returns the cases
    escalated by this call (the caller pages the on-call clinician once for each). Safe to run
    concurrently and repeatedly: rows are locked with SKIP LOCKED and the flag is checked under the lock.
    """
    now = now or timezone.now()
    escalated: list[Case] = []
    with transaction.atomic():
        for level in LEVELS:
            target = clinic.target_seconds(level)
            overdue = (
                Case.objects.select_for_update(skip_locked=True)
                .filter(
                    clinic=clinic,
                    state=CaseState.QUEUED,
                    acuity=level,
                    escalated=False,
                    callback_due_at__isnull=True,
                    arrived_at__lt=now - timedelta(seconds=target),
                )
                .order_by("arrived_at")
            )
            for case in overdue:
                assert case.arrived_at is not None
                waited = int((now - case.arrived_at).total_seconds())
                case.escalated = True
                case.escalated_at = now
                case.save(update_fields=["escalated", "escalated_at"])
                case_add_event(
                    case=case,
                    kind=CaseEvent.Kind.ESCALATED,
                    summary=f"Escalated: waited {waited // 60} min, target for level {level} is {target // 60} min",
                    detail={"reason": "past_target", "waited_seconds": waited, "target_seconds": target},
                )
                events.publish(
                    clinic.pk, "case.escalated", {"case_id": case.pk, "acuity": level, "reason": "past_target"}
                )
                transaction.on_commit(partial(metrics.record_escalation, clinic_slug=clinic.slug, reason="past_target"))
                escalated.append(case)
    return escalated


def estimated_wait_seconds(*, clinic: Clinic, acuity: int, nurses_working: int) -> float:
    """Estimated wait (seconds) of a new case of level `acuity` in `clinic`.

    `(queued cases of this level and more urgent) * clinic.mean_handle_seconds / nurses_working`: the work
    ahead of it shared by the nurses at their consoles. With no nurse working the wait is unbounded
    (`inf`) as soon as one case waits, and 0 when none does.
    """
    ahead = Case.objects.filter(clinic=clinic, state=CaseState.QUEUED, acuity__lte=acuity).count()
    if ahead == 0:
        return 0.0
    if nurses_working <= 0:
        return float("inf")
    return ahead * clinic.mean_handle_seconds / nurses_working


@dataclass(frozen=True)
class SurgeStart:
    """A new surge episode and the off-shift staff to page for it (nurses with a phone number)."""

    episode: SurgeEpisode
    to_page: tuple[StaffMember, ...]


@transaction.atomic
def surge_evaluate(*, clinic: Clinic, nurses_working: int, now: datetime | None = None) -> list[SurgeStart]:
    """Open or close surge episodes of `clinic`, one per acuity level 2-5; returns the episodes opened now.

    A level surges when `estimated_wait_seconds` exceeds `clinic.surge_wait_threshold_seconds`. An episode is
    opened once (constraint: one open episode per clinic and level) and closed when the estimate falls back
    to the threshold or below, so off-shift nurses are paged once per episode, never on every sweep. When
    several levels start surging in one call, only the most urgent one carries the staff to page (one page
    per person per sweep). Publishes the supervisor-only event `surge.started`. `nurses_working` is the
    number of nurses at their consoles (available, busy or in wrap-up).
    """
    now = now or timezone.now()
    Clinic.objects.select_for_update().filter(pk=clinic.pk).first()  # serialise sweeps of one clinic
    open_episodes = {e.acuity: e for e in SurgeEpisode.objects.filter(clinic=clinic, ended_at__isnull=True)}
    started: list[SurgeStart] = []
    paged_now = False
    for level in LEVELS[1:]:
        wait = estimated_wait_seconds(clinic=clinic, acuity=level, nurses_working=nurses_working)
        surging = wait > clinic.surge_wait_threshold_seconds
        episode = open_episodes.get(level)
        if surging and episode is None:
            staff: tuple[StaffMember, ...] = ()
            if not paged_now:
                staff = tuple(
                    StaffMember.objects.filter(clinic=clinic, role=StaffMember.Role.NURSE, on_shift=False)
                    .exclude(phone="")
                    .select_related("user")
                    .order_by("pk")
                )
                paged_now = True
            wait_stored = min(int(wait), 2**31 - 1) if wait != float("inf") else 2**31 - 1
            episode = SurgeEpisode.objects.create(
                clinic=clinic, acuity=level, started_at=now, estimated_wait_seconds=wait_stored, paged=len(staff)
            )
            events.publish(
                clinic.pk,
                "surge.started",
                {"acuity": level, "estimated_wait_seconds": wait_stored, "paged": len(staff)},
            )
            started.append(SurgeStart(episode=episode, to_page=staff))
        elif not surging and episode is not None:
            episode.ended_at = now
            episode.save(update_fields=["ended_at"])
    return started


@transaction.atomic
def case_return_to_queue(*, case_id: int, clinic: Clinic, reason: str, summary: str) -> Case | None:
    """Return a `reserved` case to the queue with its original `arrived_at` (its place in line is kept).

    Used by reconciliation when the reserving nurse's console is gone. Returns None (and changes nothing)
    when the case is no longer reserved. Writes a `reconciled` timeline entry and publishes `case.requeued`
    with `reason`.
    """
    case = Case.objects.select_for_update().filter(pk=case_id, clinic=clinic).first()
    if case is None or case.state != CaseState.RESERVED:
        return None
    previous = case.reserved_by_id
    case.state = CaseState.QUEUED
    case.reserved_by = None
    case.reserved_at = None
    case.reservation_expires_at = None
    case.save(update_fields=["state", "reserved_by", "reserved_at", "reservation_expires_at"])
    case_add_event(
        case=case, kind=CaseEvent.Kind.RECONCILED, summary=summary, detail={"reason": reason, "nurse_id": previous}
    )
    events.publish(clinic.pk, "case.requeued", {"case_id": case.pk, "reason": reason})
    return case


@transaction.atomic
def case_reconcile_hold_ended(*, case_id: int, clinic_id: int, summary: str) -> Case | None:
    """A case still marked "holding on the line" whose call has ended: switch it to callback (place kept).

    Returns None when nothing needed repair (the case is closed or no longer holding, or is not a case of
    clinic `clinic_id`). Writes a `reconciled` timeline entry and publishes `case.updated`.
    """
    case = Case.objects.select_for_update().filter(pk=case_id, clinic_id=clinic_id).first()
    if (
        case is None
        or case.contact_preference != Case.ContactPreference.HOLD
        or case.state not in (CaseState.QUEUED, CaseState.RESERVED, CaseState.IN_PROGRESS)
    ):
        return None
    case.contact_preference = Case.ContactPreference.CALLBACK
    case.save(update_fields=["contact_preference"])
    case_add_event(
        case=case, kind=CaseEvent.Kind.RECONCILED, summary=summary, detail={"reason": "call_ended_while_holding"}
    )
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["contact_preference"]})
    return case
