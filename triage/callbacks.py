"""Closed-loop callbacks: every attempt to call a patient back is recorded, and the loop always closes.

Rule (issue 3, clinic-configurable): a callback case is attempted up to `clinic.callback_max_attempts`
times, `clinic.callback_spacing_seconds` apart. An unanswered attempt (no answer, voicemail) before the last
returns the case to the queue with its original `arrived_at` (its place in line is kept) but not claimable
until `callback_due_at`. After the last unanswered attempt, or a wrong number, the case is escalated: it
stays with the nurse, who must still record a disposition, and the caller of this service (the console
orchestrator, `contactcenter.callbacks`) texts the patient (except for a wrong number) and pages the on-call
clinician.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from careline import metrics
from clinics import events
from clinics.models import Clinic
from triage.exceptions import InvalidTransition, NotYourCase
from triage.models import CallbackAttempt, Case, CaseEvent, CaseState
from triage.services import case_add_event

if TYPE_CHECKING:
    from django.contrib.auth.models import User

UNANSWERED = frozenset({CallbackAttempt.Result.NO_ANSWER, CallbackAttempt.Result.VOICEMAIL})


@dataclass(frozen=True)
class CallbackOutcome:
    """What a recorded attempt led to.

    `requeued`: back in the queue until `case.callback_due_at`; `exhausted`: the loop is closed by SMS and
    an on-call page (`notify_patient` False for a wrong number: the number reaches someone else).
    """

    case: Case
    attempt: CallbackAttempt
    requeued: bool
    exhausted: bool
    notify_patient: bool


@transaction.atomic
def callback_attempt_record(
    *, case_id: int, clinic: Clinic, nurse: User, result: str, now: datetime | None = None
) -> CallbackOutcome:
    """Record one callback attempt of `nurse` on a case she holds (reserved or in progress).

    `result` is a `CallbackAttempt.Result` value (ValueError otherwise). Answered: the case is in progress
    with her. Unanswered and attempts left: back to the queue, place kept, due again after the clinic's
    spacing (seconds). Last unanswered attempt or wrong number: escalated (`escalated_at`, timeline entry,
    supervisor-only `case.escalated` with reason `callback_unreached`), still held by the nurse for the
    disposition. Raises Case.DoesNotExist (other clinic / unknown), NotYourCase, InvalidTransition.
    """
    if result not in CallbackAttempt.Result.values:
        raise ValueError(f"unknown callback result {result!r}")
    now = now or timezone.now()
    case = Case.objects.select_for_update().get(pk=case_id, clinic=clinic)
    if case.reserved_by_id != nurse.pk:
        raise NotYourCase(f"case {case_id} is not held by you")
    if case.state not in (CaseState.RESERVED, CaseState.IN_PROGRESS):
        raise InvalidTransition(f"cannot record a callback attempt on a case in state {case.state}")
    number = CallbackAttempt.objects.filter(case=case).count() + 1
    attempt = CallbackAttempt.objects.create(
        case=case, clinic=clinic, nurse=nurse, number=number, result=result, at=now
    )
    label = CallbackAttempt.Result(result).label
    limit = clinic.callback_max_attempts
    exhausted = result == CallbackAttempt.Result.WRONG_NUMBER or (result in UNANSWERED and number >= limit)
    requeued = result in UNANSWERED and not exhausted
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.CALLBACK_ATTEMPT,
        summary=f"Callback attempt {number} of {limit}: {label}",
        detail={"number": number, "result": result},
        actor=nurse,
    )
    if requeued:
        case.state = CaseState.QUEUED
        case.reserved_by = None
        case.reserved_at = None
        case.reservation_expires_at = None
        case.accepted_at = None
        case.contact_preference = Case.ContactPreference.CALLBACK
        case.callback_due_at = now + timedelta(seconds=clinic.callback_spacing_seconds)
        case.save()
        events.publish(clinic.pk, "case.requeued", {"case_id": case.pk, "reason": "callback_unanswered"})
    else:
        if case.state == CaseState.RESERVED:
            case.state = CaseState.IN_PROGRESS
            case.accepted_at = now
            case.reservation_expires_at = None
        case.callback_due_at = None
        if exhausted and not case.escalated:
            case.escalated = True
            case.escalated_at = now
        case.save()
        if exhausted:
            why = "wrong number" if result == CallbackAttempt.Result.WRONG_NUMBER else f"{number} unanswered attempts"
            case_add_event(
                case=case,
                kind=CaseEvent.Kind.ESCALATED,
                summary=f"Patient not reached ({why}): on-call clinician paged; record a disposition",
                detail={"reason": "callback_unreached", "attempts": number},
            )
            events.publish(
                clinic.pk, "case.escalated", {"case_id": case.pk, "acuity": case.acuity, "reason": "callback_unreached"}
            )
            slug = clinic.slug
            transaction.on_commit(lambda: metrics.record_escalation(clinic_slug=slug, reason="callback_unreached"))
    events.publish(clinic.pk, "callback.attempted", {"case_id": case.pk, "number": number, "result": result})
    return CallbackOutcome(
        case=case,
        attempt=attempt,
        requeued=requeued,
        exhausted=exhausted,
        notify_patient=exhausted and result != CallbackAttempt.Result.WRONG_NUMBER,
    )
