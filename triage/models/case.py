"""Triage cases and their timeline."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from clinics.crypto import EncryptedDateField, EncryptedJSONField, EncryptedTextField
from clinics.models import Clinic
from triage.models.routing import Queue, RoutingRule


class CaseState(models.TextChoices):
    """Case life cycle: queued -> reserved -> in_progress -> wrap_up -> closed, plus the two exits
    `abandoned` (the caller left before anyone worked the case) and `transferred` (red flag: warm transfer
    to the on-call number, never queued; DESIGN §5)."""

    QUEUED = "queued", "Queued"
    RESERVED = "reserved", "Reserved"
    IN_PROGRESS = "in_progress", "In progress"
    WRAP_UP = "wrap_up", "Wrap-up"
    CLOSED = "closed", "Closed"
    ABANDONED = "abandoned", "Abandoned"
    TRANSFERRED = "transferred", "Transferred (red flag)"


OPEN_STATES = (CaseState.QUEUED, CaseState.RESERVED, CaseState.IN_PROGRESS, CaseState.WRAP_UP)


class Case(models.Model):
    """One patient's after-hours request, across every channel it moves through.

    `acuity` is the CTAS level (1 most urgent .. 5); `suggested_disposition` comes from the protocol, and
    `disposition` is the nurse-confirmed one (`triage.dispositions`). `arrived_at` is when the case entered
    the queue; an expired reservation returns it with this time unchanged. `answers` is a list of
    `{"question": id, "text": str, "answer": bool}` in the order asked.
    """

    class Channel(models.TextChoices):
        VOICE = "voice", "Phone (IVR)"
        SMS = "sms", "SMS"
        WEB = "web", "Web"

    class ContactPreference(models.TextChoices):
        HOLD = "hold", "Holding on the line"
        CALLBACK = "callback", "Callback"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="cases")
    state = models.CharField(max_length=20, choices=CaseState.choices, default=CaseState.QUEUED)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.VOICE)
    language = models.CharField(max_length=8, default="en")

    # Patient: FHIR Patient id when identified (birth date confirmed), else unidentified.
    patient_fhir_id = models.CharField(max_length=128, blank=True)
    # PHI, encrypted at rest (clinics.crypto; never filtered or ordered on in SQL).
    patient_display = EncryptedTextField(max_length=200, blank=True)
    patient_birth_date = EncryptedDateField(null=True, blank=True)
    callback_number = EncryptedTextField(max_length=20, help_text="E.164")
    ehr_context_pending = models.BooleanField(
        default=False, help_text="The EHR could not be reached during the call; lookup is retried."
    )

    protocol_code = models.CharField(max_length=64, blank=True)
    protocol_version = models.CharField(max_length=32, blank=True)
    protocol_version_ref = models.ForeignKey(
        "triage.ProtocolVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="cases",
        help_text="The exact protocol version the caller was triaged with (None: no protocol, or the built-in "
        "library was used because the clinic had none).",
    )
    # EHR-aware risk modifiers applied (`triage.risk`): [{"rule", "explanation", "from_acuity", "to_acuity"}].
    risk_modifiers = models.JSONField(default=list, blank=True)
    answers = EncryptedJSONField(default=list, blank=True)  # PHI: the caller's symptoms
    red_flags = models.JSONField(default=list, blank=True)
    acuity = models.PositiveSmallIntegerField()
    suggested_disposition = models.CharField(max_length=32, blank=True)
    disposition = models.CharField(max_length=32, blank=True)
    note = EncryptedTextField(blank=True)
    contact_preference = models.CharField(
        max_length=10, choices=ContactPreference.choices, default=ContactPreference.CALLBACK
    )
    escalated = models.BooleanField(default=False)
    escalated_at = models.DateTimeField(null=True, blank=True)
    # A callback case whose attempt went unanswered waits in the queue (arrival time kept) until this time.
    callback_due_at = models.DateTimeField(null=True, blank=True)

    reserved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    arrived_at = models.DateTimeField(null=True, blank=True)
    reserved_at = models.DateTimeField(null=True, blank=True)
    reservation_expires_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    wrap_up_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    abandoned_at = models.DateTimeField(null=True, blank=True)
    transferred_at = models.DateTimeField(null=True, blank=True)

    # Routing (`triage.routing.route` at enqueue; see RoutingRule for the meaning of each action).
    caller_state = models.CharField(max_length=2, blank=True, help_text="US state of the patient's address, or ''")
    in_business_hours = models.BooleanField(null=True, blank=True, help_text="Arrived in the clinic's hours")
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.PROTECT, related_name="cases")
    routing_rule = models.ForeignKey(RoutingRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    required_skills = models.JSONField(default=list, blank=True)
    required_license_state = models.CharField(max_length=2, blank=True)
    priority_boost_seconds = models.PositiveIntegerField(default=0)
    # `arrived_at - priority_boost_seconds`, set only for boosted cases: they are ranked by this instant, so a
    # boosted case is FIFO among the boosted cases of its level (DESIGN §5 stays O(levels)).
    priority_since = models.DateTimeField(null=True, blank=True)
    escalation_policy = models.CharField(max_length=64, blank=True)
    fallback_at = models.DateTimeField(null=True, blank=True, help_text="When the rule's fallback applies")
    fallback_action = models.CharField(max_length=16, blank=True)
    fallback_queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    skills_relaxed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The per-level queue heads (DESIGN §5): one index range scan per acuity level.
            models.Index(fields=["clinic", "state", "acuity", "arrived_at"], name="case_queue_head"),
            models.Index(fields=["state", "reservation_expires_at"], name="case_reservation_expiry"),
            # A nurse's open case, looked up on every claim: without it the lookup reads every case she ever held.
            models.Index(
                fields=["clinic", "reserved_by", "reserved_at"],
                name="case_open_by_nurse",
                condition=models.Q(state__in=["reserved", "in_progress"]),
            ),
            models.Index(
                fields=["clinic", "state", "acuity", "priority_since"],
                name="case_boosted_queue_head",
                condition=models.Q(priority_boost_seconds__gt=0),
            ),
            models.Index(fields=["state", "fallback_at"], name="case_routing_fallback_due"),
            # Queued cases with routing requirements (`triage.routing.RESTRICTED`), for the claim's skip probe.
            models.Index(
                fields=["clinic", "state", "acuity", "arrived_at"],
                name="case_routing_restricted",
                condition=(models.Q(skills_relaxed_at__isnull=True) & ~models.Q(required_skills=[]))
                | ~models.Q(required_license_state=""),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(acuity__gte=1, acuity__lte=5), name="case_acuity_1_5"),
        ]

    def __str__(self) -> str:
        return f"Case {self.pk} ({self.get_state_display()}, acuity {self.acuity})"


class CaseEvent(models.Model):
    """One entry of a case's timeline: the "one continuous conversation" across channels.

    `kind` names what happened; `detail` holds the facts (JSON); `summary` is the line a nurse reads. Both are
    encrypted at rest (`clinics.crypto`): a summary can quote the caller (speech, a note's first line), so
    filter timelines on `kind`/`at` in SQL and on the text in Python.
    """

    class Kind(models.TextChoices):
        IVR = "ivr", "IVR"
        ENQUEUED = "enqueued", "Queued"
        RESERVED = "reserved", "Reserved"
        RESERVATION_EXPIRED = "reservation_expired", "Reservation expired"
        ACCEPTED = "accepted", "Accepted"
        DISPOSITION = "disposition", "Disposition"
        CLOSED = "closed", "Closed"
        TRANSFERRED = "transferred", "Warm transfer"
        ABANDONED = "abandoned", "Abandoned"
        CALL = "call", "Call"
        SMS = "sms", "SMS"
        EHR = "ehr", "EHR"
        WRITEBACK = "writeback", "Write-back"
        NOTE = "note", "Note"
        ESCALATED = "escalated", "Escalated"
        RETRIAGE = "retriage", "Re-triage"
        CALLBACK_ATTEMPT = "callback_attempt", "Callback attempt"
        RECONCILED = "reconciled", "Reconciled"
        RISK = "risk", "Risk modifier"
        ACUITY_OVERRIDE = "acuity_override", "Acuity override"
        VIDEO = "video", "Video visit"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="events")
    clinic = models.ForeignKey(Clinic, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    summary = EncryptedTextField(max_length=500)
    detail = EncryptedJSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["case", "at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M:%S}"
