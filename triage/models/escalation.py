"""Escalation and closed-loop callback records: `CallbackAttempt`, `SurgeEpisode`."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from clinics.models import Clinic
from triage.models.case import Case


class CallbackAttempt(models.Model):
    """One attempt by a nurse to call a callback case back, with its result.

    `number` counts attempts of the case from 1. Results other than `answered` count as unanswered; after the
    clinic's `callback_max_attempts` unanswered attempts (or one `wrong_number`) the loop is closed by SMS
    to the patient and a page to the on-call clinician (`triage.callbacks`).
    """

    class Result(models.TextChoices):
        ANSWERED = "answered", "Answered"
        NO_ANSWER = "no_answer", "No answer"
        VOICEMAIL = "voicemail", "Voicemail left"
        WRONG_NUMBER = "wrong_number", "Wrong number"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="callback_attempts")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    nurse = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    number = models.PositiveSmallIntegerField()
    result = models.CharField(max_length=16, choices=Result.choices)
    at = models.DateTimeField()

    class Meta:
        ordering = ["case", "number"]
        constraints = [models.UniqueConstraint(fields=["case", "number"], name="callback_attempt_number_unique")]

    def __str__(self) -> str:
        return f"Callback attempt {self.number} of case {self.case_id}: {self.result}"


class SurgeEpisode(models.Model):
    """A period during which the estimated wait of one acuity level exceeded the clinic's surge threshold.

    Off-shift nurses are paged once when the episode starts; the episode ends (`ended_at`) when the estimated
    wait falls back under the threshold, and a later surge opens a new episode (and pages again).
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="surge_episodes")
    acuity = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    estimated_wait_seconds = models.PositiveIntegerField(help_text="Estimated wait when the episode started")
    paged = models.PositiveSmallIntegerField(default=0, help_text="Off-shift nurses paged")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "acuity"], condition=models.Q(ended_at__isnull=True), name="surge_one_open_per_level"
            )
        ]

    def __str__(self) -> str:
        return f"Surge level {self.acuity} at {self.clinic_id} from {self.started_at:%H:%M}"
