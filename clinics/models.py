"""Tenants (clinics), their staff, and the append-only audit log."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

# CTAS 2016 time-to-nurse/physician targets in seconds per acuity level (1 = resuscitation: immediate).
CTAS_TARGET_SECONDS: dict[str, int] = {"1": 0, "2": 15 * 60, "3": 30 * 60, "4": 60 * 60, "5": 120 * 60}


def default_acuity_targets() -> dict[str, int]:
    """Return a fresh copy of the CTAS default targets (JSON keys are strings "1".."5", values seconds).

    Only migration 0001 uses it now (the removed `Clinic.acuity_targets` field's default); `kpi_targets` holds
    the targets."""
    return dict(CTAS_TARGET_SECONDS)


# KPI targets per acuity level: the fraction of cases a nurse must reach within `seconds` of arrival.
# CTAS 2016 defaults (Bullard et al., CJEM 2017, "Revisions to the Canadian Emergency Department Triage and
# Acuity Scale (CTAS) Guidelines"): level 1 immediate (98 %), 2 95 % within 15 min, 3 90 % within 30 min,
# 4 85 % within 60 min, 5 80 % within 120 min. Level 1 never waits in the accumulating queue (rate infinite).
CTAS_KPI_TARGETS: dict[str, dict[str, float]] = {
    "1": {"seconds": 0, "fraction": 0.98},
    "2": {"seconds": 15 * 60, "fraction": 0.95},
    "3": {"seconds": 30 * 60, "fraction": 0.90},
    "4": {"seconds": 60 * 60, "fraction": 0.85},
    "5": {"seconds": 120 * 60, "fraction": 0.80},
}

# HL7 v2 outbound message types a clinic can send (ehr.hl7.oru / ehr.hl7.mdm).
HL7_OUTBOUND_TYPES = ("ORU^R01", "MDM^T02")


def default_hl7_outbound_types() -> list[str]:
    """A fresh default: ORU^R01 only (the message every EHR results interface accepts)."""
    return ["ORU^R01"]


def validate_hl7_outbound_types(value: Any) -> None:
    """A list of distinct types from HL7_OUTBOUND_TYPES (may be empty: no HL7 rows); ValidationError otherwise."""
    if not isinstance(value, list) or any(item not in HL7_OUTBOUND_TYPES for item in value):
        raise ValidationError(f"HL7 outbound types must be a list drawn from {', '.join(HL7_OUTBOUND_TYPES)}.")
    if len(set(value)) != len(value):
        raise ValidationError("HL7 outbound types must not repeat.")


# Offered load (arrival rate x mean handle time / nurses on duty) at or above which claims switch from
# accumulating priority to strict priority (triage.selectors.queue_discipline).
DEFAULT_OVERLOAD_THRESHOLD = 0.95


class KpiTarget(NamedTuple):
    """One level's KPI: `fraction` (0-1] of cases reached by a nurse within `seconds` of arrival."""

    seconds: int
    fraction: float


def default_kpi_targets() -> dict[str, dict[str, float]]:
    """Return a fresh copy of the CTAS KPI targets (JSON keys "1".."5")."""
    return {level: dict(target) for level, target in CTAS_KPI_TARGETS.items()}


def validate_kpi_targets(value: Any) -> None:
    """`{"<level 1-5>": {"seconds": int >= 0, "fraction": 0 < f <= 1}}`; raises ValidationError otherwise."""
    if not isinstance(value, dict):
        raise ValidationError("KPI targets must be an object keyed by acuity level 1-5.")
    for level, target in value.items():
        if str(level) not in CTAS_TARGET_SECONDS:
            raise ValidationError(f"Unknown acuity level {level!r} (expected 1-5).")
        if not isinstance(target, dict) or set(target) != {"seconds", "fraction"}:
            raise ValidationError(f'Level {level}: expected {{"seconds": ..., "fraction": ...}}.')
        seconds, fraction = target["seconds"], target["fraction"]
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise ValidationError(f"Level {level}: seconds must be a whole number >= 0, got {seconds!r}.")
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
            raise ValidationError(f"Level {level}: fraction must be in (0, 1], got {fraction!r}.")


def validate_accumulation_rates(value: Any) -> None:
    """`{"<level 1-5>": rate > 0}` (relative accrual rates; only their ratios matter), or `{}` for defaults."""
    if not isinstance(value, dict):
        raise ValidationError("Accumulation rates must be an object keyed by acuity level 1-5 (or {}).")
    for level, rate in value.items():
        if str(level) not in CTAS_TARGET_SECONDS:
            raise ValidationError(f"Unknown acuity level {level!r} (expected 1-5).")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
            raise ValidationError(f"Level {level}: the rate must be a finite number > 0, got {rate!r}.")


class Clinic(models.Model):
    """A tenant: one clinic or practice whose after-hours line CareLine answers.

    `twilio_number` (E.164) is the number patients dial; an inbound call is routed to the clinic whose
    number equals the call's `To`. `on_call_number` (E.164) takes warm transfers for red flags.
    `kpi_targets` holds, per acuity level ("1".."5"), the target time-to-nurse in seconds and the fraction
    of cases that must meet it (CTAS defaults; a level missing there falls back to CTAS). `accumulation_rates` are
    the accumulating-priority rates b_k tuned to those targets (`manage.py tune_priority`); empty means `b_k = 1 /
    target_k`.
    `overload_threshold`: the offered load at or above which claims use strict priority instead.
    `hl7_outbound_types`: the HL7 v2 messages each closed case produces (one outbox row per type).
    """

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="America/New_York")
    twilio_number = models.CharField(max_length=20, unique=True, help_text="E.164, e.g. +15550100100")
    on_call_number = models.CharField(max_length=20, help_text="E.164; red-flag calls are transferred here")
    # Closed-loop callbacks (issue 3): attempts before the patient is texted and the on-call paged.
    callback_max_attempts = models.PositiveSmallIntegerField(
        default=3, help_text="Unanswered callback attempts before SMS to the patient and escalation to on-call"
    )
    callback_spacing_seconds = models.PositiveIntegerField(
        default=10 * 60, help_text="Seconds between two callback attempts of one case"
    )
    callback_target_seconds = models.PositiveIntegerField(
        default=60 * 60, help_text="Seconds from arrival within which a callback case should be closed (alarm after)"
    )
    # Surge paging: off-shift nurses are paged when the estimated wait of a level exceeds this (seconds).
    surge_wait_threshold_seconds = models.PositiveIntegerField(
        default=30 * 60, help_text="Estimated wait (s) of a level above which off-shift nurses are paged"
    )
    mean_handle_seconds = models.PositiveIntegerField(
        default=12 * 60, help_text="Mean nurse handle time per case (s), used for the estimated wait"
    )
    kpi_targets = models.JSONField(
        default=default_kpi_targets,
        validators=[validate_kpi_targets],
        help_text='Per level: {"seconds": target time-to-nurse, "fraction": share of cases that must meet it}.',
    )
    accumulation_rates = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_accumulation_rates],
        help_text="Tuned accumulating-priority rates per level (manage.py tune_priority); empty = 1/target.",
    )
    overload_threshold = models.FloatField(
        default=DEFAULT_OVERLOAD_THRESHOLD,
        validators=[MinValueValidator(0.1), MaxValueValidator(10.0)],
        help_text="Offered load at or above which claims switch to strict priority (1.0 = nurses fully busy).",
    )
    hl7_outbound_types = models.JSONField(
        default=default_hl7_outbound_types,
        blank=True,
        validators=[validate_hl7_outbound_types],
        help_text="HL7 v2 messages sent per closed case when HL7_MLLP_HOST is set: ORU^R01 and/or MDM^T02.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def target_seconds(self, acuity: int) -> int:
        """Target time-to-nurse in seconds for `acuity` (1-5): `kpi_targets`, else the CTAS 2016 default."""
        kpi = (self.kpi_targets or {}).get(str(acuity))
        if kpi is not None and "seconds" in kpi:
            return int(kpi["seconds"])
        return CTAS_TARGET_SECONDS[str(acuity)]

    def kpi_target(self, acuity: int) -> KpiTarget:
        """The KPI of `acuity` (1-5): target seconds and the fraction of cases that must meet it."""
        kpi = (self.kpi_targets or {}).get(str(acuity)) or {}
        fraction = float(kpi.get("fraction", CTAS_KPI_TARGETS[str(acuity)]["fraction"]))
        return KpiTarget(seconds=self.target_seconds(acuity), fraction=fraction)


class StaffMember(models.Model):
    """A user's membership of one clinic, with a role, skills (lowercase slugs such as `pediatrics`, `spanish`,
    `behavioral-health`), languages (BCP-47 codes) and `licensed_states` (USPS codes of the states where the
    nurse holds a licence, or a multistate compact licence covers; routing offers a case whose caller is in a
    state only to nurses licensed there).

    `phone` (E.164, may be "") receives surge pages; `on_shift` says whether the nurse is rostered now
    (off-shift nurses with a phone are the ones paged when a surge starts).
    """

    class Role(models.TextChoices):
        NURSE = "nurse", "Nurse"
        SUPERVISOR = "supervisor", "Supervisor"
        ADMIN = "admin", "Clinic admin"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="staff")
    role = models.CharField(max_length=20, choices=Role.choices)
    skills = models.JSONField(default=list, blank=True)
    languages = models.JSONField(default=list, blank=True)
    phone = models.CharField(max_length=20, blank=True, help_text="E.164; surge pages are sent here")
    desk_number = models.CharField(
        max_length=20,
        blank=True,
        help_text="E.164; the phone rung first for a 'Call patient' bridge (falls back to `phone`)",
    )
    on_shift = models.BooleanField(default=True)
    licensed_states = models.JSONField(default=list, blank=True)

    class Meta:
        # The role permissions (clinics.roles): granted through the role's Group, checked with user.has_perm.
        permissions = [
            ("work_cases", "Work cases in the nurse console"),
            ("supervise_clinic", "Supervise the clinic (dashboard, alerts, co-sign acuity changes)"),
            ("cosign_acuity", "Co-sign a nurse's lowering of acuity"),
            ("grant_break_glass", "Open an older case's chart by break-glass, with a reason"),
            ("administer_clinic", "Administer the clinic (routing, protocols, interfaces, audit log)"),
            ("review_break_glass", "Review break-glass grants"),
        ]

    def __str__(self) -> str:
        return f"{self.user.get_username()} ({self.role}, {self.clinic.slug})"


