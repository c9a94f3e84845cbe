"""State-changing operations on triage cases, one function per use case.

Every function runs in a transaction, timestamps its transition, appends to the case timeline
(`CaseEvent`) and announces the change to consoles through `clinics.events.publish` (after commit).
Row locks: a service locks at most the case rows it changes, with `SELECT ... FOR UPDATE` (SKIP LOCKED for
claims), so concurrent claims never hand one case to two nurses.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from careline import metrics
from clinics import events, roles
from clinics.models import Clinic, StaffMember
from clinics.selectors import NotStaff, staff_for_user
from triage import claiming, priority, risk, routing
from triage.dispositions import disposition_for
from triage.exceptions import InvalidOverride, InvalidTransition, NotYourCase, OverrideNotAllowed, UnknownDisposition
from triage.models import (
    OPEN_STATES,
    AcuityOverride,
    Case,
    CaseEvent,
    CaseState,
    Queue,
    RiskRuleSetting,
    RoutingLedgerEntry,
    RoutingRule,
)
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


def routing_ledger_add(
    *, case: Case, kind: str, reason: str, nurse: User | None = None, at: datetime | None = None
) -> RoutingLedgerEntry:
    """Append one routing ledger entry (`RoutingLedgerEntry.Kind`) to `case`; `reason` names rules, queues,
    skills and states only (no PHI)."""
    return RoutingLedgerEntry.objects.create(
        case=case, clinic_id=case.clinic_id, kind=kind, reason=reason[:500], nurse=nurse, at=at or timezone.now()
    )


def queue_default_for(*, clinic: Clinic) -> Queue:
    """The clinic's default queue ("General"), created on first use (clinics cannot import triage, so
    `clinic_create` cannot make it; a data migration made it for the clinics that existed)."""
    queue = Queue.objects.filter(clinic=clinic, is_default=True).first()
    if queue is None:
        queue, _ = Queue.objects.get_or_create(
            clinic=clinic, slug="general", defaults={"name": "General", "is_default": True}
        )
        if not queue.is_default:
            Queue.objects.filter(pk=queue.pk).update(is_default=True)
            queue.is_default = True
    return queue


def nurse_profile(*, nurse: User, clinic: Clinic) -> routing.NurseProfile:
    """The nurse's skills and licensed states in `clinic` (none when she is not staff of it)."""
    member = StaffMember.objects.filter(user_id=nurse.pk, clinic=clinic).values("skills", "licensed_states").first()
    if member is None:
        return routing.NurseProfile(skills=frozenset(), licensed_states=frozenset())
    return routing.NurseProfile(
        skills=frozenset(str(s).lower() for s in member["skills"] or []),
        licensed_states=frozenset(str(s).upper() for s in member["licensed_states"] or []),
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
    protocol_version_id: int | None = None,
    answers: list[dict[str, Any]] | None = None,
    suggested_disposition: str = "",
    patient_fhir_id: str = "",
    patient_display: str = "",
    patient_birth_date: date | None = None,
    ehr_context_pending: bool = False,
    contact_preference: str = Case.ContactPreference.CALLBACK,
    caller_state: str = "",
) -> Case:
    """Create a case in state `queued` with `arrived_at = now`, route it, and announce `case.queued`.

    `acuity` is the CTAS level 1-5 (ValueError otherwise); `callback_number` E.164; `caller_state` the USPS
    code of the patient's address ("" when unknown). Routing (`triage.routing.route` over the clinic's rules,
    facts from these arguments, the age at arrival in the clinic's timezone and its business hours) sets the
    case's queue, required skills, licensure state, priority boost, escalation policy and fallback, and
    writes a `routed` ledger entry with the reason. `protocol_version_id` is the `ProtocolVersion` the caller
    was triaged with (None: no protocol, or the built-in library).
    """
    if not 1 <= int(acuity) <= 5:
        raise ValueError(f"acuity must be 1..5, got {acuity!r}")
    now = timezone.now()
    caller_state = (caller_state or "").strip().upper()
    in_hours = routing.is_business_hours(clinic, now)
    facts = routing.RoutingFacts(
        acuity=int(acuity),
        protocol_code=protocol_code,
        age_years=routing.age_in_years(patient_birth_date, timezone.localtime(now, ZoneInfo(clinic.timezone)).date()),
        language=language,
        identified=bool(patient_fhir_id),
        caller_state=caller_state,
        in_business_hours=in_hours,
    )
    decision = routing.route(
        facts,
        RoutingRule.objects.filter(clinic=clinic, enabled=True).select_related("target_queue", "fallback_queue"),
        default_queue=queue_default_for(clinic=clinic),
    )
    boost = decision.priority_boost_seconds
    case = Case.objects.create(
        clinic=clinic,
        state=CaseState.QUEUED,
        channel=channel,
        language=language,
        callback_number=callback_number,
        acuity=acuity,
        protocol_code=protocol_code,
        protocol_version=protocol_version,
        protocol_version_ref_id=protocol_version_id,
        answers=answers or [],
        suggested_disposition=suggested_disposition,
        patient_fhir_id=patient_fhir_id,
        patient_display=patient_display,
        patient_birth_date=patient_birth_date,
        ehr_context_pending=ehr_context_pending,
        contact_preference=contact_preference,
        arrived_at=now,
        caller_state=caller_state,
        in_business_hours=in_hours,
        queue=decision.queue,
        routing_rule=decision.rule,
        required_skills=list(decision.required_skills),
        required_license_state=decision.required_license_state,
        priority_boost_seconds=boost,
        priority_since=now - timedelta(seconds=boost) if boost else None,
        escalation_policy=decision.escalation_policy,
        fallback_action=decision.fallback_action,
        fallback_at=(
            now + timedelta(minutes=decision.fallback_after_minutes) if decision.fallback_after_minutes else None
        ),
        fallback_queue=decision.fallback_queue,
    )
    routing_ledger_add(case=case, kind=RoutingLedgerEntry.Kind.ROUTED, reason=decision.reason, at=now)
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
    protocol_version_id: int | None = None,
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
        protocol_version_ref_id=protocol_version_id,
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
    arrived_at: datetime | None  # the instant priority accrues from: arrival, minus the boost if any
    boosted: bool = False


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
# Per clinic id: (expiry on the monotonic clock, the configuration it was computed for, the discipline).
_discipline_memo: dict[int, tuple[float, tuple[Any, Any, Any], QueueDiscipline]] = {}
_discipline_memo_lock = threading.Lock()


