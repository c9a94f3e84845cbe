"""State-changing operations on triage cases, one function per use case.

Every function runs in a transaction, timestamps its transition, appends to the case timeline
(`CaseEvent`) and announces the change to consoles through `clinics.events.publish` (after commit).
Row locks: a service locks at most the case rows it changes, with `SELECT ... FOR UPDATE` (SKIP LOCKED for
claims), so concurrent claims never hand one case to two nurses.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from clinics import events
from clinics.models import Clinic
from triage import priority
from triage.dispositions import BY_CODE as DISPOSITIONS_BY_CODE
from triage.exceptions import InvalidTransition, NotYourCase, UnknownDisposition
from triage.models import Case, CaseEvent, CaseState
from triage.selectors import QueueDiscipline, queue_discipline

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def case_add_event(
    *, case: Case, kind: str, summary: str, detail: dict[str, Any] | None = None, actor: User | None = None
) -> CaseEvent:
    """Append one timeline entry to `case` (no state change)."""
    return CaseEvent.objects.create(
        case=case,
        clinic_id=case.clinic_id,
        kind=kind,
        summary=summary[:500],
        detail=detail or {},
        actor=actor if actor is not None and actor.is_authenticated else None,
    )


@transaction.atomic
def case_enqueue(
    *,
    clinic: Clinic,
    callback_number: str,
    acuity: int,
    language: str = "en",
    channel: str = Case.Channel.VOICE,
    protocol_code: str = "",
    protocol_version: str = "",
    answers: list[dict[str, Any]] | None = None,
    suggested_disposition: str = "",
    patient_fhir_id: str = "",
    patient_display: str = "",
    patient_birth_date: date | None = None,
    ehr_context_pending: bool = False,
    contact_preference: str = Case.ContactPreference.CALLBACK,
) -> Case:
    """Create a case in state `queued` with `arrived_at = now` and announce `case.queued`.

    `acuity` is the CTAS level 1-5 (ValueError otherwise); `callback_number` E.164.
    """
    if not 1 <= int(acuity) <= 5:
        raise ValueError(f"acuity must be 1..5, got {acuity!r}")
    now = timezone.now()
    case = Case.objects.create(
        clinic=clinic,
        state=CaseState.QUEUED,
        channel=channel,
        language=language,
        callback_number=callback_number,
        acuity=acuity,
        protocol_code=protocol_code,
        protocol_version=protocol_version,
        answers=answers or [],
        suggested_disposition=suggested_disposition,
        patient_fhir_id=patient_fhir_id,
        patient_display=patient_display,
        patient_birth_date=patient_birth_date,
        ehr_context_pending=ehr_context_pending,
        contact_preference=contact_preference,
        arrived_at=now,
    )
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.ENQUEUED,
        summary=f"Queued at acuity {acuity}",
        detail={"acuity": acuity, "suggested_disposition": suggested_disposition},
    )
    events.publish(clinic.pk, "case.queued", {"case_id": case.pk, "acuity": acuity})
    return case


@transaction.atomic
def case_record_transfer(
    *,
    clinic: Clinic,
    callback_number: str,
    language: str,
    protocol_code: str,
    protocol_version: str,
    answers: list[dict[str, Any]],
    red_flags: list[str],
    suggested_disposition: str,
    patient_fhir_id: str = "",
    patient_display: str = "",
    patient_birth_date: date | None = None,
    ehr_context_pending: bool = False,
    transferred_to: str,
) -> Case:
    """Record a red-flag call: acuity 1, warm transfer to `transferred_to` (E.164), never queued.

    The case is created directly in state `transferred` so the call is documented without entering the
    nurse queue (DESIGN §5: red flags skip the queue).
    """
    now = timezone.now()
    case = Case.objects.create(
        clinic=clinic,
        state=CaseState.TRANSFERRED,
        language=language,
        callback_number=callback_number,
        acuity=1,
        protocol_code=protocol_code,
        protocol_version=protocol_version,
        answers=answers,
        red_flags=red_flags,
        suggested_disposition=suggested_disposition,
        patient_fhir_id=patient_fhir_id,
        patient_display=patient_display,
        patient_birth_date=patient_birth_date,
        transferred_at=now,
        escalated=True,
        ehr_context_pending=ehr_context_pending,
    )
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.TRANSFERRED,
        summary="Red flag: emergency advice given, warm transfer to the on-call line",
        detail={"red_flags": red_flags, "to": transferred_to},
    )
    events.publish(clinic.pk, "case.transferred", {"case_id": case.pk})
    return case


@dataclass(frozen=True)
class _Head:
    """A per-level queue head as read without locks (for ranking only)."""

    pk: int
    acuity: int
    arrived_at: datetime | None


def _open_case_of(nurse: User, clinic: Clinic) -> Case | None:
    return (
        Case.objects.select_for_update()
        .filter(clinic=clinic, reserved_by=nurse, state__in=[CaseState.RESERVED, CaseState.IN_PROGRESS])
        .order_by("reserved_at")
        .first()
    )


# Per-process memo of each clinic's queue discipline: the load estimate spans an hour, so recomputing it on
# every claim would add three queries to the hottest path for no benefit. Keyed by the clinic's queueing
# configuration too, so an admin's change of rates or threshold applies at once. Nothing else relies on it.
_discipline_memo: dict[tuple[int, str], tuple[float, QueueDiscipline]] = {}
_discipline_memo_lock = threading.Lock()


def claim_discipline(*, clinic: Clinic, now: datetime | None = None) -> QueueDiscipline:
    """`queue_discipline` as claims use it: reused for `TRIAGE_DISCIPLINE_CACHE_SECONDS` (default 15; 0 = off)."""
    ttl = float(getattr(settings, "TRIAGE_DISCIPLINE_CACHE_SECONDS", 15))
    if ttl <= 0:
        return queue_discipline(clinic=clinic, now=now)
    config = json.dumps([clinic.accumulation_rates, clinic.kpi_targets, clinic.overload_threshold], sort_keys=True)
    key = (clinic.pk, config)
    clock = time.monotonic()
    with _discipline_memo_lock:
        hit = _discipline_memo.get(key)
    if hit is not None and hit[0] > clock:
        return hit[1]
    discipline = queue_discipline(clinic=clinic, now=now)
    with _discipline_memo_lock:
        _discipline_memo[key] = (clock + ttl, discipline)
    return discipline


@transaction.atomic
def case_claim_next(*, clinic: Clinic, nurse: User, now: datetime | None = None) -> Case | None:
    """Reserve the head of `clinic`'s queue for `nurse`; None when the queue is empty.

    The head is the best of the per-level heads under the clinic's queue discipline (`claim_discipline`):
    accumulating priority with the clinic's tuned rates (`Clinic.accumulation_rates`, else 1 / target), or
    strict priority while the offered load is at or above `Clinic.overload_threshold`
    (`triage.selectors.queue_discipline`). The levels are ranked from an unlocked read of their heads; then,
    in that order, one
    `SELECT ... WHERE acuity = k ORDER BY arrived_at LIMIT 1 FOR UPDATE SKIP LOCKED` locks exactly one row.
    Concurrent claims therefore lock different rows, never return the same case, and a nurse gets nothing
    only when every queued case is locked or taken. A nurse who already holds a reserved or in-progress
    case gets that case back instead of a second one. The reservation expires after
    `TRIAGE_RESERVATION_SECONDS` unless accepted (`case_accept`).
    """
    now = now or timezone.now()
    existing = _open_case_of(nurse, clinic)
    if existing is not None:
        return existing
    queued = Case.objects.filter(clinic=clinic, state=CaseState.QUEUED)
    # The five per-level heads in one round trip: UNION ALL of one index-ordered LIMIT 1 per level.
    per_level = [
        queued.filter(acuity=level).order_by("arrived_at", "pk").values("pk", "acuity", "arrived_at")[:1]
        for level in range(1, 6)
    ]
    if connection.features.supports_slicing_ordering_in_compound:
        rows = list(per_level[0].union(*per_level[1:], all=True))
    else:  # SQLite (embedded run): no LIMIT inside a compound statement
        rows = [row for qs in per_level for row in qs]
    heads = [_Head(**row) for row in rows]
    discipline = claim_discipline(clinic=clinic, now=now)
    chosen: Case | None = None
    for head in priority.ranked(heads, rates=discipline.rates, now=now, mode=discipline.mode):
        chosen = (
            queued.filter(acuity=head.acuity).order_by("arrived_at", "pk").select_for_update(skip_locked=True).first()
        )
        if chosen is not None:
            break
    if chosen is None:
        return None
    chosen.state = CaseState.RESERVED
    chosen.reserved_by = nurse
    chosen.reserved_at = now
    chosen.reservation_expires_at = now + timedelta(seconds=settings.TRIAGE_RESERVATION_SECONDS)
    chosen.save(update_fields=["state", "reserved_by", "reserved_at", "reservation_expires_at"])
    case_add_event(
        case=chosen,
        kind=CaseEvent.Kind.RESERVED,
        summary=f"Reserved by {_name(nurse)}",
        actor=nurse,
        detail={
            "wait_seconds": int((now - chosen.arrived_at).total_seconds()) if chosen.arrived_at else None,
            "discipline": str(discipline.mode),
        },
    )
    events.publish(clinic.pk, "case.reserved", {"case_id": chosen.pk, "nurse_id": nurse.pk})
    return chosen


def _lock_own_case(*, case_id: int, clinic: Clinic, nurse: User) -> Case:
    case = Case.objects.select_for_update().get(pk=case_id, clinic=clinic)
    if case.reserved_by_id != nurse.pk:
        raise NotYourCase(f"case {case_id} is not reserved by you")
    return case


@transaction.atomic
def case_accept(*, case_id: int, clinic: Clinic, nurse: User) -> Case:
    """Accept a reservation: `reserved -> in_progress`. Accepting one's own in-progress case is a no-op.

    Raises Case.DoesNotExist (other clinic or unknown id), NotYourCase, InvalidTransition.
    """
    case = _lock_own_case(case_id=case_id, clinic=clinic, nurse=nurse)
    if case.state == CaseState.IN_PROGRESS:
        return case
    if case.state != CaseState.RESERVED:
        raise InvalidTransition(f"cannot accept a case in state {case.state}")
    case.state = CaseState.IN_PROGRESS
    case.accepted_at = timezone.now()
    case.reservation_expires_at = None
    case.save(update_fields=["state", "accepted_at", "reservation_expires_at"])
    case_add_event(case=case, kind=CaseEvent.Kind.ACCEPTED, summary=f"Accepted by {_name(nurse)}", actor=nurse)
    events.publish(clinic.pk, "case.accepted", {"case_id": case.pk, "nurse_id": nurse.pk})
    return case


def _requeue(case: Case, *, reason: str, summary: str, actor: User | None = None) -> None:
    """Back to `queued`, keeping `arrived_at` (the caller keeps their place in line)."""
    case.state = CaseState.QUEUED
    case.reserved_by = None
    case.reserved_at = None
    case.reservation_expires_at = None
    case.save(update_fields=["state", "reserved_by", "reserved_at", "reservation_expires_at"])
    case_add_event(case=case, kind=CaseEvent.Kind.RESERVATION_EXPIRED, summary=summary, actor=actor)
    events.publish(case.clinic_id, "case.requeued", {"case_id": case.pk, "reason": reason})


@transaction.atomic
def case_release(*, case_id: int, clinic: Clinic, nurse: User) -> Case:
    """The nurse hands a reserved case back to the queue (original arrival time kept)."""
    case = _lock_own_case(case_id=case_id, clinic=clinic, nurse=nurse)
    if case.state != CaseState.RESERVED:
        raise InvalidTransition(f"cannot release a case in state {case.state}")
    _requeue(case, reason="released", summary=f"Released by {_name(nurse)}", actor=nurse)
    return case


def case_expire_reservations(*, now: datetime | None = None) -> int:
    """Return every reservation past `reservation_expires_at` to the queue; returns how many.

    Each case keeps its original `arrived_at`, so it regains its place (DESIGN §5). Safe to run
    concurrently (SKIP LOCKED) and repeatedly.
    """
    now = now or timezone.now()
    count = 0
    with transaction.atomic():
        expired = Case.objects.select_for_update(skip_locked=True).filter(
            state=CaseState.RESERVED, reservation_expires_at__lt=now
        )
        for case in expired:
            _requeue(case, reason="reservation_expired", summary="Reservation not accepted in time; back in queue")
            count += 1
    return count


@transaction.atomic
def case_complete(*, case_id: int, clinic: Clinic, nurse: User, disposition_code: str, note: str = "") -> Case:
    """Record the nurse-confirmed disposition and note, then wrap up and close the case.

    Allowed from `reserved` or `in_progress` by the nurse who holds the case (a reserved case is accepted
    implicitly). Timestamps `wrap_up_at` and `closed_at`. Raises UnknownDisposition, NotYourCase,
    InvalidTransition, Case.DoesNotExist. The caller adds the EHR write-back in the same transaction.
    """
    if disposition_code not in DISPOSITIONS_BY_CODE:
        raise UnknownDisposition(disposition_code)
    case = _lock_own_case(case_id=case_id, clinic=clinic, nurse=nurse)
    if case.state not in (CaseState.RESERVED, CaseState.IN_PROGRESS, CaseState.WRAP_UP):
        raise InvalidTransition(f"cannot record a disposition on a case in state {case.state}")
    now = timezone.now()
    if case.accepted_at is None:
        case.accepted_at = now
    case.disposition = disposition_code
    case.note = note
    case.wrap_up_at = case.wrap_up_at or now
    case.closed_at = now
    case.state = CaseState.CLOSED
    case.reservation_expires_at = None
    case.save()
    display = DISPOSITIONS_BY_CODE[disposition_code].display
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.DISPOSITION,
        summary=f"Disposition: {display}",
        detail={"disposition": disposition_code, "has_note": bool(note)},
        actor=nurse,
    )
    events.publish(clinic.pk, "case.closed", {"case_id": case.pk, "disposition": disposition_code})
    return case


@transaction.atomic
def case_set_contact_preference(*, case_id: int, preference: str, reason: str = "") -> Case:
    """Switch a case between holding on the line and callback; the place in line is kept."""
    case = Case.objects.select_for_update().get(pk=case_id)
    if case.contact_preference != preference:
        case.contact_preference = preference
        case.save(update_fields=["contact_preference"])
        label = Case.ContactPreference(preference).label
        case_add_event(case=case, kind=CaseEvent.Kind.CALL, summary=f"{label}{': ' + reason if reason else ''}")
        events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["contact_preference"]})
    return case


@transaction.atomic
def case_attach_patient(
    *, case_id: int, patient_fhir_id: str, patient_display: str, patient_birth_date: date | None
) -> Case:
    """Fill in the patient of a case whose EHR lookup was pending; clears `ehr_context_pending`."""
    case = Case.objects.select_for_update().get(pk=case_id)
    case.patient_fhir_id = patient_fhir_id
    case.patient_display = patient_display
    case.patient_birth_date = patient_birth_date or case.patient_birth_date
    case.ehr_context_pending = False
    case.save(update_fields=["patient_fhir_id", "patient_display", "patient_birth_date", "ehr_context_pending"])
    case_add_event(case=case, kind=CaseEvent.Kind.EHR, summary="Patient identified in the EHR after the call")
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["patient"]})
    return case


@transaction.atomic
def case_clear_ehr_pending(*, case_id: int, summary: str) -> Case:
    """The EHR answered but holds no matching patient: stop retrying; the case stays unidentified."""
    case = Case.objects.select_for_update().get(pk=case_id)
    case.ehr_context_pending = False
    case.save(update_fields=["ehr_context_pending"])
    case_add_event(case=case, kind=CaseEvent.Kind.EHR, summary=summary)
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["ehr_context_pending"]})
    return case


def _name(user: User) -> str:
    return user.get_full_name() or user.get_username()
