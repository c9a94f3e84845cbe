"""EHR integration state: the write-back outbox and the HL7 message log."""

from __future__ import annotations

from django.db import models

from clinics.crypto import EncryptedDateField, EncryptedJSONField, EncryptedTextField
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
    payload = EncryptedJSONField()  # PHI (the outcome: patient, note, answers), encrypted at rest
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
    """Log of HL7 v2 messages sent or received, with their ACK status. `control_id` is MSH-10.

    Inbound rows (`ehr.hl7.listener`) are written before the ACK goes out, with MSH-3/MSH-4 and a
    processing `state`; `at` is when the frame was received. Dedupe: at most one *applied* inbound row per
    (clinic, MSH-3, MSH-4, MSH-10) (constraint `hl7_inbound_applied_once`); a resend of an applied message
    is stored as `duplicate` and ACKed AA again; a resend of a rejected one is processed afresh.
    `raw` holds the message text (PHI: it lives in the database only, never in log lines); bytes that are not
    UTF-8 are kept as backslash escapes.
    """

    class Direction(models.TextChoices):
        OUTBOUND = "out", "Outbound"
        INBOUND = "in", "Inbound"

    class State(models.TextChoices):
        RECEIVED = "received", "Received (stored, not yet applied)"
        APPLIED = "applied", "Applied (ACK AA)"
        DUPLICATE = "duplicate", "Duplicate of an applied message (ACK AA, not re-applied)"
        ERROR = "error", "Cannot be applied (ACK AE)"
        REJECTED = "rejected", "Cannot be parsed or not supported (ACK AR)"

    clinic = models.ForeignKey(Clinic, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    direction = models.CharField(max_length=3, choices=Direction.choices)
    message_type = models.CharField(max_length=20)
    control_id = models.CharField(max_length=64, db_index=True)
    raw = EncryptedTextField()  # PHI, encrypted at rest
    ack_code = models.CharField(max_length=2, blank=True)
    ack_text = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField(auto_now_add=True)
    # Inbound only (blank on outbound rows).
    sending_application = models.CharField(max_length=255, blank=True, help_text="MSH-3")
    sending_facility = models.CharField(max_length=255, blank=True, help_text="MSH-4")
    state = models.CharField(max_length=10, choices=State.choices, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["clinic", "sending_application", "sending_facility", "control_id"],
                condition=models.Q(direction="in", state="applied"),
                name="hl7_inbound_applied_once",
            )
        ]

    def __str__(self) -> str:
        return f"HL7 {self.direction} {self.message_type} {self.control_id} ({self.ack_code or 'no ACK'})"


class PatientLink(models.Model):
    """A patient as the clinic's ADT feed knows them: MRN, FHIR Patient id when known, demographics.

    Scoped to one clinic (the listener serves one clinic: `mllp_listen --clinic`). `mrn` is PID-3.1 of the
    repetition with identifier type MR (else the first), `mrn_authority` its PID-3.4 (assigning authority);
    (clinic, mrn_authority, mrn) is unique. `fhir_id` comes from a PID-3 repetition whose assigning authority
    is `FHIR` (the form CareLine's own ORU uses). After an ADT^A40 merge the prior MRN's row stays as an
    alias with `merged_into` set to the survivor; `resolve()` follows it, so a lookup by the old MRN lands on
    the surviving patient. Name, birth date and phones are PHI: fine in the database, never in log lines.
    """

    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="patient_links")
    mrn = models.CharField(max_length=64)
    mrn_authority = models.CharField(max_length=64, blank=True)
    fhir_id = models.CharField(max_length=64, blank=True)
    # PHI, encrypted at rest (clinics.crypto). `mrn` stays plaintext: it is the lookup and uniqueness key.
    family_name = EncryptedTextField(max_length=200, blank=True)
    given_name = EncryptedTextField(max_length=200, blank=True)
    birth_date = EncryptedDateField(null=True, blank=True)
    phones = EncryptedJSONField(default=list, blank=True, help_text="E.164 where parseable, else as sent")
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="aliases", help_text="ADT^A40"
    )
    last_control_id = models.CharField(max_length=64, blank=True, help_text="MSH-10 of the last applied message")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["clinic", "mrn_authority", "mrn"], name="patient_link_mrn_unique")
        ]
        indexes = [models.Index(fields=["clinic", "fhir_id"], name="patient_link_fhir")]

    def __str__(self) -> str:
        return f"PatientLink {self.pk} (clinic {self.clinic_id}{', merged' if self.merged_into_id else ''})"

    def resolve(self) -> PatientLink:
        """The surviving link: self, or the end of the `merged_into` chain (A40 keeps chains one deep)."""
        link = self
        for _ in range(10):  # chains are flattened on merge; the bound only guards against a bad row
            if link.merged_into is None:
                return link
            link = link.merged_into
        return link
