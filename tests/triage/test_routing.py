"""`triage.routing` and routing in `triage.services`: rule conditions and actions, order, business hours
(DST, holidays, clinic timezone), eligibility in claims, fallbacks, and the routing ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from clinics.models import StaffMember
from triage.models import BusinessHours, Case, Holiday, Queue, RoutingLedgerEntry, RoutingRule
from triage.routing import RoutingFacts, age_in_years, is_business_hours, route, rule_mismatch
from triage.services import (
    case_apply_routing_fallbacks,
    case_claim_next,
    case_enqueue,
    case_expire_reservations,
    queue_default_for,
)


def _queue(clinic, slug: str) -> Queue:
    return Queue.objects.create(clinic=clinic, name=slug.title(), slug=slug)


def _rule(clinic, **fields) -> RoutingRule:
    fields.setdefault("name", "rule")
    rule = RoutingRule(clinic=clinic, **fields)
    rule.full_clean()
    rule.save()
    return rule


def _skills(user, *, skills=(), states=()) -> None:
    StaffMember.objects.filter(user=user).update(skills=list(skills), licensed_states=list(states))


def _ledger(case) -> list[tuple[str, str | None]]:
    entries = RoutingLedgerEntry.objects.filter(case=case).order_by("pk")
    return [(e.kind, e.nurse.username if e.nurse else None) for e in entries]


FACTS = RoutingFacts(acuity=3, protocol_code="fever", age_years=40, language="en", identified=True, caller_state="MA")


# --- conditions: each one matches and fails ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "matching", "failing"),
    [
        ({"acuity_levels": [2, 3]}, {"acuity": 3}, {"acuity": 4}),
        ({"protocol_codes": ["fever", "cough"]}, {"protocol_code": "fever"}, {"protocol_code": "chest-pain"}),
        ({"min_age_years": 0, "max_age_years": 17}, {"age_years": 17}, {"age_years": 18}),
        ({"min_age_years": 65}, {"age_years": 65}, {"age_years": 64}),
        ({"max_age_years": 2}, {"age_years": 2}, {"age_years": None}),
        ({"language": "es"}, {"language": "es-MX"}, {"language": "en"}),
        ({"identified": "yes"}, {"identified": True}, {"identified": False}),
        ({"identified": "no"}, {"identified": False}, {"identified": True}),
        ({"time_window": "in_hours"}, {"in_business_hours": True}, {"in_business_hours": False}),
        ({"time_window": "after_hours"}, {"in_business_hours": False}, {"in_business_hours": True}),
        ({"caller_states": ["MA", "NH"]}, {"caller_state": "NH"}, {"caller_state": ""}),
    ],
)
def test_each_condition_matches_and_fails(condition, matching, failing):
    rule = RoutingRule(name="r", **condition)
    base = FACTS.__dict__
    assert rule_mismatch(rule, RoutingFacts(**{**base, **matching})) is None
    assert rule_mismatch(rule, RoutingFacts(**{**base, **failing})) is not None


def test_empty_rule_matches_everything():
    assert rule_mismatch(RoutingRule(name="all"), RoutingFacts(acuity=5)) is None


@pytest.mark.django_db
def test_first_enabled_matching_rule_in_order_decides(personas):
    north = personas.north
    default = queue_default_for(clinic=north)
    peds, spanish = _queue(north, "pediatrics"), _queue(north, "spanish")
    _rule(north, order=1, name="disabled", enabled=False, target_queue=spanish)
    _rule(north, order=3, name="spanish", language="es", target_queue=spanish)
    _rule(north, order=2, name="kids", max_age_years=17, target_queue=peds)
    rules = list(RoutingRule.objects.filter(clinic=north))
    child_es = RoutingFacts(acuity=3, age_years=4, language="es")
    assert route(child_es, rules, default_queue=default).queue == peds  # order 2 before order 3
    assert route(RoutingFacts(acuity=3, age_years=30, language="es"), rules, default_queue=default).queue == spanish
    none = route(RoutingFacts(acuity=3, age_years=30), rules, default_queue=default)
    assert none.queue == default and none.rule is None and "No rule matched" in none.reason


@pytest.mark.django_db
def test_every_action_is_stamped_on_the_case_at_enqueue(personas):
    north = personas.north
    spanish, general_es = _queue(north, "spanish"), _queue(north, "overflow")
    rule = _rule(
        north,
        name="Spanish speakers",
        language="es",
        target_queue=spanish,
        required_skills=["spanish"],
        require_licensure=True,
        priority_boost_seconds=300,
        escalation_policy="page-on-call",
        fallback_after_minutes=10,
        fallback_action="overflow",
        fallback_queue=general_es,
    )
    case = case_enqueue(clinic=north, callback_number="+15555550100", acuity=3, language="es", caller_state="ma")
    assert case.routing_rule == rule and case.queue == spanish
    assert case.required_skills == ["spanish"] and case.required_license_state == "MA"
    assert case.priority_boost_seconds == 300
    assert case.priority_since == case.arrived_at - timedelta(seconds=300)
    assert case.escalation_policy == "page-on-call"
    assert case.fallback_action == "overflow" and case.fallback_queue == general_es
    assert case.fallback_at == case.arrived_at + timedelta(minutes=10)
    (entry,) = RoutingLedgerEntry.objects.filter(case=case)
    assert entry.kind == "routed" and "Spanish speakers" in entry.reason and "licensed in MA" in entry.reason


@pytest.mark.django_db
def test_licensure_with_unknown_caller_state_is_not_enforced_and_says_so(personas):
    _rule(personas.north, name="licensed", require_licensure=True)
    case = case_enqueue(clinic=personas.north, callback_number="+15555550100", acuity=3)
    assert case.required_license_state == ""
    assert "state is unknown" in RoutingLedgerEntry.objects.get(case=case).reason


@pytest.mark.django_db
def test_enqueue_facts_age_from_birth_date_and_identity(personas):
    north = personas.north
    infants = _queue(north, "infants")
    _rule(north, name="infants", max_age_years=0, identified="yes", target_queue=infants)
    baby = date.today() - timedelta(days=40)
    identified = case_enqueue(
        clinic=north, callback_number="+15555550100", acuity=3, patient_fhir_id="p1", patient_birth_date=baby
    )
    unidentified = case_enqueue(clinic=north, callback_number="+15555550100", acuity=3, patient_birth_date=baby)
    assert identified.queue == infants
    assert unidentified.queue == queue_default_for(clinic=north)
    assert age_in_years(date(2020, 3, 1), date(2026, 2, 28)) == 5
    assert age_in_years(date(2020, 3, 1), date(2026, 3, 1)) == 6


@pytest.mark.django_db
def test_other_clinics_rules_do_not_apply(personas):
    _rule(personas.south, name="south only", target_queue=_queue(personas.south, "south-q"))
    case = case_enqueue(clinic=personas.north, callback_number="+15555550100", acuity=3)
    assert case.queue == queue_default_for(clinic=personas.north)


# --- business hours ---------------------------------------------------------------------------------------


def _weekdays(clinic, opens=time(8), closes=time(17)) -> None:
    for day in range(5):
        BusinessHours.objects.create(clinic=clinic, weekday=day, opens=opens, closes=closes)


@pytest.mark.django_db
def test_business_hours_in_the_clinics_timezone_across_dst(personas):
    north = personas.north  # America/New_York
    _weekdays(north)
    # Before the spring change (EST, UTC-5): 08:30 local is 13:30 UTC; after it (EDT, UTC-4) 12:30 UTC.
    assert is_business_hours(north, datetime(2026, 3, 6, 13, 30, tzinfo=UTC))  # Fri 08:30 EST
    assert not is_business_hours(north, datetime(2026, 3, 6, 12, 30, tzinfo=UTC))  # Fri 07:30 EST
    assert is_business_hours(north, datetime(2026, 3, 9, 12, 30, tzinfo=UTC))  # Mon 08:30 EDT
    assert not is_business_hours(north, datetime(2026, 3, 9, 11, 30, tzinfo=UTC))  # Mon 07:30 EDT
    # Closing is exclusive; after the autumn change 17:00 EST is 22:00 UTC.
    assert is_business_hours(north, datetime(2026, 11, 2, 21, 59, tzinfo=UTC))
    assert not is_business_hours(north, datetime(2026, 11, 2, 22, 0, tzinfo=UTC))
    # Saturday: no window.
    assert not is_business_hours(north, datetime(2026, 3, 7, 15, 0, tzinfo=UTC))


@pytest.mark.django_db
def test_weekday_is_the_clinics_local_weekday(personas):
    north = personas.north
    north.timezone = "America/Los_Angeles"
    north.save()
    BusinessHours.objects.create(clinic=north, weekday=0, opens=time(18), closes=time(23))
    # Tue 03:00 UTC is Mon 20:00 in Los Angeles (PDT).
    assert is_business_hours(north, datetime(2026, 6, 2, 3, 0, tzinfo=UTC))
    assert not is_business_hours(north, datetime(2026, 6, 1, 20, 0, tzinfo=UTC))  # Mon 13:00 local


@pytest.mark.django_db
def test_holiday_is_after_hours_all_day_in_local_date(personas):
    north = personas.north
    _weekdays(north, opens=time(0), closes=time(23, 59))
    Holiday.objects.create(clinic=north, date=date(2026, 7, 3), name="Independence Day (observed)")
    assert not is_business_hours(north, datetime(2026, 7, 3, 15, 0, tzinfo=UTC))
    # 2026-07-04 01:00 UTC is still Friday July 3 in New York: the holiday.
    assert not is_business_hours(north, datetime(2026, 7, 4, 1, 0, tzinfo=UTC))
    assert is_business_hours(north, datetime(2026, 7, 2, 15, 0, tzinfo=UTC))


@pytest.mark.django_db
def test_in_hours_calls_follow_in_hours_rules(personas):
    north = personas.north
    day_q, night_q = _queue(north, "office"), _queue(north, "after-hours")
    _rule(north, order=1, name="office", time_window="in_hours", target_queue=day_q)
    _rule(north, order=2, name="night", time_window="after_hours", target_queue=night_q)
    assert case_enqueue(clinic=north, callback_number="+15555550100", acuity=3).queue == night_q  # no hours: closed
    now_local = timezone.localtime(timezone.now(), __import__("zoneinfo").ZoneInfo(north.timezone))
    BusinessHours.objects.create(clinic=north, weekday=now_local.weekday(), opens=time(0), closes=time(23, 59, 59))
    case = case_enqueue(clinic=north, callback_number="+15555550100", acuity=3)
    assert case.in_business_hours is True and case.queue == day_q


# --- claims respect routing ---------------------------------------------------------------------------------


def _spanish_case(clinic, **rule_fields):
    _rule(clinic, name="Spanish", language="es", required_skills=["spanish"], **rule_fields)
    return case_enqueue(clinic=clinic, callback_number="+15555550100", acuity=3, language="es")


@pytest.mark.django_db
def test_spanish_case_waits_for_a_spanish_nurse_until_the_fallback_relaxes_it(personas):
    case = _spanish_case(personas.north, fallback_after_minutes=5, fallback_action="relax_skills")
    _skills(personas.alice, skills=["pediatrics"])
    _skills(personas.dave, skills=["spanish"])
    assert case_claim_next(clinic=personas.north, nurse=personas.alice) is None
    assert _ledger(case)[-1] == ("skipped", "alice")
    assert "lacks skill spanish" in RoutingLedgerEntry.objects.get(case=case, kind="skipped").reason
    # A second try by alice does not duplicate the skip.
    assert case_claim_next(clinic=personas.north, nurse=personas.alice) is None
    assert [k for k, _ in _ledger(case)].count("skipped") == 1
    # Not yet due: nothing relaxed.
    assert case_apply_routing_fallbacks(now=timezone.now() + timedelta(minutes=4)) == 0
    assert case_claim_next(clinic=personas.north, nurse=personas.alice) is None
    assert case_apply_routing_fallbacks(now=timezone.now() + timedelta(minutes=6)) == 1
    assert case_apply_routing_fallbacks(now=timezone.now() + timedelta(minutes=7)) == 0  # once only
    assert case_claim_next(clinic=personas.north, nurse=personas.alice).pk == case.pk
    assert [k for k, _ in _ledger(case)] == ["routed", "skipped", "relaxed", "offered"]


@pytest.mark.django_db
def test_a_nurse_with_the_skill_is_offered_the_case(personas):
    case = _spanish_case(personas.north)
    _skills(personas.dave, skills=["Spanish", "pediatrics"])
    claimed = case_claim_next(clinic=personas.north, nurse=personas.dave)
    assert claimed.pk == case.pk
    assert _ledger(case) == [("routed", None), ("offered", "dave")]


@pytest.mark.django_db
def test_ineligible_head_is_skipped_and_the_nurse_gets_the_next_eligible_case(personas):
    spanish = _spanish_case(personas.north)
    Case.objects.filter(pk=spanish.pk).update(arrived_at=timezone.now() - timedelta(minutes=20))
    english = case_enqueue(clinic=personas.north, callback_number="+15555550101", acuity=3)
    assert case_claim_next(clinic=personas.north, nurse=personas.alice).pk == english.pk
    assert ("skipped", "alice") in _ledger(spanish)


@pytest.mark.django_db
def test_licensure_state_is_required_and_never_relaxed(personas):
    north = personas.north
    _rule(
        north,
        name="licensed",
        require_licensure=True,
        required_skills=["spanish"],
        fallback_after_minutes=1,
        fallback_action="relax_skills",
    )
    case = case_enqueue(clinic=north, callback_number="+15555550100", acuity=3, caller_state="NH")
    _skills(personas.alice, skills=["spanish"], states=["MA"])
    _skills(personas.dave, states=["NH", "MA"])
    assert case_claim_next(clinic=north, nurse=personas.alice) is None
    assert "not licensed in NH" in RoutingLedgerEntry.objects.filter(case=case, kind="skipped").get().reason
    assert case_apply_routing_fallbacks(now=timezone.now() + timedelta(minutes=2)) == 1
    assert case_claim_next(clinic=north, nurse=personas.alice) is None  # skills relaxed, licence still needed
    assert case_claim_next(clinic=north, nurse=personas.dave).pk == case.pk


@pytest.mark.django_db
def test_overflow_moves_the_case_to_the_fallback_queue(personas):
    north = personas.north
    spanish_q, overflow_q = _queue(north, "spanish"), _queue(north, "overflow")
    case = _spanish_case(
        north, target_queue=spanish_q, fallback_after_minutes=3, fallback_action="overflow", fallback_queue=overflow_q
    )
    assert case.queue == spanish_q
    assert case_apply_routing_fallbacks(now=timezone.now() + timedelta(minutes=4)) == 1
    case.refresh_from_db()
    assert case.queue == overflow_q and case.skills_relaxed_at is not None
    entry = RoutingLedgerEntry.objects.get(case=case, kind="overflowed")
    assert "Spanish to Overflow" in entry.reason
    assert case_claim_next(clinic=north, nurse=personas.alice).pk == case.pk


@pytest.mark.django_db
def test_priority_boost_is_a_head_start_added_to_the_wait(personas):
    north = personas.north
    _rule(north, name="boost kids", max_age_years=17, priority_boost_seconds=600)
    plain = case_enqueue(clinic=north, callback_number="+15555550100", acuity=3)
    Case.objects.filter(pk=plain.pk).update(arrived_at=timezone.now() - timedelta(minutes=5))
    child = case_enqueue(
        clinic=north, callback_number="+15555550101", acuity=3, patient_birth_date=date.today() - timedelta(days=900)
    )
    # The child arrived later but with a 10-minute head start (5 min waited vs 0 + 10 min): the child first.
    assert case_claim_next(clinic=north, nurse=personas.alice).pk == child.pk
    assert case_claim_next(clinic=north, nurse=personas.dave).pk == plain.pk


@pytest.mark.django_db
def test_boost_does_not_beat_a_longer_wait(personas):
    north = personas.north
    _rule(north, name="boost kids", max_age_years=17, priority_boost_seconds=60)
    plain = case_enqueue(clinic=north, callback_number="+15555550100", acuity=3)
    Case.objects.filter(pk=plain.pk).update(arrived_at=timezone.now() - timedelta(minutes=5))
    case_enqueue(
        clinic=north, callback_number="+15555550101", acuity=3, patient_birth_date=date.today() - timedelta(days=900)
    )
    assert case_claim_next(clinic=north, nurse=personas.alice).pk == plain.pk


@pytest.mark.django_db
def test_expired_reservation_is_a_timeout_in_the_ledger(personas):
    case = case_enqueue(clinic=personas.north, callback_number="+15555550100", acuity=3)
    case_claim_next(clinic=personas.north, nurse=personas.alice)
    assert case_expire_reservations(now=timezone.now() + timedelta(hours=1)) == 1
    assert _ledger(case) == [("routed", None), ("offered", "alice"), ("timeout", "alice")]


# --- validation ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"acuity_levels": [0, 3]}, "acuity_levels", "1 (most urgent) to 5"),
        ({"acuity_levels": ["x"]}, "acuity_levels", "not an acuity level"),
        ({"protocol_codes": ["Chest Pain!"]}, "protocol_codes", "not a valid code"),
        ({"caller_states": ["XX"]}, "caller_states", "Unknown US state"),
        ({"required_skills": ["spanish!"]}, "required_skills", "not a valid code"),
        ({"language": "spanish"}, "language", "language code"),
        ({"min_age_years": 18, "max_age_years": 2}, "max_age_years", "at least the minimum"),
        ({"max_age_years": 200}, "max_age_years", "0 to 130"),
        ({"fallback_action": "relax_skills", "required_skills": ["spanish"]}, "fallback_after_minutes", "minutes"),
        ({"fallback_after_minutes": 5}, "fallback_action", "Choose what happens"),
        ({"fallback_action": "relax_skills", "fallback_after_minutes": 5}, "fallback_action", "requires none"),
        (
            {"fallback_action": "overflow", "fallback_after_minutes": 5, "required_skills": ["spanish"]},
            "fallback_queue",
            "overflow to",
        ),
    ],
)
def test_bad_rule_input_gets_a_clear_error(personas, fields, field, message):
    with pytest.raises(ValidationError) as exc:
        RoutingRule(clinic=personas.north, name="bad", **fields).full_clean()
    assert message in " ".join(exc.value.message_dict[field])


@pytest.mark.django_db
def test_a_rule_cannot_target_another_clinics_queue(personas):
    with pytest.raises(ValidationError) as exc:
        RoutingRule(clinic=personas.north, name="x", target_queue=_queue(personas.south, "s")).full_clean()
    assert "queue of this clinic" in exc.value.message_dict["target_queue"][0]


@pytest.mark.django_db
def test_business_hours_must_open_before_closing(personas):
    with pytest.raises(ValidationError) as exc:
        BusinessHours(clinic=personas.north, weekday=0, opens=time(22), closes=time(6)).full_clean()
    assert "crosses midnight" in exc.value.message_dict["closes"][0]


@pytest.mark.django_db
def test_codes_are_normalised(personas):
    rule = _rule(personas.north, acuity_levels="3, 2 3", caller_states="ma nh", required_skills=["Spanish"])
    assert rule.acuity_levels == [2, 3] and rule.caller_states == ["MA", "NH"] and rule.required_skills == ["spanish"]