def claim_discipline(*, clinic: Clinic, now: datetime | None = None) -> QueueDiscipline:
    """`queue_discipline` as claims use it: reused for `TRIAGE_DISCIPLINE_CACHE_SECONDS` (default 15; 0 = off).

    Staleness bound: a load change (e.g. the switch to strict priority under overload) reaches claims at most
    `TRIAGE_DISCIPLINE_CACHE_SECONDS` after the memo was filled, per process; a change of the clinic's
    `accumulation_rates`, `kpi_targets` or `overload_threshold` at the next claim (compared by value with the
    configuration the memo was computed for; a copy is kept, so an in-place edit is seen too).
    """
    ttl = float(getattr(settings, "TRIAGE_DISCIPLINE_CACHE_SECONDS", 15))
    if ttl <= 0:
        return queue_discipline(clinic=clinic, now=now)
    config = (clinic.accumulation_rates, clinic.kpi_targets, clinic.overload_threshold)
    clock = time.monotonic()
    hit = _discipline_memo.get(clinic.pk)  # a dict read is atomic under the GIL; writes take the lock
    if hit is not None and hit[0] > clock and hit[1] == config:
        return hit[2]
    # One thread per process recomputes (three read-only queries); the others wait for it instead of all
    # querying at once when the memo expires under load (50 claimers: 50 identical estimates).
    with _discipline_memo_lock:
        hit = _discipline_memo.get(clinic.pk)
        if hit is not None and hit[0] > time.monotonic() and hit[1] == config:
            return hit[2]
        discipline = queue_discipline(clinic=clinic, now=now)
        _discipline_memo[clinic.pk] = (clock + ttl, copy.deepcopy(config), discipline)
    return discipline


