"""Routing configuration of a clinic (queues, business hours, holidays, ordered rules) and the routing ledger.

A clinic admin edits these as data (console page `/console/admin/routing/`). `triage.routing` evaluates them;
`triage.services.case_enqueue` stamps the decision on the case and `case_claim_next` honours it.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from clinics.models import Clinic

# USPS codes of the states, DC and the territories whose boards license nurses (NCSBN member boards).
_STATES = "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH"
_STATES += " OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI"
US_STATE_CODES: frozenset[str] = frozenset(_STATES.split(" "))

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
MAX_AGE_YEARS = 130


def normalise_codes(values: Any, *, field: str, pattern: re.Pattern[str], lower: bool = True) -> list[str]:
    """A list of short codes, stripped, deduplicated and sorted. Raises ValidationError naming `field`."""
    if values in (None, ""):
        return []
    if isinstance(values, str):
        values = [v for v in re.split(r"[,\s]+", values) if v]
    if not isinstance(values, list | tuple):
        raise ValidationError({field: "Enter a list of codes."})
    out = set()
    for raw in values:
        code = str(raw).strip()
        code = code.lower() if lower else code.upper()
        if not pattern.match(code):
            raise ValidationError({field: f"{raw!r} is not a valid code."})
        out.add(code)
    return sorted(out)


def normalise_skills(values: Any, *, field: str = "required_skills") -> list[str]:
    """Skill codes are lowercase slugs such as `pediatrics`, `spanish`, `behavioral-health`."""
    return normalise_codes(values, field=field, pattern=_SLUG)


def normalise_states(values: Any, *, field: str) -> list[str]:
    """US state codes (USPS, upper case). Raises ValidationError for anything else."""
    codes = normalise_codes(values, field=field, pattern=re.compile(r"^[A-Z]{2}$"), lower=False)
    unknown = [c for c in codes if c not in US_STATE_CODES]
    if unknown:
        raise ValidationError({field: f"Unknown US state code(s): {', '.join(unknown)}."})
    return codes


class Queue(models.Model):
    """A named line of a clinic's cases (e.g. "General", "Pediatrics", "Spanish").

    Every clinic has exactly one default queue (`is_default`), created on first use by
    `triage.services.queue_default_for` and for existing clinics by a data migration; a case no rule matches
    goes there. Nurses of a clinic work all its queues: who may take a case is decided by the case's
    required skills and licensure state (`triage.routing.eligibility_q`), not by queue membership.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="queues")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50)
    is_default = models.BooleanField(default=False)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "slug"], name="queue_slug_unique_per_clinic"),
            models.UniqueConstraint(
                fields=["clinic"], condition=models.Q(is_default=True), name="queue_one_default_per_clinic"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class BusinessHours(models.Model):
    """One in-hours window of a clinic: `weekday` 0 = Monday .. 6 = Sunday, `opens` < `closes`, both wall-clock
    times in the clinic's timezone (`Clinic.timezone`), so the window follows daylight saving time.

    A day may have several windows (e.g. a lunch break). A window cannot cross midnight: enter two windows.
    A clinic without windows is after-hours all the time (the after-hours line's default).
    """

    class Weekday(models.IntegerChoices):
        MONDAY = 0, "Monday"
        TUESDAY = 1, "Tuesday"
        WEDNESDAY = 2, "Wednesday"
        THURSDAY = 3, "Thursday"
        FRIDAY = 4, "Friday"
        SATURDAY = 5, "Saturday"
        SUNDAY = 6, "Sunday"

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="business_hours")
    weekday = models.PositiveSmallIntegerField(choices=Weekday.choices)
    opens = models.TimeField()
    closes = models.TimeField()

    class Meta:
        ordering = ["weekday", "opens"]
        constraints = [
            models.CheckConstraint(condition=models.Q(weekday__lte=6), name="business_hours_weekday_0_6"),
            models.CheckConstraint(condition=models.Q(opens__lt=models.F("closes")), name="business_hours_opens_first"),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"

    def clean(self) -> None:
        if self.opens is not None and self.closes is not None and self.opens >= self.closes:
            raise ValidationError(
                {"closes": "Closing time must be after opening time; split a window that crosses midnight in two."}
            )


class Holiday(models.Model):
    """A date (in the clinic's timezone) on which the clinic is closed all day: every call is after-hours."""

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["clinic", "date"], name="holiday_unique_per_clinic")]

    def __str__(self) -> str:
        return f"{self.date:%Y-%m-%d} {self.name}"