AUDIT_GENESIS_HASH = "0" * 64  # `prev_hash` of the first row of a clinic's chain


def audit_hash(*, values: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 (hex) over the canonical serialisation of one audit row: its fields in `AUDIT_HASHED_FIELDS`
    order (JSON, sorted keys, no whitespace, `at` as UTC ISO-8601 with microseconds) followed by `prev_hash`.

    Changing any hashed field, or the row before it, changes the hash (tamper evidence; HIPAA 164.312(b)
    audit controls and 164.312(c)(1) integrity). Kept free of ORM access so migrations can use it.
    """
    canonical: dict[str, Any] = {}
    for name in AUDIT_HASHED_FIELDS:
        value = values.get(name)
        if name == "at" and value is not None:
            value = value.astimezone(UTC).isoformat(timespec="microseconds")
        elif value is not None and name not in ("clinic_id", "actor_id", "seq"):
            value = str(value)
        canonical[name] = value
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{payload}|{prev_hash}".encode()).hexdigest()


AUDIT_HASHED_FIELDS = (
    "clinic_id",
    "seq",
    "actor_id",
    "role",
    "action",
    "object_type",
    "object_id",
    "patient_ref",
    "reason",
    "source_ip",
    "request_id",
    "at",
)


class AuditEvent(models.Model):
    """One audited access to PHI or one security-relevant action. Append-only and hash-chained per clinic.

    `action` is a dotted verb such as `chart.read` or `case.disposition`; `patient_ref` is the FHIR
    `Patient` id when the access concerns a patient; `role` the actor's StaffMember role at the time;
    `request_id` the id `careline.middleware.RequestIdMiddleware` gave the HTTP request ("" outside one).
    `seq` numbers a clinic's rows 1, 2, 3 ... without gaps; `hash` = `audit_hash(row, prev_hash)` and
    `prev_hash` is the `hash` of the clinic's row `seq - 1` (`AUDIT_GENESIS_HASH` for seq 1). Only
    `clinics.services.audit_record` writes rows; a database trigger refuses UPDATE and DELETE
    (migration 0008), and `manage.py verify_audit_chain` recomputes the chain.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    patient_ref = models.CharField(max_length=128, blank=True)
    reason = models.CharField(max_length=2000, blank=True, help_text="why, when the person had to say (retry, skip...)")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    role = models.CharField(max_length=20, blank=True, help_text="the actor's clinic role at the time")
    request_id = models.CharField(max_length=64, blank=True, help_text="id of the HTTP request (X-Request-ID)")
    seq = models.PositiveBigIntegerField(null=True, editable=False, help_text="1, 2, 3 ... per clinic")
    prev_hash = models.CharField(max_length=64, blank=True, editable=False)
    hash = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        indexes = [
            models.Index(fields=["clinic", "patient_ref", "at"]),
            models.Index(fields=["clinic", "actor", "at"]),
        ]
        constraints = [models.UniqueConstraint(fields=["clinic", "seq"], name="clinics_auditevent_chain_seq")]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id} at {self.at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValidationError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValidationError("Audit events are append-only.")

    def hashed_values(self) -> dict[str, Any]:
        """The fields `audit_hash` covers, as stored."""
        return {name: getattr(self, name) for name in AUDIT_HASHED_FIELDS}

    def computed_hash(self) -> str:
        """The hash this row should carry given its fields and `prev_hash`."""
        return audit_hash(values=self.hashed_values(), prev_hash=self.prev_hash)
