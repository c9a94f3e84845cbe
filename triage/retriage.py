"""Re-triage while waiting: a holding caller whose symptoms got worse answers the protocol again.

Only the questions that could change the outcome are asked: those of the case's protocol whose "yes"
implies a more urgent acuity than the case has now, most serious first (red flags, acuity 1, first), and
the first "yes" decides (the field's protocol structure; `triage.protocols`). A red flag ends the wait:
emergency advice and a warm transfer to the on-call clinician (the case becomes `transferred`, DESIGN §5:
red flags skip the queue, and decision record 0001). Any other "yes" raises the case's acuity; its
arrival time is kept, so it now accrues priority at the more urgent level's rate from when it arrived.
A case without a protocol has nothing to re-ask (the caller is reminded to hang up and dial 911 in an
emergency; the IVR decides that wording).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from careline import metrics
from clinics import events
from clinics.models import Clinic
from triage.models import Case, CaseEvent, CaseState
from triage.protocols import Question, get_protocol
from triage.services import case_add_event

RETRIAGE_STATES = (CaseState.QUEUED, CaseState.RESERVED)


def retriage_questions(*, case: Case) -> list[Question]:
    """The questions to re-ask for `case`: its protocol's questions more urgent than its acuity, in order.

    Empty when the case has no protocol or an unknown one.
    """
    if not case.protocol_code:
        return []
    try:
        protocol = get_protocol(case.protocol_code)
    except KeyError:
        return []
    return [q for q in protocol.questions if q.acuity < case.acuity]


def _locked(case_id: int, clinic: Clinic) -> Case:
    # Scoped to the caller's clinic (the IVR knows it from the called number): a wrong id is DoesNotExist.
    return Case.objects.select_for_update().get(pk=case_id, clinic=clinic)


@transaction.atomic
def case_retriage_raise(*, case_id: int, clinic: Clinic, question: Question, answers: list[dict[str, Any]]) -> Case:
    """A "yes" to `question` while waiting: raise the case's acuity to `question.acuity` (2-5).

    `answers`: the re-triage answers `[{"question", "text", "answer"}]`, appended to the case's answers with
    `"retriage": True`. Never lowers acuity. A case no longer waiting (taken or closed meanwhile) keeps its
    acuity and only gets the answers and the timeline entry.
    Publishes `case.updated` with `fields: ["acuity"]`.
    """
    case = _locked(case_id, clinic)
    before = case.acuity
    case.answers = [*case.answers, *({**a, "retriage": True} for a in answers)]
    fields = ["answers"]
    if question.acuity < case.acuity and case.state in RETRIAGE_STATES:
        case.acuity = question.acuity
        case.suggested_disposition = question.disposition
        fields += ["acuity", "suggested_disposition"]
    case.save(update_fields=fields)
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.RETRIAGE,
        summary=f"Caller reported worse symptoms: acuity {before} -> {case.acuity}",
        detail={"question": question.id, "from": before, "to": case.acuity},
    )
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["acuity"]})
    return case


@transaction.atomic
def case_retriage_red_flag(
    *, case_id: int, clinic: Clinic, question: Question, answers: list[dict[str, Any]], transferred_to: str
) -> Case:
    """A red flag while waiting: the case leaves the queue as `transferred` to `transferred_to` (E.164).

    Acuity 1, the question added to `red_flags`, escalated (`escalated_at`), any reservation dropped.
    Timeline entry; publishes `case.transferred` and the supervisor-only `case.escalated` (reason
    `red_flag_while_waiting`), so a red flag never stays silently queued.
    """
    case = _locked(case_id, clinic)
    now = timezone.now()
    case.answers = [*case.answers, *({**a, "retriage": True} for a in answers)]
    case.red_flags = [*case.red_flags, question.id]
    case.acuity = 1
    case.suggested_disposition = question.disposition
    case.state = CaseState.TRANSFERRED
    case.transferred_at = now
    case.reserved_by = None
    case.reserved_at = None
    case.reservation_expires_at = None
    case.callback_due_at = None
    case.escalated = True
    case.escalated_at = case.escalated_at or now
    case.save()
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.TRANSFERRED,
        summary="Red flag while waiting: emergency advice given, warm transfer to the on-call line",
        detail={"red_flags": [question.id], "to": transferred_to, "retriage": True},
    )
    events.publish(case.clinic_id, "case.transferred", {"case_id": case.pk})
    events.publish(
        case.clinic_id, "case.escalated", {"case_id": case.pk, "acuity": 1, "reason": "red_flag_while_waiting"}
    )
    slug = case.clinic.slug
    transaction.on_commit(lambda: metrics.record_escalation(clinic_slug=slug, reason="red_flag_while_waiting"))
    return case


@transaction.atomic
def case_retriage_unchanged(*, case_id: int, clinic: Clinic, answers: list[dict[str, Any]]) -> Case:
    """Re-triage found nothing more urgent: record the answers and a timeline entry; the place is kept."""
    case = _locked(case_id, clinic)
    case.answers = [*case.answers, *({**a, "retriage": True} for a in answers)]
    case.save(update_fields=["answers"])
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.RETRIAGE,
        summary=f"Caller reported worse symptoms; re-triage found no change (acuity {case.acuity})",
        detail={"questions": [a["question"] for a in answers]},
    )
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["answers"]})
    return case