def case_claim_next(*, clinic: Clinic, nurse: User, now: datetime | None = None) -> Case | None:
    """Reserve the head of `clinic`'s queue for `nurse`; None when the queue is empty.

    The head is the best of the per-level heads under the clinic's queue discipline (`claim_discipline`):
    accumulating priority with the clinic's tuned rates (`Clinic.accumulation_rates`, else 1 / target), or
    strict priority while the offered load is at or above `Clinic.overload_threshold`
    (`triage.selectors.queue_discipline`). The levels are ranked from an unlocked read of their heads; then,
    in that order, the first case of a level's line that no other transaction holds is locked with
    `FOR UPDATE SKIP LOCKED`. Concurrent claims therefore lock different rows, never return the same case,
    and a nurse gets nothing only when every queued case she may take is locked or taken. A nurse who
    already holds a reserved or in-progress case gets that case back instead of a second one. The
    reservation expires after `TRIAGE_RESERVATION_SECONDS` unless accepted (`case_accept`).

    Writes the `reserved` timeline entry (detail: `discipline`), the `offered` routing ledger entry (its
    reason carries the wait in seconds), `skipped` entries for better-ranked heads the nurse may not take
    (`triage.routing`), and publishes `case.reserved` on commit. All of it is one transaction (the caller's,
    if it has one).

    On PostgreSQL (`triage.claiming`): one statement when the nurse holds no open case and no queued case
    has routing requirements (the common case), else two statements in a transaction. Other databases
    (SQLite, the embedded run) take the portable ORM path, which applies the same rules in more round trips.
    """
    now = now or timezone.now()
    if connection.vendor != "postgresql":
        with transaction.atomic():
            return _claim_next_portable(clinic=clinic, nurse=nurse, now=now)
    discipline = claim_discipline(clinic=clinic, now=now)
    name = _name(nurse)
    one = claiming.claim_in_one_statement(
        clinic_id=clinic.pk,
        nurse_id=nurse.pk,
        now=now,
        expires=now + timedelta(seconds=settings.TRIAGE_RESERVATION_SECONDS),
        rates=discipline.rates,
        strict=discipline.mode == priority.Mode.STRICT,
        summary=f"Reserved by {name}",
        offered_to=f"Offered to {name} after ",
        discipline=str(discipline.mode),
    )
    if one.case is not None:
        # Outside a transaction the statement has committed and this publishes at once; inside one, on commit.
        events.publish(clinic.pk, "case.reserved", {"case_id": one.case.pk, "nurse_id": nurse.pk})
        return _claim_counted(clinic=clinic, case=one.case, now=now)
    if not one.needs_full_path:
        return _claim_counted(clinic=clinic, case=None, now=now)
    with transaction.atomic():
        return _claim_next_postgresql(clinic=clinic, nurse=nurse, now=now)


def _claim_counted(*, clinic: Clinic, case: Case | None, now: datetime) -> Case | None:
    """Count one claim in the metrics (`careline.metrics.record_claim`: claimed or empty, and the case's wait
    to the nurse per acuity, on commit) and return `case`."""
    if case is None:
        metrics.record_claim(clinic_slug=clinic.slug, claimed=False)
        return None
    wait = (now - case.arrived_at).total_seconds() if case.arrived_at else None
    acuity = case.acuity
    transaction.on_commit(
        lambda: metrics.record_claim(clinic_slug=clinic.slug, claimed=True, wait_seconds=wait, acuity=acuity)
    )
    return case


def _queued_q(now: datetime) -> Q:
    # A callback case whose last attempt went unanswered keeps its place but is not due before `callback_due_at`.
    return Q(state=CaseState.QUEUED) & (Q(callback_due_at__isnull=True) | Q(callback_due_at__lte=now))


def _claim_next_postgresql(*, clinic: Clinic, nurse: User, now: datetime) -> Case | None:
    """`case_claim_next` in two statements (`triage.claiming`): read (open case, profile, heads), then claim.
    Any open case, any routing requirement. Run it in a transaction."""
    read = claiming.read_queue(clinic_id=clinic.pk, nurse_id=nurse.pk, now=now)
    if read.open_case_id is not None:
        existing = _open_case_of(nurse, clinic)
        if existing is not None:
            return existing
    discipline = claim_discipline(clinic=clinic, now=now)
    ranked = priority.ranked(read.heads, rates=discipline.rates, now=now, mode=discipline.mode)
    name = _name(nurse)
    chosen = claiming.claim_first_free(
        lines=[(head.acuity, head.boosted) for head in ranked],
        clinic_id=clinic.pk,
        nurse_id=nurse.pk,
        profile=read.profile,
        now=now,
        expires=now + timedelta(seconds=settings.TRIAGE_RESERVATION_SECONDS),
        summary=f"Reserved by {name}",
        offered_to=f"Offered to {name} after ",
        discipline=str(discipline.mode),
    )
    if read.restricted:
        line_head = (
            next(
                (h for h in ranked if h.acuity == chosen.acuity and h.boosted == (chosen.priority_boost_seconds > 0)),
                None,
            )
            if chosen is not None
            else None
        )
        # The ranking of the whole queue as it stood before this claim: the chosen case counts as queued.
        before = _queued_q(now) if chosen is None else _queued_q(now) | Q(pk=chosen.pk)
        _record_skips(
            Case.objects.filter(before, clinic=clinic),
            profile=read.profile,
            nurse=nurse,
            discipline=discipline,
            now=now,
            better_than_pk=line_head.pk if line_head is not None else None,
            boosted=True,
        )
    if chosen is None:
        return _claim_counted(clinic=clinic, case=None, now=now)
    events.publish(clinic.pk, "case.reserved", {"case_id": chosen.pk, "nurse_id": nurse.pk})
    return _claim_counted(clinic=clinic, case=chosen, now=now)


