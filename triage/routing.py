"""Routing: business hours, the first-matching-rule decision, and who may take a case.

`route(facts, rules, default_queue=...)` is pure: the facts of one case and the clinic's rules in, a
`RoutingDecision` with its reason out; the services stamp it on the case (`case_enqueue`) and the admin
preview evaluates an unsaved rule against past cases with `rule_mismatch`. `is_business_hours` reads the
clinic's hours and holidays unless they are passed in (the preview loads them once for 100 cases).

Queueing rules and their sources: the first enabled matching rule decides, as in contact-centre routing
tables (Twilio TaskRouter workflows, Amazon Connect routing profiles evaluate filters in order); licensure is
never relaxed because a nurse may give telephone triage advice only under a licence valid where the patient
is (NCSBN: the practice of nursing occurs where the patient is located).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Q

from clinics.models import Clinic
from triage.models.case import Case
from triage.models.routing import BusinessHours, Holiday, Queue, RoutingRule

# A nurse with more skills than this is matched with PostgreSQL's jsonb `<@` only; the portable fallback
# (SQLite, the embedded run) enumerates the subsets of the nurse's skills.
_MAX_SUBSET_SKILLS = 8


@dataclass(frozen=True)
class RoutingFacts:
    """What routing knows of a case when it is queued.

    `age_years` whole years at arrival (None when no birth date); `language` a BCP-47 code; `identified`
    the caller was matched to an EHR patient; `caller_state` USPS code of the patient's address or "";
    `in_business_hours` whether the case arrived in the clinic's business hours.
    """

    acuity: int
    protocol_code: str = ""
    age_years: int | None = None
    language: str = "en"
    identified: bool = False
    caller_state: str = ""
    in_business_hours: bool = False


@dataclass(frozen=True)
class RoutingDecision:
    """Where a case goes and who may take it. `rule` is None when no rule matched (default queue).

    `fallback_after_minutes`/`fallback_action`/`fallback_queue` come from the rule (see `RoutingRule`);
    `reason` is the sentence the ledger records.
    """

    queue: Queue | None
    rule: RoutingRule | None = None
    required_skills: tuple[str, ...] = ()
    required_license_state: str = ""
    priority_boost_seconds: int = 0
    escalation_policy: str = ""
    fallback_after_minutes: int | None = None
    fallback_action: str = ""
    fallback_queue: Queue | None = None
    reason: str = ""
    notes: tuple[str, ...] = field(default=())


def age_in_years(birth_date: date | None, on: date) -> int | None:
    """Whole years between `birth_date` and `on` (the birthday counts on the day), None without a birth date."""
    if birth_date is None:
        return None
    years = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    return max(years, 0)


def is_business_hours(
    clinic: Clinic,
    at: datetime,
    *,
    hours: Sequence[BusinessHours] | None = None,
    holidays: Iterable[date] | None = None,
) -> bool:
    """True when the aware instant `at` falls in one of `clinic`'s business-hours windows.

    `at` is converted to the clinic's timezone (`Clinic.timezone`, IANA name), so windows are wall-clock
    times and follow daylight saving time; a window is `[opens, closes)`. A holiday (a date in the clinic's
    timezone) is after-hours all day. A clinic without windows is never in hours. `hours`/`holidays` may be
    passed pre-loaded (same clinic); otherwise they are read from the database.
    """
    local = at.astimezone(ZoneInfo(clinic.timezone))
    holiday_dates = (
        set(holidays)
        if holidays is not None
        else set(Holiday.objects.filter(clinic=clinic).values_list("date", flat=True))
    )
    if local.date() in holiday_dates:
        return False
    windows = hours if hours is not None else list(BusinessHours.objects.filter(clinic=clinic))
    wall: time = local.time().replace(tzinfo=None)
    return any(w.weekday == local.weekday() and w.opens <= wall < w.closes for w in windows)


def _primary(language: str) -> str:
    return language.split("-")[0].split("_")[0].lower()


def rule_mismatch(rule: RoutingRule, facts: RoutingFacts) -> str | None:
    """None when every condition of `rule` holds for `facts`, else the first condition that fails (for humans).

    Ignores `rule.enabled` (the preview evaluates a rule being edited).
    """
    if rule.acuity_levels and facts.acuity not in rule.acuity_levels:
        return f"acuity {facts.acuity} not in {rule.acuity_levels}"
    if rule.protocol_codes and facts.protocol_code not in rule.protocol_codes:
        return f"protocol {facts.protocol_code or 'none'} not in {', '.join(rule.protocol_codes)}"
    if rule.min_age_years is not None or rule.max_age_years is not None:
        if facts.age_years is None:
            return "age unknown"
        if rule.min_age_years is not None and facts.age_years < rule.min_age_years:
            return f"age {facts.age_years} below {rule.min_age_years}"
        if rule.max_age_years is not None and facts.age_years > rule.max_age_years:
            return f"age {facts.age_years} above {rule.max_age_years}"
    if rule.language and _primary(facts.language) != _primary(rule.language):
        return f"language {facts.language} is not {rule.language}"
    if rule.identified == RoutingRule.Identified.YES and not facts.identified:
        return "caller not identified"
    if rule.identified == RoutingRule.Identified.NO and facts.identified:
        return "caller identified"
    if rule.time_window == RoutingRule.TimeWindow.IN_HOURS and not facts.in_business_hours:
        return "after hours"
    if rule.time_window == RoutingRule.TimeWindow.AFTER_HOURS and facts.in_business_hours:
        return "in business hours"
    if rule.caller_states and facts.caller_state not in rule.caller_states:
        return f"caller's state {facts.caller_state or 'unknown'} not in {', '.join(rule.caller_states)}"
    return None


def route(facts: RoutingFacts, rules: Iterable[RoutingRule], *, default_queue: Queue | None) -> RoutingDecision:
    """The decision of the first enabled rule (in `order`, then id) whose conditions hold; the default queue
    with no requirements when none does. `rules` are the clinic's rules (order is re-applied here).

    Licensure: a rule with `require_licensure` sets `required_license_state` to the caller's state; when the
    state is unknown nothing can be enforced, and the reason says so.
    """
    ordered = sorted(rules, key=lambda r: (r.order, r.pk or 0))
    for rule in ordered:
        if not rule.enabled or rule_mismatch(rule, facts) is not None:
            continue
        queue = rule.target_queue or default_queue
        notes: list[str] = []
        license_state = ""
        if rule.require_licensure:
            if facts.caller_state:
                license_state = facts.caller_state
                notes.append(f"nurse licensed in {license_state}")
            else:
                notes.append("licensure required but the caller's state is unknown: not enforced")
        skills = tuple(rule.required_skills or ())
        if skills:
            notes.append("skills " + ", ".join(skills))
        if rule.priority_boost_seconds:
            notes.append(f"boost {rule.priority_boost_seconds} s")
        if rule.fallback_action:
            notes.append(f"fallback after {rule.fallback_after_minutes} min: {rule.get_fallback_action_display()}")
        queue_name = queue.name if queue else "default queue"
        reason = f'Rule #{rule.order} "{rule.name}" -> {queue_name}' + (f" ({'; '.join(notes)})" if notes else "")
        return RoutingDecision(
            queue=queue,
            rule=rule,
            required_skills=skills,
            required_license_state=license_state,
            priority_boost_seconds=int(rule.priority_boost_seconds or 0),
            escalation_policy=rule.escalation_policy,
            fallback_after_minutes=rule.fallback_after_minutes if rule.fallback_action else None,
            fallback_action=rule.fallback_action or "",
            fallback_queue=rule.fallback_queue if rule.fallback_action == RoutingRule.FallbackAction.OVERFLOW else None,
            reason=reason,
            notes=tuple(notes),
        )
    queue_name = default_queue.name if default_queue else "default queue"
    return RoutingDecision(queue=default_queue, reason=f"No rule matched -> {queue_name}")


# Cases some nurses may not take: an unrelaxed skill requirement or a licensure state (partial index
# `case_routing_restricted`); the claim records skips only when such a case is queued.
RESTRICTED = (Q(skills_relaxed_at__isnull=True) & ~Q(required_skills=[])) | ~Q(required_license_state="")


@dataclass(frozen=True)
class NurseProfile:
    """What eligibility needs of a nurse: skill codes and licensed state codes (both as stored on StaffMember)."""

    skills: frozenset[str]
    licensed_states: frozenset[str]


def eligibility_q(nurse: NurseProfile) -> Q:
    """Filter for the queued cases `nurse` may be offered: she holds every required skill (or the skill
    requirement was relaxed by the fallback) and, when the case requires one, a licence in its state."""
    skills = sorted(nurse.skills)
    if connection.vendor == "postgresql" or len(skills) > _MAX_SUBSET_SKILLS:
        skills_ok = Q(required_skills__contained_by=skills)
    else:  # SQLite has no JSON containment: the required set must equal one subset of the nurse's skills.
        skills_ok = Q()
        for mask in range(1 << len(skills)):
            subset = [s for i, s in enumerate(skills) if mask & (1 << i)]
            skills_ok |= Q(required_skills=subset)
    license_ok = Q(required_license_state="") | Q(required_license_state__in=sorted(nurse.licensed_states))
    return (Q(skills_relaxed_at__isnull=False) | skills_ok) & license_ok


def why_ineligible(
    *, required_skills: Sequence[str], required_license_state: str, skills_relaxed: bool, nurse: NurseProfile
) -> str | None:
    """None when `nurse` may take a case with these requirements, else why not (names skills and states only)."""
    reasons = []
    missing = [s for s in required_skills if s not in nurse.skills] if not skills_relaxed else []
    if missing:
        reasons.append("lacks skill " + ", ".join(missing))
    if required_license_state and required_license_state not in nurse.licensed_states:
        reasons.append(f"not licensed in {required_license_state}")
    return "; ".join(reasons) or None


def facts_for_case(
    case: Case, *, hours: Sequence[BusinessHours] | None = None, holidays: Iterable[date] | None = None
) -> RoutingFacts:
    """The routing facts of a stored case, as `case_enqueue` saw them (age at arrival in the clinic's timezone;
    business hours as recorded, or recomputed for cases queued before routing existed)."""
    clinic = case.clinic
    arrived = case.arrived_at or case.created_at
    in_hours = case.in_business_hours
    if in_hours is None:
        in_hours = is_business_hours(clinic, arrived, hours=hours, holidays=holidays)
    return RoutingFacts(
        acuity=case.acuity,
        protocol_code=case.protocol_code,
        age_years=age_in_years(case.patient_birth_date, arrived.astimezone(ZoneInfo(clinic.timezone)).date()),
        language=case.language,
        identified=bool(case.patient_fhir_id),
        caller_state=case.caller_state,
        in_business_hours=in_hours,
    )


@dataclass(frozen=True)
class PreviewRow:
    """One past case in the rule preview: does `rule` match it, would it have routed it (no earlier enabled
    rule matches first), why not (`mismatch`), and the queue the case actually went to."""

    case: Case
    matches: bool
    would_route: bool
    mismatch: str
    earlier_rule: str
    actual_queue: str


def preview_rule(rule: RoutingRule, cases: Sequence[Case], *, other_rules: Sequence[RoutingRule]) -> list[PreviewRow]:
    """Evaluate `rule` (possibly unsaved) against `cases` of its clinic. `other_rules` are the clinic's other
    rules; the enabled ones ordered before `rule` (by order, then id) take a case first."""
    key = (rule.order, rule.pk if rule.pk is not None else 10**12)
    earlier = sorted(
        (r for r in other_rules if r.enabled and r.pk != rule.pk and (r.order, r.pk or 0) < key),
        key=lambda r: (r.order, r.pk or 0),
    )
    hours = list(BusinessHours.objects.filter(clinic_id=rule.clinic_id))
    holidays = set(Holiday.objects.filter(clinic_id=rule.clinic_id).values_list("date", flat=True))
    rows = []
    for case in cases:
        facts = facts_for_case(case, hours=hours, holidays=holidays)
        mismatch = rule_mismatch(rule, facts)
        first = next((r for r in earlier if rule_mismatch(r, facts) is None), None) if mismatch is None else None
        rows.append(
            PreviewRow(
                case=case,
                matches=mismatch is None,
                would_route=mismatch is None and first is None,
                mismatch=mismatch or "",
                earlier_rule=first.name if first else "",
                actual_queue=case.queue.name if case.queue else "",
            )
        )
    return rows
