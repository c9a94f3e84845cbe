from django.contrib import admin

from clinics.models import AuditEvent, Clinic, StaffMember


@admin.register(Clinic)
class ClinicAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "slug", "twilio_number", "on_call_number", "timezone")


@admin.register(StaffMember)
class StaffMemberAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("user", "clinic", "role")
    list_filter = ("clinic", "role")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("at", "clinic", "actor", "action", "object_type", "object_id")
    list_filter = ("clinic", "action")

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