def _claim_next_portable(*, clinic: Clinic, nurse: User, now: datetime) -> Case | None:
    """`case_claim_next` through the ORM (any database; SQLite in the embedded run): one locking query per
    level line tried, then the save and the two log rows."""
    existing = _open_case_of(nurse, clinic)
    if existing is not None:
        return existing
    profile = nurse_profile(nurse=nurse, clinic=clinic)
    all_queued = Case.objects.filter(_queued_q(now), clinic=clinic)
    # Routing: only cases whose required skills and licensure state this nurse holds (triage.routing).
    queued = all_queued.filter(routing.eligibility_q(profile))
    # Two cheap probes on partial indexes keep the common case (no boosts, no requirements) at five head lookups.
    boosted = all_queued.filter(priority_boost_seconds__gt=0).exists()
    restricted = all_queued.filter(routing.RESTRICTED).exists()
    heads = _level_heads(queued, boosted=boosted)
    discipline = claim_discipline(clinic=clinic, now=now)
    chosen: Case | None = None
    chosen_head: _Head | None = None
    for head in priority.ranked(heads, rates=discipline.rates, now=now, mode=discipline.mode):
        chosen = _head_query(queued, head).select_for_update(skip_locked=True).first()
        if chosen is not None:
            chosen_head = head
            break
    if restricted:
        _record_skips(
            all_queued,
            profile=profile,
            nurse=nurse,
            discipline=discipline,
            now=now,
            better_than_pk=chosen_head.pk if chosen_head is not None else None,
            boosted=boosted,
        )
    if chosen is None:
        return _claim_counted(clinic=clinic, case=None, now=now)
    chosen.state = CaseState.RESERVED
    chosen.reserved_by = nurse
    chosen.reserved_at = now
    chosen.reservation_expires_at = now + timedelta(seconds=settings.TRIAGE_RESERVATION_SECONDS)
    chosen.save(update_fields=["state", "reserved_by", "reserved_at", "reservation_expires_at"])
    wait_seconds = int((now - chosen.arrived_at).total_seconds()) if chosen.arrived_at else None
    case_add_event(
        case=chosen,
        kind=CaseEvent.Kind.RESERVED,
        summary=f"Reserved by {_name(nurse)}",
        actor=nurse,
        detail={"discipline": str(discipline.mode)},  # the wait is in the offered ledger entry's reason
    )
    routing_ledger_add(
        case=chosen,
        kind=RoutingLedgerEntry.Kind.OFFERED,
        nurse=nurse,
        at=now,
        reason=f"Offered to {_name(nurse)} after {wait_seconds or 0} s"
        + (f" in {chosen.queue.name}" if chosen.queue_id and chosen.queue else ""),
    )
    events.publish(clinic.pk, "case.reserved", {"case_id": chosen.pk, "nurse_id": nurse.pk})
    return _claim_counted(clinic=clinic, case=chosen, now=now)


