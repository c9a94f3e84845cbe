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
    `skipped` (nothing to send, e.g. caller not identified, or an analyst skipped it), `held` (the caller's EHR
    lookup is still pending because the EHR was down during the call; released by `writeback_patient_resolved`),
    `dead` (HL7 only: the receiver refused the message for good, AR/CR, or answered AE/CE
    `HL7_AE_MAX_ATTEMPTS` times; the clinic's supervisors are alerted and an analyst retries or skips it).

    HL7 rows carry `message_type` (`ORU^R01` or `MDM^T02`: the destination, one row per type the clinic sends)
    and `ordering_key` (the patient: `fhir:<Patient id>`, else `mrn:<MRN>`, else `case:<case uuid>`). A row is
    sent only after every earlier row (created_at, pk) of the same clinic, message type and ordering key is
    `sent` or `skipped`: strict order per patient and destination, as interface engines keep it.
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
        DEAD = "dead", "Dead (refused; needs an analyst)"

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
    # Issue 4 (HL7 outbound): the destination and the strict-ordering key of HL7 rows ("" on FHIR rows).
    message_type = models.CharField(max_length=20, blank=True, help_text="HL7 rows: ORU^R01 or MDM^T02")
    ordering_key = models.CharField(max_length=160, blank=True, help_text="HL7 rows: sent in order per key")
    operator_note = models.TextField(blank=True, help_text="the analyst's reason for the last retry or skip")

    class Meta:
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="writeback_due"),
            models.Index(fields=["clinic", "target", "message_type", "ordering_key"], name="writeback_order"),
        ]

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
