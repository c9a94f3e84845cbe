"""Break-glass grants: time-limited access to an older case's chart, with a written reason, for review."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from clinics.crypto import EncryptedTextField
from clinics.models import Clinic
from triage.models.case import Case


class BreakGlassGrant(models.Model):
    """A supervisor's break-glass access to the chart of one case of their clinic (`triage.breakglass`).

    Valid from `granted_at` to `expires_at` (BREAKGLASS_GRANT_MINUTES, 60) for `user` only. `reason` is the
    written justification (encrypted at rest: it may name the patient). Every grant is flagged for review
    until a clinic admin marks it `reviewed_at` / `reviewed_by` with a `review_note`.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="break_glass_grants")
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="break_glass_grants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="break_glass_grants")
    reason = EncryptedTextField()
    granted_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    review_note = models.CharField(max_length=2000, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["clinic", "reviewed_at", "granted_at"]),
            models.Index(fields=["case", "user", "expires_at"]),
        ]

    def __str__(self) -> str:
        return f"break-glass #{self.pk} case {self.case_id} user {self.user_id}"

    @property
    def active(self) -> bool:
        return self.granted_at <= timezone.now() < self.expires_at
