"""Escalation orchestration: the triage decisions plus the SMS pages they call for.

triage decides and records (`triage.escalation`, `triage.callbacks`, never importing ivr); this module,
which may import both (DESIGN §3), writes the pages to the SMS outbox (`ivr.services.messages`) in the same
transaction as the decision, so a case is escalated and its page recorded together or not at all (an
escalated case is therefore paged exactly once). Reconciliation of reservations and holding callers with
the live state (presence, `ivr.CallLeg`) lives here too.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from clinics.models import Clinic, StaffMember
from clinics.selectors import staff_for_user
from contactcenter.models import AgentPresence
from contactcenter.presence import WORKING_STATES
from contactcenter.services import refusals_audited
from ehr.phone import InvalidPhoneNumber, to_e164
from ivr import prompts
from ivr.models import CallLeg
from ivr.services.messages import outbound_message_record
from triage import escalation as triage_escalation
from triage.callbacks import CallbackOutcome, callback_attempt_record
from triage.models import Case, CaseState

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def _page_on_call(*, case: Case, body: str) -> None:
    outbound_message_record(
        clinic=case.clinic, case=case, to=case.clinic.on_call_number, body=body, purpose="On-call page"
    )


def nurses_working(*, clinic: Clinic) -> int:
    """Nurses of `clinic` at their consoles (presence available, busy or wrap-up)."""
    return AgentPresence.objects.filter(
        clinic=clinic, state__in=WORKING_STATES, user__staff__role=StaffMember.Role.NURSE
    ).count()


def escalation_sweep_clinic(*, clinic: Clinic, now: datetime | None = None) -> dict[str, int]:
    """One clinic's escalation sweep: overdue cases (alert + one on-call page each) and surge paging.

    Returns `{"escalated", "surges", "surge_pages"}`. One transaction: decisions and pages commit together.
    """
    now = now or timezone.now()
    with transaction.atomic():
        escalated = triage_escalation.cases_escalate_overdue(clinic=clinic, now=now)
        for case in escalated:
            case.clinic = clinic
            _page_on_call(
                case=case, body=prompts.PAGE_PAST_TARGET.format(clinic=clinic.name, case_id=case.pk, acuity=case.acuity)
            )
        starts = triage_escalation.surge_evaluate(clinic=clinic, nurses_working=nurses_working(clinic=clinic), now=now)
        pages = 0
        for start in starts:
            wait = start.episode.estimated_wait_seconds
            body = prompts.PAGE_SURGE.format(clinic=clinic.name, acuity=start.episode.acuity, minutes=wait // 60)
            for member in start.to_page:
                outbound_message_record(clinic=clinic, case=None, to=member.phone, body=body, purpose="Surge page")
                pages += 1
    if escalated or starts:
        logger.info(
            "escalation sweep clinic %s: %d escalated, %d surge(s), %d page(s)",
            clinic.pk,
            len(escalated),
            len(starts),
            pages,
        )
    return {"escalated": len(escalated), "surges": len(starts), "surge_pages": pages}


def escalation_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Every clinic's escalation sweep (Celery beat, every 30 s); returns the summed counts."""
    totals = {"escalated": 0, "surges": 0, "surge_pages": 0}
    for clinic in Clinic.objects.order_by("pk"):
        for key, value in escalation_sweep_clinic(clinic=clinic, now=now).items():
            totals[key] += value
    return totals


def callback_attempt(*, user: User, case_id: int, result: str) -> CallbackOutcome:
    """Record the user's callback attempt on a case she holds (`triage.callbacks.callback_attempt_record`).

    When the loop is exhausted, in the same transaction: the patient gets an SMS asking them to call the
    clinic's number (not for a wrong number, or a caller ID that is no phone number) and the on-call
    clinician is paged. Raises NotStaff, Case.DoesNotExist, NotYourCase, InvalidTransition, ValueError (the
    first two audited as `access.denied`, `contactcenter.services.refusals_audited`).
    """
    staff = staff_for_user(user)
    with refusals_audited(staff=staff, user=user, object_type="case", object_id=case_id):
        return _callback_attempt(staff=staff, user=user, case_id=case_id, result=result)


@transaction.atomic
def _callback_attempt(*, staff: StaffMember, user: User, case_id: int, result: str) -> CallbackOutcome:
    outcome = callback_attempt_record(case_id=case_id, clinic=staff.clinic, nurse=user, result=result)
    if outcome.exhausted:
        case = outcome.case
        case.clinic = staff.clinic
        if outcome.notify_patient:
            try:
                number = to_e164(case.callback_number)
            except InvalidPhoneNumber:
                number = ""
            if number:
                body = prompts.text(
                    "sms_callback_unreached",
                    case.language,
                    clinic=staff.clinic.name,
                    number=prompts.spoken_number(staff.clinic.twilio_number),
                )
                outbound_message_record(
                    clinic=staff.clinic, case=case, to=number, body=body, purpose="SMS to the unreached patient"
                )
        _page_on_call(
            case=case,
            body=prompts.PAGE_CALLBACK_UNREACHED.format(
                clinic=staff.clinic.name, case_id=case.pk, acuity=case.acuity, attempts=outcome.attempt.number
            ),
        )
    return outcome


def reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """Repair cases whose state disagrees with the live state; returns `{"requeued", "to_callback"}`.

    - A `reserved` case whose nurse's console presence is `offline` (her sockets are gone): back to the
      queue with its place kept (`triage.escalation.case_return_to_queue`). Nurses with no presence row
      (API-only clients) are left to the reservation expiry.
    - A case still marked "holding on the line" whose `CallLeg` has ended (a status callback was processed
      but the case was not switched, or the switch was lost): switched to callback, place kept.
    Each repair is written on the case's timeline (`reconciled`). Safe to repeat.
    """
    counts = {"requeued": 0, "to_callback": 0}
    reserved = Case.objects.filter(state=CaseState.RESERVED, reserved_by__presence__state=AgentPresence.State.OFFLINE)
    for case in reserved.select_related("clinic"):
        if triage_escalation.case_return_to_queue(
            case_id=case.pk,
            clinic=case.clinic,
            reason="nurse_offline",
            summary="Reconciled: the reserving nurse's console is offline; back in queue, place kept",
        ):
            counts["requeued"] += 1
    holding = CallLeg.objects.filter(
        ended_at__isnull=False,
        case__contact_preference=Case.ContactPreference.HOLD,
        case__state__in=[CaseState.QUEUED, CaseState.RESERVED, CaseState.IN_PROGRESS],
    ).values_list("case_id", "clinic_id")
    for case_id, clinic_id in list(holding):
        if triage_escalation.case_reconcile_hold_ended(
            case_id=case_id,
            clinic_id=clinic_id,
            summary="Reconciled: the call ended while marked holding; switched to callback",
        ):
            counts["to_callback"] += 1
    if any(counts.values()):
        logger.info("reconciliation: %s", counts)
    return counts