class RoutingRule(models.Model):
    """One ordered routing rule: conditions on the case's facts -> where the case goes and who may take it.

    Rules are tried in `order` (then id); the first enabled rule whose conditions all hold decides
    (`triage.routing.route`). An empty condition matches everything.

    Conditions: `acuity_levels` (CTAS 1-5), `protocol_codes`, patient age band `min_age_years`..`max_age_years`
    (whole years at arrival, both inclusive; a case without a birth date never matches a rule with an age
    band), `language` (primary subtag, e.g. "es"), `identified` (caller matched to an EHR patient or not),
    `time_window` (in business hours, after hours, always; `triage.routing.is_business_hours`),
    `caller_states` (US state of the patient's FHIR address; unknown never matches a rule that names states).

    Actions: `target_queue` (the clinic's default queue when empty), `required_skills` (a nurse must hold all),
    `require_licensure` (a nurse must be licensed in the caller's state; not enforced when the state is
    unknown, which the ledger says), `priority_boost_seconds` (a head start in seconds added to the case's
    wait when the accumulating priority is computed, DESIGN §5: priority = b_k * (wait + boost)),
    `escalation_policy` (a policy name the escalation sweep reads), and the fallback: after
    `fallback_after_minutes` without a nurse, `relax_skills` (drop the skill requirement; licensure is never
    relaxed, a nurse may only practise where licensed) or `overflow` (move the case to `fallback_queue` and
    drop the skill requirement).
    """

    class TimeWindow(models.TextChoices):
        ALWAYS = "always", "Always"
        IN_HOURS = "in_hours", "In business hours"
        AFTER_HOURS = "after_hours", "After hours"

    class Identified(models.TextChoices):
        ANY = "any", "Identified or not"
        YES = "yes", "Identified callers"
        NO = "no", "Unidentified callers"

    class FallbackAction(models.TextChoices):
        NONE = "", "No fallback"
        RELAX_SKILLS = "relax_skills", "Relax the skill requirement"
        OVERFLOW = "overflow", "Overflow to another queue"

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="routing_rules")
    order = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)

    acuity_levels = models.JSONField(default=list, blank=True)
    protocol_codes = models.JSONField(default=list, blank=True)
    min_age_years = models.PositiveSmallIntegerField(null=True, blank=True)
    max_age_years = models.PositiveSmallIntegerField(null=True, blank=True)
    language = models.CharField(max_length=8, blank=True)
    identified = models.CharField(max_length=3, choices=Identified.choices, default=Identified.ANY)
    time_window = models.CharField(max_length=12, choices=TimeWindow.choices, default=TimeWindow.ALWAYS)
    caller_states = models.JSONField(default=list, blank=True)

    target_queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    required_skills = models.JSONField(default=list, blank=True)
    require_licensure = models.BooleanField(default=False)
    priority_boost_seconds = models.PositiveIntegerField(default=0)
    escalation_policy = models.CharField(max_length=64, blank=True)
    fallback_after_minutes = models.PositiveIntegerField(null=True, blank=True)
    fallback_action = models.CharField(max_length=16, choices=FallbackAction.choices, default="", blank=True)
    fallback_queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["order", "pk"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Normalise the list fields and check every condition and action; errors name the field."""
        errors: dict[str, str] = {}

        def collect(field: str, fn: Any) -> None:
            try:
                setattr(self, field, fn())
            except ValidationError as exc:
                errors.update({k: "; ".join(v) for k, v in exc.message_dict.items()})

        collect("acuity_levels", lambda: _acuity_levels(self.acuity_levels))
        collect("protocol_codes", lambda: normalise_codes(self.protocol_codes, field="protocol_codes", pattern=_SLUG))
        collect("caller_states", lambda: normalise_states(self.caller_states, field="caller_states"))
        collect("required_skills", lambda: normalise_skills(self.required_skills))
        self.language = (self.language or "").strip().lower()
        if self.language and not _LANGUAGE.match(self.language):
            errors["language"] = "Enter a two- or three-letter language code such as en or es."
        for field in ("min_age_years", "max_age_years"):
            value = getattr(self, field)
            if value is not None and value > MAX_AGE_YEARS:
                errors[field] = f"Ages are 0 to {MAX_AGE_YEARS} years."
        if (
            self.min_age_years is not None
            and self.max_age_years is not None
            and self.min_age_years > self.max_age_years
        ):
            errors["max_age_years"] = "The maximum age must be at least the minimum age."
        clinic_id = self.clinic_id
        for field in ("target_queue", "fallback_queue"):
            queue = getattr(self, field)
            if queue is not None and queue.clinic_id != clinic_id:
                errors[field] = "Choose a queue of this clinic."
        action = self.fallback_action or ""
        if action and not self.fallback_after_minutes:
            errors["fallback_after_minutes"] = "Say after how many minutes the fallback applies (at least 1)."
        if not action and self.fallback_after_minutes:
            errors["fallback_action"] = "Choose what happens after the fallback minutes, or clear the minutes."
        if action and not self.required_skills and "required_skills" not in errors:
            errors["fallback_action"] = "A fallback relaxes required skills; this rule requires none."
        if action == self.FallbackAction.OVERFLOW:
            if self.fallback_queue is None:
                errors["fallback_queue"] = "Choose the queue to overflow to."
            elif self.target_queue is not None and self.fallback_queue.pk == self.target_queue.pk:
                errors["fallback_queue"] = "The overflow queue must differ from the target queue."
        elif self.fallback_queue is not None and "fallback_queue" not in errors:
            errors["fallback_queue"] = "A fallback queue is only used by the overflow action."
        if errors:
            raise ValidationError(errors)


def _acuity_levels(values: Any) -> list[int]:
    if values in (None, ""):
        return []
    if isinstance(values, str):
        values = [v for v in re.split(r"[,\s]+", values) if v]
    if not isinstance(values, list | tuple):
        raise ValidationError({"acuity_levels": "Enter a list of acuity levels 1-5."})
    levels = set()
    for raw in values:
        try:
            level = int(raw)
        except (TypeError, ValueError):
            raise ValidationError({"acuity_levels": f"{raw!r} is not an acuity level (1-5)."}) from None
        if not 1 <= level <= 5:
            raise ValidationError({"acuity_levels": f"Acuity levels are 1 (most urgent) to 5, not {level}."})
        levels.add(level)
    return sorted(levels)


class RoutingLedgerEntry(models.Model):
    """One routing step of a case, with its reason: append-only, shown on the case page and in the API.

    Kinds: `routed` (enqueue: rule or default queue), `offered` (a claim reserved the case for `nurse`),
    `skipped` (the case was ahead in line but `nurse` lacked a required skill or the licensure state),
    `timeout` (the reservation expired unaccepted), `relaxed` / `overflowed` (the rule's fallback applied),
    `escalated` (written by the escalation sweep).
    """

    class Kind(models.TextChoices):
        ROUTED = "routed", "Routed"
        OFFERED = "offered", "Offered"
        SKIPPED = "skipped", "Skipped"
        TIMEOUT = "timeout", "Timed out"
        RELAXED = "relaxed", "Skill requirement relaxed"
        OVERFLOWED = "overflowed", "Overflowed"
        ESCALATED = "escalated", "Escalated"

    case = models.ForeignKey("triage.Case", on_delete=models.CASCADE, related_name="routing_ledger")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    nurse = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=500)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["case", "at"]), models.Index(fields=["case", "kind", "nurse"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M:%S}"
