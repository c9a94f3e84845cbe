"""Admin views of IVR state: call legs (read-only), the SMS outbox the demo shows, inbound texts, "Call patient"
calls and reminder campaigns (read-only: they change only through their services)."""

from django.contrib import admin

from ivr.models import (
    AppointmentReminder,
    CallLeg,
    InboundMessage,
    OutboundCall,
    OutboundMessage,
    ReminderCampaign,
)


@admin.register(CallLeg)
class CallLegAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("call_sid", "clinic", "step", "language", "ehr_status", "case", "call_status", "created_at")
    list_filter = ("clinic", "step", "language", "ehr_status")
    search_fields = ("call_sid",)
    readonly_fields = [field.name for field in CallLeg._meta.fields]


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("pk", "clinic", "case", "purpose", "state", "delivery_status", "attempts", "created_at", "sent_at")
    list_filter = ("clinic", "state", "delivery_status")
    readonly_fields = ("provider_sid", "attempts", "last_error", "created_at", "last_attempt_at", "sent_at")


class _ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(InboundMessage)
class InboundMessageAdmin(_ReadOnly):
    list_display = ("message_sid", "clinic", "case", "keyword", "received_at")
    list_filter = ("clinic", "keyword")
    exclude = ("from_number", "body")  # PHI: read on the audited case page


@admin.register(OutboundCall)
class OutboundCallAdmin(_ReadOnly):
    list_display = ("pk", "clinic", "case", "nurse", "reason", "state", "created_at", "ended_at")
    list_filter = ("clinic", "state", "reason")
    exclude = ("nurse_number", "patient_number")


@admin.register(ReminderCampaign)
class ReminderCampaignAdmin(_ReadOnly):
    list_display = ("pk", "clinic", "name", "window_start", "window_end", "state", "created_at", "finished_at")
    list_filter = ("clinic", "state")


@admin.register(AppointmentReminder)
class AppointmentReminderAdmin(_ReadOnly):
    list_display = ("pk", "campaign", "appointment_id", "appointment_start", "state", "reply", "sent_at")
    list_filter = ("state", "reply")
    exclude = ("to", "number_digest")