def _level_heads(queued: QuerySet[Case], *, boosted: bool) -> list[_Head]:
    """The per-level heads of `queued` in one round trip: for each level, the oldest unboosted case (by
    `arrived_at`) and the boosted case with the earliest `priority_since`; `_Head.arrived_at` is the instant
    the priority accrues from (arrival minus boost). `boosted=False` (no boosted case queued) leaves out the
    boosted lookups."""
    per_level = []
    for level in range(1, 6):
        at_level = queued.filter(acuity=level)
        per_level.append(
            at_level.filter(priority_boost_seconds=0)
            .order_by("arrived_at", "pk")
            .values_list("pk", "acuity", "arrived_at", "priority_boost_seconds")[:1]
        )
        if boosted:
            per_level.append(
                at_level.filter(priority_boost_seconds__gt=0)
                .order_by("priority_since", "pk")
                .values_list("pk", "acuity", "priority_since", "priority_boost_seconds")[:1]
            )
    if connection.features.supports_slicing_ordering_in_compound:
        rows = list(per_level[0].union(*per_level[1:], all=True))
    else:  # SQLite (embedded run): no LIMIT inside a compound statement
        rows = [row for qs in per_level for row in qs]
    return [_Head(pk=pk, acuity=acuity, arrived_at=since, boosted=boost > 0) for pk, acuity, since, boost in rows]


def _head_query(queued: QuerySet[Case], head: _Head) -> QuerySet[Case]:
    """The queryset whose first row is `head`'s line: the boosted or the unboosted cases of its level."""
    if head.boosted:
        return queued.filter(acuity=head.acuity, priority_boost_seconds__gt=0).order_by("priority_since", "pk")
    return queued.filter(acuity=head.acuity, priority_boost_seconds=0).order_by("arrived_at", "pk")


def _record_skips(
    all_queued: QuerySet[Case],
    *,
    profile: routing.NurseProfile,
    nurse: User,
    discipline: QueueDiscipline,
    now: datetime,
    better_than_pk: int | None,
    boosted: bool,
) -> None:
    """Ledger `skipped` for the head-of-line cases (per-level heads of the whole queue) that rank above what
    the nurse got but that she may not take, once per case and nurse. Costs one more round trip of index
    lookups; cases behind a head are not examined (recorded only what is cheap and true)."""
    ranked = priority.ranked(
        _level_heads(all_queued, boosted=boosted), rates=discipline.rates, now=now, mode=discipline.mode
    )
    ahead = (
        ranked
        if better_than_pk is None
        else ranked[: next((i for i, h in enumerate(ranked) if h.pk == better_than_pk), len(ranked))]
    )
    if not ahead:
        return
    cases = Case.objects.filter(pk__in=[h.pk for h in ahead]).only(
        "pk", "clinic_id", "required_skills", "required_license_state", "skills_relaxed_at"
    )
    already = set(
        RoutingLedgerEntry.objects.filter(
            case_id__in=[h.pk for h in ahead], kind=RoutingLedgerEntry.Kind.SKIPPED, nurse_id=nurse.pk
        ).values_list("case_id", flat=True)
    )
    for case in cases:
        if case.pk in already:
            continue
        why = routing.why_ineligible(
            required_skills=case.required_skills,
            required_license_state=case.required_license_state,
            skills_relaxed=case.skills_relaxed_at is not None,
            nurse=profile,
        )
        if why:
            routing_ledger_add(
                case=case,
                kind=RoutingLedgerEntry.Kind.SKIPPED,
                nurse=nurse,
                at=now,
                reason=f"Skipped for {_name(nurse)}: {why}",
            )


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
            nurse = case.reserved_by
            _requeue(case, reason="reservation_expired", summary="Reservation not accepted in time; back in queue")
            routing_ledger_add(
                case=case,
                kind=RoutingLedgerEntry.Kind.TIMEOUT,
                nurse=nurse,
                at=now,
                reason=f"Reservation by {_name(nurse) if nurse else 'a nurse'} not accepted in time; back in line",
            )
            count += 1
    return count


