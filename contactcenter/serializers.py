"""API shapes of the nurse console (DRF). Output serializers are read-only; input serializers validate.

Times are ISO 8601 UTC; `acuity` is the CTAS level 1 (most urgent) .. 5; `state` a `triage.models.CaseState`
value; disposition codes come from the clinic's ladder (`triage.dispositions.ladder_for`).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from contactcenter.selectors import acuity_label, case_protocol_title, disposition_display
from ehr.models import WriteBack
from triage.models import (
    AcuityOverride,
    CallbackAttempt,
    Case,
    CaseEvent,
    Protocol,
    ProtocolVersion,
    RoutingLedgerEntry,
)


class WriteBackSerializer(serializers.ModelSerializer[WriteBack]):
    """One EHR write-back outbox row: target (`fhir`, `hl7v2`) and delivery state."""

    # A plain string in the schema: a second enum named "state" would collide with the case state's.
    state = serializers.CharField(
        read_only=True,
        help_text="pending (not yet tried), retrying (failed; retried with backoff), sent (acknowledged), "
        "failed (rejected; needs a person), skipped (nothing to send, e.g. caller not identified)",
    )

    class Meta:
        model = WriteBack
        fields = ["target", "state", "attempts", "last_error", "sent_at"]
        read_only_fields = fields


class CaseEventSerializer(serializers.ModelSerializer[CaseEvent]):
    """One timeline entry; `actor` is the username of the staff member who acted, or null."""

    actor = serializers.SerializerMethodField()

    class Meta:
        model = CaseEvent
        fields = ["kind", "at", "summary", "actor"]
        read_only_fields = fields

    def get_actor(self, event: CaseEvent) -> str | None:
        return event.actor.get_username() if event.actor else None


class RoutingLedgerEntrySerializer(serializers.ModelSerializer[RoutingLedgerEntry]):
    """One routing step: `kind` (routed, offered, skipped, timeout, relaxed, overflowed, escalated), `nurse`
    (username or null) and the `reason`."""

    nurse = serializers.SerializerMethodField()

    class Meta:
        model = RoutingLedgerEntry
        fields = ["kind", "at", "nurse", "reason"]
        read_only_fields = fields

    def get_nurse(self, entry: RoutingLedgerEntry) -> str | None:
        return entry.nurse.get_username() if entry.nurse else None


class RoutingSerializer(serializers.Serializer[Case]):
    """Where routing put the case and who may take it (see `triage.models.RoutingRule`), with its ledger."""

    queue = serializers.SerializerMethodField()
    rule = serializers.SerializerMethodField()
    required_skills = serializers.ListField(child=serializers.CharField(), read_only=True)
    required_license_state = serializers.CharField(read_only=True)
    priority_boost_seconds = serializers.IntegerField(read_only=True)
    escalation_policy = serializers.CharField(read_only=True)
    fallback_action = serializers.CharField(read_only=True)
    fallback_at = serializers.DateTimeField(read_only=True)
    skills_relaxed_at = serializers.DateTimeField(read_only=True)
    ledger = serializers.SerializerMethodField()

    def get_queue(self, case: Case) -> str | None:
        return case.queue.slug if case.queue else None

    def get_rule(self, case: Case) -> str | None:
        return case.routing_rule.name if case.routing_rule else None

    @extend_schema_field(RoutingLedgerEntrySerializer(many=True))
    def get_ledger(self, case: Case) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = RoutingLedgerEntrySerializer(self.context["routing_ledger"], many=True).data
        return data


class AnswerSerializer(serializers.Serializer[dict[str, Any]]):
    """One protocol question as the caller answered it."""

    question = serializers.CharField()
    text = serializers.CharField()
    answer = serializers.BooleanField()


class CaseSerializer(serializers.ModelSerializer[Case]):
    """A case as listed: acuity, state, who holds it, patient reference (FHIR Patient id, "" if unidentified)."""

    acuity_label = serializers.SerializerMethodField(help_text='CTAS level and name, e.g. "2 · Emergent"')
    protocol_title = serializers.SerializerMethodField()
    reserved_by = serializers.SerializerMethodField(help_text="username of the nurse holding the case, or null")
    suggested_disposition_display = serializers.SerializerMethodField()
    disposition_display = serializers.SerializerMethodField()

    class Meta:
        model = Case
        fields = [
            "id",
            "uuid",
            "state",
            "acuity",
            "acuity_label",
            "channel",
            "language",
            "patient_fhir_id",
            "patient_display",
            "ehr_context_pending",
            "protocol_code",
            "protocol_title",
            "suggested_disposition",
            "suggested_disposition_display",
            "disposition",
            "disposition_display",
            "contact_preference",
            "escalated",
            "reserved_by",
            "arrived_at",
            "reserved_at",
            "reservation_expires_at",
            "accepted_at",
            "closed_at",
        ]
        read_only_fields = fields

    def get_acuity_label(self, case: Case) -> str:
        return acuity_label(case.acuity)

    def get_protocol_title(self, case: Case) -> str:
        return case_protocol_title(case)

    def get_reserved_by(self, case: Case) -> str | None:
        return case.reserved_by.get_username() if case.reserved_by else None

    def get_suggested_disposition_display(self, case: Case) -> str:
        return disposition_display(case.suggested_disposition, case.clinic)

    def get_disposition_display(self, case: Case) -> str:
        return disposition_display(case.disposition, case.clinic)


class CaseDetailSerializer(CaseSerializer):
    """A case with the caller's answers, the timeline and the EHR write-back states.

    Needs `context["timeline"]` (CaseEvents), `context["writebacks"]` (WriteBacks) and
    `context["routing_ledger"]` (RoutingLedgerEntries).
    """

    callback_number = serializers.CharField(read_only=True, help_text="E.164")
    answers = AnswerSerializer(many=True, read_only=True)
    red_flags = serializers.ListField(child=serializers.CharField(), read_only=True)
    note = serializers.CharField(read_only=True)
    timeline = serializers.SerializerMethodField()
    writebacks = serializers.SerializerMethodField()
    routing = serializers.SerializerMethodField()

    class Meta(CaseSerializer.Meta):
        fields = [
            *CaseSerializer.Meta.fields,
            "callback_number",
            "answers",
            "red_flags",
            "note",
            "timeline",
            "writebacks",
            "routing",
        ]
        read_only_fields = fields

    @extend_schema_field(RoutingSerializer)
    def get_routing(self, case: Case) -> dict[str, Any]:
        data: dict[str, Any] = RoutingSerializer(case, context=self.context).data
        return data

    @extend_schema_field(CaseEventSerializer(many=True))
    def get_timeline(self, case: Case) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = CaseEventSerializer(self.context["timeline"], many=True).data
        return data

    @extend_schema_field(WriteBackSerializer(many=True))
    def get_writebacks(self, case: Case) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = WriteBackSerializer(self.context["writebacks"], many=True).data
        return data


class DispositionInputSerializer(serializers.Serializer[dict[str, Any]]):
    """The nurse-confirmed disposition (a code of the clinic's ladder; an unknown code answers 400) and a
    free-text note."""

    disposition = serializers.CharField(max_length=32, help_text="a code of GET dispositions/")
    note = serializers.CharField(allow_blank=True, required=False, default="", max_length=10000)


class CallbackAttemptInputSerializer(serializers.Serializer[dict[str, Any]]):
    """The result of one callback attempt."""

    result = serializers.ChoiceField(choices=CallbackAttempt.Result.values)


class DispositionSerializer(serializers.Serializer[Any]):
    """One rung of the disposition ladder and the CTAS acuity it implies."""

    code = serializers.CharField()
    display = serializers.CharField()
    display_es = serializers.CharField()
    acuity = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer[Any]):
    """An error reply: `detail` says what went wrong."""

    detail = serializers.CharField()


class ProtocolVersionSerializer(serializers.ModelSerializer[ProtocolVersion]):
    """One version of a protocol: number, status (draft / active / retired), titles, when."""

    class Meta:
        model = ProtocolVersion
        fields = [
            "id",
            "version",
            "status",
            "title_en",
            "title_es",
            "default_disposition",
            "created_at",
            "activated_at",
        ]
        read_only_fields = fields


class ProtocolSerializer(serializers.ModelSerializer[Protocol]):
    """A protocol of the clinic: code, audience (adult / pediatric / all), menu position, versions (newest
    first) and the active version number (null while only drafts exist)."""

    versions = ProtocolVersionSerializer(many=True, read_only=True)
    active_version = serializers.SerializerMethodField()
    questionnaire_url = serializers.SerializerMethodField()

    class Meta:
        model = Protocol
        fields = ["id", "code", "audience", "position", "active_version", "questionnaire_url", "versions"]
        read_only_fields = fields

    def get_active_version(self, protocol: Protocol) -> int | None:
        return next((v.version for v in protocol.versions.all() if v.status == "active"), None)

    def get_questionnaire_url(self, protocol: Protocol) -> str:
        return f"/api/v1/protocols/{protocol.pk}/questionnaire/"


class AcuityChangeInputSerializer(serializers.Serializer[dict[str, Any]]):
    """The new acuity (CTAS 1-5) and the reason (required)."""

    acuity = serializers.IntegerField(min_value=1, max_value=5)
    reason = serializers.CharField(max_length=2000)


class CosignInputSerializer(serializers.Serializer[dict[str, Any]]):
    """`approve`: true co-signs (the lower acuity applies), false declines."""

    approve = serializers.BooleanField()


class AcuityOverrideSerializer(serializers.ModelSerializer[AcuityOverride]):
    """An acuity change: from/to level, reason, status (pending / applied / declined / stale), who and when."""

    requested_by = serializers.SerializerMethodField()
    cosigned_by = serializers.SerializerMethodField()

    class Meta:
        model = AcuityOverride
        fields = [
            "id",
            "case",
            "from_acuity",
            "to_acuity",
            "reason",
            "status",
            "requested_by",
            "requested_at",
            "cosigned_by",
            "decided_at",
        ]
        read_only_fields = fields

    def get_requested_by(self, override: AcuityOverride) -> str:
        return override.requested_by.get_username()

    def get_cosigned_by(self, override: AcuityOverride) -> str | None:
        return override.cosigned_by.get_username() if override.cosigned_by else None
