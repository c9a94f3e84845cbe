"""Admin views of IVR state: call legs (read-only) and the SMS outbox the demo shows."""

from django.contrib import admin

from ivr.models import CallLeg, OutboundMessage


@admin.register(CallLeg)
class CallLegAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("call_sid", "clinic", "step", "language", "ehr_status", "case", "call_status", "created_at")
    list_filter = ("clinic", "step", "language", "ehr_status")
    search_fields = ("call_sid",)
    readonly_fields = [field.name for field in CallLeg._meta.fields]


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("pk", "clinic", "case", "state", "attempts", "created_at", "sent_at")
    list_filter = ("clinic", "state")
    readonly_fields = ("provider_sid", "attempts", "last_error", "created_at", "last_attempt_at", "sent_at")