def case_apply_routing_fallbacks(*, now: datetime | None = None) -> int:
    """Apply the routing fallback of every queued case whose `fallback_at` has passed; returns how many.

    `relax_skills`: the skill requirement no longer restricts who is offered the case (`skills_relaxed_at`),
    ledger `relaxed`. `overflow`: the case moves to its `fallback_queue` and the skill requirement is
    relaxed likewise, ledger `overflowed`. The licensure state is never relaxed (see `triage.routing`). The
    case keeps its arrival time and place in line. Runs from Celery beat (`triage.tasks.apply_routing_fallbacks`);
    safe to run concurrently (SKIP LOCKED) and repeatedly (a case is relaxed once).
    """
    now = now or timezone.now()
    count = 0
    with transaction.atomic():
        due = (
            Case.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=CaseState.QUEUED, fallback_at__lte=now, skills_relaxed_at__isnull=True)
            .exclude(fallback_action="")
            .select_related("queue", "fallback_queue")
            .order_by("fallback_at", "pk")
        )
        for case in due:
            skills = ", ".join(case.required_skills) or "none"
            waited = int((now - case.arrived_at).total_seconds() // 60) if case.arrived_at else 0
            case.skills_relaxed_at = now
            fields = ["skills_relaxed_at"]
            if case.fallback_action == RoutingRule.FallbackAction.OVERFLOW and case.fallback_queue is not None:
                source = case.queue.name if case.queue else "default queue"
                case.queue = case.fallback_queue
                fields.append("queue")
                kind = RoutingLedgerEntry.Kind.OVERFLOWED
                reason = (
                    f"No nurse with skills {skills} within {waited} min: overflowed from {source} to "
                    f"{case.fallback_queue.name}, skill requirement relaxed"
                )
            else:
                kind = RoutingLedgerEntry.Kind.RELAXED
                reason = f"No nurse with skills {skills} within {waited} min: skill requirement relaxed"
            if case.required_license_state:
                reason += f" (licence in {case.required_license_state} still required)"
            case.save(update_fields=fields)
            routing_ledger_add(case=case, kind=kind, reason=reason, at=now)
            events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["routing"]})
            count += 1
    return count


@transaction.atomic
def case_complete(*, case_id: int, clinic: Clinic, nurse: User, disposition_code: str, note: str = "") -> Case:
    """Record the nurse-confirmed disposition and note, then wrap up and close the case.

    Allowed from `reserved` or `in_progress` by the nurse who holds the case (a reserved case is accepted
    implicitly). Timestamps `wrap_up_at` and `closed_at`. Raises UnknownDisposition, NotYourCase,
    InvalidTransition, Case.DoesNotExist. The caller adds the EHR write-back in the same transaction.
    """
    try:
        display = disposition_for(clinic, disposition_code).display
    except KeyError as exc:
        raise UnknownDisposition(disposition_code) from exc
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
def case_set_contact_preference(*, case_id: int, clinic: Clinic, preference: str, reason: str = "") -> Case:
    """Switch a case of `clinic` between holding on the line and callback; the place in line is kept.
    Raises `Case.DoesNotExist` for another clinic's case."""
    case = Case.objects.select_for_update().get(pk=case_id, clinic=clinic)
    if case.contact_preference != preference:
        case.contact_preference = preference
        case.save(update_fields=["contact_preference"])
        label = Case.ContactPreference(preference).label
        case_add_event(case=case, kind=CaseEvent.Kind.CALL, summary=f"{label}{': ' + reason if reason else ''}")
        events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["contact_preference"]})
    return case


@transaction.atomic
def case_attach_patient(
    *, case_id: int, clinic: Clinic, patient_fhir_id: str, patient_display: str, patient_birth_date: date | None
) -> Case:
    """Fill in the patient of a case of `clinic` whose EHR lookup was pending; clears `ehr_context_pending`.
    Raises `Case.DoesNotExist` for another clinic's case."""
    case = Case.objects.select_for_update().get(pk=case_id, clinic=clinic)
    case.patient_fhir_id = patient_fhir_id
    case.patient_display = patient_display
    case.patient_birth_date = patient_birth_date or case.patient_birth_date
    case.ehr_context_pending = False
    case.save(update_fields=["patient_fhir_id", "patient_display", "patient_birth_date", "ehr_context_pending"])
    case_add_event(case=case, kind=CaseEvent.Kind.EHR, summary="Patient identified in the EHR after the call")
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["patient"]})
    return case


@transaction.atomic
def case_clear_ehr_pending(*, case_id: int, clinic: Clinic, summary: str) -> Case:
    """The EHR answered but holds no matching patient: stop retrying; the case (of `clinic`; else
    `Case.DoesNotExist`) stays unidentified."""
    case = Case.objects.select_for_update().get(pk=case_id, clinic=clinic)
    case.ehr_context_pending = False
    case.save(update_fields=["ehr_context_pending"])
    case_add_event(case=case, kind=CaseEvent.Kind.EHR, summary=summary)
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["ehr_context_pending"]})
    return case


# --- EHR-aware risk modifiers (`triage.risk`) -------------------------------------------------------------


