"""Tenants (clinics), their staff, and the append-only audit log."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# CTAS 2016 time-to-nurse/physician targets in seconds per acuity level (1 = resuscitation: immediate).
CTAS_TARGET_SECONDS: dict[str, int] = {"1": 0, "2": 15 * 60, "3": 30 * 60, "4": 60 * 60, "5": 120 * 60}


def default_acuity_targets() -> dict[str, int]:
    """Return a fresh copy of the CTAS default targets (JSON keys are strings "1".."5", values seconds)."""
    return dict(CTAS_TARGET_SECONDS)


class Clinic(models.Model):
    """A tenant: one clinic or practice whose after-hours line CareLine answers.

    `twilio_number` (E.164) is the number patients dial; an inbound call is routed to the clinic whose
    number equals the call's `To`. `on_call_number` (E.164) takes warm transfers for red flags.
    `acuity_targets` maps acuity level ("1".."5") to the target time-to-nurse in seconds (CTAS defaults).
    """

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="America/New_York")
    twilio_number = models.CharField(max_length=20, unique=True, help_text="E.164, e.g. +15550100100")
    on_call_number = models.CharField(max_length=20, help_text="E.164; red-flag calls are transferred here")
    acuity_targets = models.JSONField(default=default_acuity_targets)
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
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def target_seconds(self, acuity: int) -> int:
        """Target time-to-nurse in seconds for `acuity` (1-5), falling back to the CTAS default."""
        return int(self.acuity_targets.get(str(acuity), CTAS_TARGET_SECONDS[str(acuity)]))


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
    on_shift = models.BooleanField(default=True)
    licensed_states = models.JSONField(default=list, blank=True)

    def __str__(self) -> str:
        return f"{self.user.get_username()} ({self.role}, {self.clinic.slug})"


class AuditEvent(models.Model):
    """One audited access to PHI or one security-relevant action. Append-only: rows are never changed.

    `action` is a dotted verb such as `chart.read` or `case.disposition`; `patient_ref` is the FHIR
    `Patient` id when the access concerns a patient.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    patient_ref = models.CharField(max_length=128, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["clinic", "patient_ref", "at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id} at {self.at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValidationError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValidationError("Audit events are append-only.")
