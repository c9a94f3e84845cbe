"""Service level objectives per clinic and their breach episodes."""

from __future__ import annotations

from django.db import models

from clinics.models import Clinic


class SloObjective(models.Model):
    """One clinic's service level objective, evaluated every minute over the last `window_minutes`.

    Kinds (the indicator, its unit, and which side of `threshold` is good):

    | kind                 | indicator                                                  | met when          |
    |----------------------|------------------------------------------------------------|-------------------|
    | `call_setup_success` | successful / attempted call setups (voice + video), 0..1   | value >= threshold|
    | `ivr_latency_p99`    | 99th percentile of Twilio webhook answer time, seconds     | value <= threshold|
    | `writeback_age`      | age of the oldest undelivered write-back (pending,         | value <= threshold|
    |                      | retrying, failed, dead), seconds, at evaluation time       |                   |
    | `kpi_compliance`     | cases reserved within their acuity target / counted cases  | value >= threshold|
    |                      | that arrived in the window (dashboard definition), 0..1    |                   |

    Ratio and latency indicators need at least `min_samples` events in the window; with fewer the objective is
    "no data" and an open breach stays open (it clears on evidence, never on silence).
    Suggested defaults (`ops.services.DEFAULT_OBJECTIVES`): call setup >= 0.995 over 60 min, IVR p99 <= 2 s over
    15 min (Twilio allows 15 s; callers hear silence past ~2 s), write-back age <= 900 s.
    """

    class Kind(models.TextChoices):
        CALL_SETUP_SUCCESS = "call_setup_success", "Call setup success ratio (>=)"
        IVR_LATENCY_P99 = "ivr_latency_p99", "IVR webhook p99 latency, seconds (<=)"
        WRITEBACK_AGE = "writeback_age", "Oldest undelivered write-back age, seconds (<=)"
        KPI_COMPLIANCE = "kpi_compliance", "Time-to-nurse KPI compliance ratio (>=)"

    clinic = models.ForeignKey(Clinic, on_delete=models.CASCADE, related_name="slo_objectives")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    threshold = models.FloatField(help_text="ratio 0..1 for ratios, seconds for latency and age")
    window_minutes = models.PositiveIntegerField(default=15, help_text="evaluation window, 1..60 minutes")
    min_samples = models.PositiveIntegerField(default=20, help_text="ratio/latency kinds: fewer events = no data")
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["clinic", "kind"], name="slo_one_per_kind")]

    def __str__(self) -> str:
        return f"{self.clinic.slug}: {self.kind} {self.threshold}"

    @property
    def higher_is_better(self) -> bool:
        return self.kind in (self.Kind.CALL_SETUP_SUCCESS, self.Kind.KPI_COMPLIANCE)

    def is_met(self, value: float) -> bool:
        """True when `value` of the indicator meets the objective."""
        return value >= self.threshold if self.higher_is_better else value <= self.threshold


class SloBreach(models.Model):
    """A breach episode: opened when an evaluation finds the objective missed, cleared when one finds it met.
    At most one open episode per objective (constraint), so each episode alerts once when it opens and once
    when it clears."""

    objective = models.ForeignKey(SloObjective, on_delete=models.CASCADE, related_name="breaches")
    opened_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    value_at_open = models.FloatField()
    worst_value = models.FloatField()
    last_value = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["objective"], condition=models.Q(cleared_at__isnull=True), name="slo_one_open_breach"
            )
        ]
        ordering = ["-opened_at"]

    def __str__(self) -> str:
        return f"SLO breach {self.objective} from {self.opened_at:%Y-%m-%d %H:%M}"


class SloAlert(models.Model):
    """Outbox row of one SLO alert webhook POST: written in the transaction that opens or clears a breach
    (`ops.services.slo_evaluate`), so the alert survives a crash between that commit and the POST, a broker
    outage and a receiver that is down; delivered by `ops.tasks.slo_alert_deliver` (Celery autoretry with
    exponential backoff) and re-dispatched by the beat sweep `ops.tasks.slo_alert_sweep` while undelivered.

    One row per breach state change (`event` "slo.breached" / "slo.cleared", unique with the breach).
    `body` is the JSON posted (no PHI: clinic slug, objective, figures) and carries `alert_id`, also sent as
    the `Idempotency-Key` header: delivery is at-least-once (a worker killed after the receiver answered
    and before the row is marked sent posts again), so a receiver dedupes on it.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"

    breach = models.ForeignKey(SloBreach, on_delete=models.CASCADE, related_name="alerts")
    event = models.CharField(max_length=16)
    body = models.JSONField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["breach", "event"], name="slo_alert_once_per_change")]
        indexes = [models.Index(fields=["state", "created_at"], name="slo_alert_pending")]

    def __str__(self) -> str:
        return f"SLO alert {self.event} of breach {self.breach_id} ({self.state})"
