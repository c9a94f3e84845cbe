"""Protocols as versioned data, the clinic's disposition ladder, risk-rule settings and acuity overrides.

A `Protocol` is one symptom topic of one clinic (`code` unique per clinic). Its content lives in
`ProtocolVersion` rows: a version is `draft` while an admin edits it, `active` when calls use it (exactly
one active version per protocol, enforced by a partial unique constraint) and `retired` after another
version was activated. Versions are never edited once active: a change is a new draft (`version` + 1), so
every case keeps pointing at the exact questions its caller heard (`Case.protocol_version_ref`).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from clinics.models import Clinic

QUESTION_KEYS = ("id", "text_en", "text_es", "disposition")


def validate_questions(questions: Any, *, ladder_codes: frozenset[str] | set[str]) -> list[str]:
    """Every problem of a protocol's `questions` JSON, as sentences an admin can act on ([] when valid).

    `questions` must be a non-empty list of objects with the keys `id` (letters, digits and "-", unique),
    `text_en` and `text_es` (non-empty) and `disposition` (a code of `ladder_codes`).
    """
    if not isinstance(questions, list) or not questions:
        return ["A protocol needs at least one question."]
    errors: list[str] = []
    seen: set[str] = set()
    for number, question in enumerate(questions, start=1):
        where = f"Question {number}"
        if not isinstance(question, dict):
            errors.append(f"{where}: must be an object with {', '.join(QUESTION_KEYS)}.")
            continue
        qid = str(question.get("id", "")).strip()
        if not qid:
            errors.append(f"{where}: the id is empty.")
        elif not all(c.isalnum() or c == "-" for c in qid) or len(qid) > 40:
            errors.append(f"{where}: id {qid!r} may hold only letters, digits and '-' (at most 40).")
        elif qid in seen:
            errors.append(f"{where}: duplicate id {qid!r}.")
        seen.add(qid)
        for key, language in (("text_en", "English"), ("text_es", "Spanish")):
            if not str(question.get(key, "")).strip():
                errors.append(f"{where}: the {language} text is empty.")
        disposition = str(question.get("disposition", ""))
        if disposition not in ladder_codes:
            errors.append(f"{where}: unknown disposition code {disposition!r}.")
        unknown = set(question) - set(QUESTION_KEYS)
        if unknown:
            errors.append(f"{where}: unknown field(s) {', '.join(sorted(unknown))}.")
    return errors


class Protocol(models.Model):
    """One symptom topic of a clinic; the questions are in its versions. `position` orders the IVR menu."""

    class Audience(models.TextChoices):
        ADULT = "adult", "Adult"
        PEDIATRIC = "pediatric", "Child"
        ALL = "all", "Adult and child"

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="protocols")
    code = models.SlugField(max_length=64)
    audience = models.CharField(max_length=10, choices=Audience.choices, default=Audience.ALL)
    position = models.PositiveSmallIntegerField(default=100, help_text="Order in the IVR menu (lower first).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "code"]
        constraints = [models.UniqueConstraint(fields=["clinic", "code"], name="protocol_code_per_clinic")]

    def __str__(self) -> str:
        return f"{self.code} ({self.clinic.slug})"


class ProtocolVersion(models.Model):
    """One version of a protocol's content. Only drafts may change; `active` is what calls use.

    `questions`: list of `{"id", "text_en", "text_es", "disposition"}`, most serious first (the first "yes"
    decides; see `triage.protocols.evaluate`). `default_disposition` applies when every answer is "no".
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    protocol = models.ForeignKey(Protocol, on_delete=models.PROTECT, related_name="versions")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    title_en = models.CharField(max_length=120)
    title_es = models.CharField(max_length=120)
    questions = models.JSONField(default=list)
    default_disposition = models.CharField(max_length=32)
    source = models.CharField(
        max_length=200, blank=True, help_text="Where the content came from, e.g. 'CareLine library 2026.11.0'."
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["protocol", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["protocol", "version"], name="protocol_version_unique"),
            models.UniqueConstraint(
                fields=["protocol"], condition=models.Q(status="active"), name="protocol_one_active_version"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.protocol.code} v{self.version} ({self.status})"

    def clean(self) -> None:
        from triage.dispositions import ladder_codes

        codes = ladder_codes(self.clinic)
        errors = validate_questions(self.questions, ladder_codes=codes)
        if self.default_disposition not in codes:
            errors.append(f"Unknown default disposition code {self.default_disposition!r}.")
        if not self.title_en.strip() or not self.title_es.strip():
            errors.append("Both titles (English and Spanish) are required.")
        if errors:
            raise ValidationError(errors)


class DispositionRung(models.Model):
    """One rung of a clinic's own disposition ladder. A clinic without rows uses the default ladder
    (`triage.dispositions.DISPOSITIONS`); a clinic with rows uses exactly its active rows, by `position`."""

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="disposition_rungs")
    code = models.SlugField(max_length=32)
    display = models.CharField(max_length=120)
    display_es = models.CharField(max_length=120)
    acuity = models.PositiveSmallIntegerField()
    position = models.PositiveSmallIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["position", "acuity"]
        constraints = [
            models.UniqueConstraint(fields=["clinic", "code"], name="disposition_code_per_clinic"),
            models.CheckConstraint(condition=models.Q(acuity__gte=1, acuity__lte=5), name="disposition_acuity_1_5"),
        ]

    def __str__(self) -> str:
        return f"{self.display} ({self.clinic.slug})"


class RiskRuleSetting(models.Model):
    """A clinic's switch for one EHR-aware risk rule (`triage.risk.RULES`); rules without a row are on."""

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="risk_rule_settings")
    rule = models.CharField(max_length=40)
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["clinic", "rule"], name="risk_rule_per_clinic")]

    def __str__(self) -> str:
        return f"{self.rule}: {'on' if self.enabled else 'off'} ({self.clinic.slug})"


class AcuityOverride(models.Model):
    """A nurse's change of a case's acuity. Raising (more urgent) applies at once; lowering waits for a
    supervisor's co-sign (`pending` -> `applied`), the eCTAS rule that a nurse may raise, never silently
    lower, the system score."""

    class Status(models.TextChoices):
        PENDING = "pending", "Awaiting supervisor co-sign"
        APPLIED = "applied", "Applied"
        DECLINED = "declined", "Declined"
        STALE = "stale", "Superseded (acuity changed meanwhile)"

    case = models.ForeignKey("triage.Case", on_delete=models.CASCADE, related_name="acuity_overrides")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    from_acuity = models.PositiveSmallIntegerField()
    to_acuity = models.PositiveSmallIntegerField()
    reason = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)
    cosigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        indexes = [models.Index(fields=["clinic", "status"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(to_acuity__gte=1, to_acuity__lte=5), name="override_to_acuity_1_5"
            ),
        ]

    def __str__(self) -> str:
        return f"Case {self.case_id}: {self.from_acuity} -> {self.to_acuity} ({self.status})"

    @property
    def lowers(self) -> bool:
        """True when the change makes the case less urgent (a higher CTAS number)."""
        return self.to_acuity > self.from_acuity