def risk_rules_enabled(*, clinic: Clinic) -> frozenset[str]:
    """Codes of the risk rules on for `clinic` (every rule without a `RiskRuleSetting` row is on)."""
    off = set(RiskRuleSetting.objects.filter(clinic=clinic, enabled=False).values_list("rule", flat=True))
    return frozenset(rule.code for rule in risk.RULES if rule.code not in off)


@transaction.atomic
def case_apply_risk(*, case_id: int, clinic: Clinic, facts: risk.RiskFacts) -> list[risk.RiskHit]:
    """Apply the clinic's enabled risk rules to an open case with `facts`; returns the new hits.

    A rule already recorded on the case is not applied twice (safe to run again, e.g. by a retried task).
    Every hit is stored on `Case.risk_modifiers` (the explanation the nurse sees) and on the timeline; when
    the acuity rises the case is saved and `case.updated` is published. A closed, abandoned or transferred
    case is left alone. Rule sources: `triage.risk`. Raises `Case.DoesNotExist` for another clinic's case.
    """
    case = Case.objects.select_for_update().get(pk=case_id, clinic=clinic)
    if case.state not in OPEN_STATES:
        return []
    already = {str(m.get("rule")) for m in case.risk_modifiers}
    enabled = risk_rules_enabled(clinic=case.clinic) - already
    hits = risk.evaluate(protocol_code=case.protocol_code, acuity=case.acuity, facts=facts, enabled=enabled)
    if not hits:
        return []
    before = case.acuity
    case.risk_modifiers = [*case.risk_modifiers, *(hit.as_dict() for hit in hits)]
    case.acuity = hits[-1].to_acuity
    case.save(update_fields=["risk_modifiers", "acuity"])
    for hit in hits:
        change = f"acuity {hit.from_acuity} -> {hit.to_acuity}" if hit.to_acuity != hit.from_acuity else "no change"
        case_add_event(
            case=case,
            kind=CaseEvent.Kind.RISK,
            summary=f"Risk modifier ({change}): {hit.explanation}",
            detail=hit.as_dict(),
        )
    fields = ["risk_modifiers", *(["acuity"] if case.acuity != before else [])]
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": fields})
    return hits


# --- Nurse acuity override (eCTAS: raise freely, never silently lower) -----------------------------------


def _staff_role(user: User, clinic: Clinic) -> str:
    try:
        staff = staff_for_user(user)
    except NotStaff as exc:
        raise OverrideNotAllowed("not staff of any clinic") from exc
    if staff.clinic_id != clinic.pk:
        raise OverrideNotAllowed("staff of another clinic")
    return staff.role


def _override_apply(override: AcuityOverride, case: Case, *, actor: User, summary: str) -> None:
    case.acuity = override.to_acuity
    case.save(update_fields=["acuity"])
    case_add_event(
        case=case,
        kind=CaseEvent.Kind.ACUITY_OVERRIDE,
        summary=summary,
        actor=actor,
        detail={"override_id": override.pk, "from": override.from_acuity, "to": override.to_acuity},
    )
    events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["acuity"]})


