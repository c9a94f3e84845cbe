"""EHR integration state: the write-back outbox and the HL7 message log."""

from __future__ import annotations

from django.db import models

from clinics.models import Clinic


class WriteBack(models.Model):
    """Outbox row: one outcome to deliver to one target, written in the same transaction as the disposition.

    `source_id` is the triage case id (ehr does not import triage; DESIGN §3). `payload` is the serialised
    `ehr.types.Outcome`. `idempotency_key` is stable per (case, target): the FHIR bundle uses conditional
    create on identifiers derived from it, HL7 uses it as MSH-10. State: `pending` (not yet tried),
    `retrying` (failed, `next_attempt_at` set), `sent` (acknowledged), `failed` (rejected; needs a person),
    `skipped` (nothing to send, e.g. caller not identified), `held` (the caller's EHR lookup is still pending
    because the EHR was down during the call; released by `writeback_patient_resolved`).
    """

    class Target(models.TextChoices):
        FHIR = "fhir", "FHIR R4"
        HL7V2 = "hl7v2", "HL7 v2 (MLLP)"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        HELD = "held", "Held (patient identity pending)"

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="writebacks")
    source_id = models.BigIntegerField(db_index=True, help_text="triage.Case id")
    target = models.CharField(max_length=10, choices=Target.choices)
    idempotency_key = models.CharField(max_length=128, unique=True)
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, help_text="a worker is sending until then")
    response = models.JSONField(default=dict, blank=True, help_text="ids / ACK of what the EHR stored")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="writeback_due")]

    def __str__(self) -> str:
        return f"WriteBack {self.pk} (case {self.source_id}, {self.target}, {self.state})"


class Hl7Message(models.Model):
    """Log of HL7 v2 messages sent or received, with their ACK status. `control_id` is MSH-10."""

    class Direction(models.TextChoices):
        OUTBOUND = "out", "Outbound"
        INBOUND = "in", "Inbound"

    clinic = models.ForeignKey(Clinic, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    message_type = models.CharField(max_length=20)
    control_id = models.CharField(max_length=64, db_index=True)
    raw = models.TextField()
    ack_code = models.CharField(max_length=2, blank=True)
    ack_text = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"HL7 {self.direction} {self.message_type} {self.control_id} ({self.ack_code or 'no ACK'})"