@transaction.atomic
def acuity_override_request(*, case_id: int, clinic: Clinic, user: User, to_acuity: int, reason: str) -> AcuityOverride:
    """A nurse (or supervisor) of `clinic` changes the acuity of an open case to `to_acuity` (CTAS 1-5).

    Raising (a lower number, more urgent) is applied at once. Lowering is recorded as `pending` and the case
    keeps its acuity until a supervisor co-signs (`acuity_override_cosign`): the eCTAS rule that the nurse
    may raise, never silently lower, the system score (eCTAS). Both need a reason. Raises Case.DoesNotExist
    (another clinic, unknown id), OverrideNotAllowed (not staff of the clinic), InvalidOverride (no
    reason, level outside 1-5, same level, case not open, a lowering already pending). Publishes
    `case.updated` (applied) or `acuity_override.requested` (pending).
    """
    _staff_role(user, clinic)
    reason = reason.strip()
    if not reason:
        raise InvalidOverride("A reason is required.")
    if not 1 <= int(to_acuity) <= 5:
        raise InvalidOverride("Acuity must be 1 to 5.")
    case = Case.objects.select_for_update().get(pk=case_id, clinic=clinic)
    if case.state not in OPEN_STATES:
        raise InvalidOverride("Only an open case can change acuity.")
    if to_acuity == case.acuity:
        raise InvalidOverride(f"The case is already at acuity {case.acuity}.")
    lowers = to_acuity > case.acuity
    if lowers and case.acuity_overrides.filter(status=AcuityOverride.Status.PENDING).exists():
        raise InvalidOverride("A lowering is already waiting for a supervisor's co-sign.")
    override = AcuityOverride.objects.create(
        case=case,
        clinic=clinic,
        from_acuity=case.acuity,
        to_acuity=to_acuity,
        reason=reason[:2000],
        status=AcuityOverride.Status.PENDING if lowers else AcuityOverride.Status.APPLIED,
        requested_by=user,
        decided_at=None if lowers else timezone.now(),
    )
    if lowers:
        case_add_event(
            case=case,
            kind=CaseEvent.Kind.ACUITY_OVERRIDE,
            summary=f"{_name(user)} asks to lower acuity {case.acuity} -> {to_acuity} (needs a supervisor "
            f"co-sign): {reason[:300]}",
            actor=user,
            detail={"override_id": override.pk, "from": case.acuity, "to": to_acuity, "status": "pending"},
        )
        events.publish(clinic.pk, "acuity_override.requested", {"case_id": case.pk, "override_id": override.pk})
    else:
        for pending in case.acuity_overrides.filter(status=AcuityOverride.Status.PENDING):
            pending.status = AcuityOverride.Status.STALE
            pending.decided_at = timezone.now()
            pending.save(update_fields=["status", "decided_at"])
        _override_apply(
            override,
            case,
            actor=user,
            summary=f"{_name(user)} raised acuity {override.from_acuity} -> {to_acuity}: {reason[:300]}",
        )
    return override


@transaction.atomic
def acuity_override_cosign(
    *, override_id: int, clinic: Clinic, supervisor: User, approve: bool = True
) -> AcuityOverride:
    """A supervisor of `clinic` co-signs (`approve`) or declines a pending lowering; co-signing applies it.

    Only role supervisor may decide, never the requester themself. If the case's acuity changed since the
    request (a raise, a risk modifier), the request is marked `stale` and nothing changes (the supervisor
    decided on facts that are gone). Raises AcuityOverride.DoesNotExist (another clinic, unknown id),
    OverrideNotAllowed, InvalidOverride (not pending).
    """
    _staff_role(supervisor, clinic)
    override = AcuityOverride.objects.select_for_update().get(pk=override_id, clinic=clinic)
    if not supervisor.has_perm(roles.COSIGN_ACUITY):  # role supervisor (clinics.roles)
        raise OverrideNotAllowed("Only a supervisor can co-sign a lower acuity.")
    if override.requested_by_id == supervisor.pk:
        raise OverrideNotAllowed("A lowering needs a co-sign from another person.")
    if override.status != AcuityOverride.Status.PENDING:
        raise InvalidOverride("This request is no longer waiting for a co-sign.")
    case = Case.objects.select_for_update().get(pk=override.case_id, clinic=clinic)
    override.cosigned_by = supervisor
    override.decided_at = timezone.now()
    if case.acuity != override.from_acuity or case.state not in OPEN_STATES:
        override.status = AcuityOverride.Status.STALE
        override.save(update_fields=["status", "cosigned_by", "decided_at"])
        raise InvalidOverride("The case changed since the request; ask again if still needed.")
    if not approve:
        override.status = AcuityOverride.Status.DECLINED
        override.save(update_fields=["status", "cosigned_by", "decided_at"])
        case_add_event(
            case=case,
            kind=CaseEvent.Kind.ACUITY_OVERRIDE,
            summary=f"{_name(supervisor)} declined lowering acuity {override.from_acuity} -> {override.to_acuity}",
            actor=supervisor,
            detail={"override_id": override.pk, "status": "declined"},
        )
        events.publish(case.clinic_id, "case.updated", {"case_id": case.pk, "fields": ["acuity_override"]})
        return override
    override.status = AcuityOverride.Status.APPLIED
    override.save(update_fields=["status", "cosigned_by", "decided_at"])
    _override_apply(
        override,
        case,
        actor=supervisor,
        summary=f"{_name(supervisor)} co-signed lowering acuity {override.from_acuity} -> {override.to_acuity} "
        f"(requested by {_name(override.requested_by)}: {override.reason[:300]})",
    )
    return override


def _name(user: User) -> str:
    return user.get_full_name() or user.get_username()
