from django.contrib import admin

from triage.models import AcuityOverride, Case, CaseEvent, DispositionRung, ProtocolVersion, RiskRuleSetting


class CaseEventInline(admin.TabularInline):  # type: ignore[type-arg]
    model = CaseEvent
    extra = 0
    readonly_fields = ("at", "kind", "summary", "actor", "detail")


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "clinic", "state", "acuity", "arrived_at", "disposition")
    list_filter = ("clinic", "state", "acuity")
    inlines = [CaseEventInline]


@admin.register(DispositionRung)
class DispositionRungAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A clinic's own disposition ladder (a clinic without rungs uses the default ladder)."""

    list_display = ("clinic", "position", "code", "display", "acuity", "active")
    list_filter = ("clinic", "active")


@admin.register(RiskRuleSetting)
class RiskRuleSettingAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Per-clinic switches of the EHR-aware risk rules (`triage.risk.RULES`; no row = on)."""

    list_display = ("clinic", "rule", "enabled")
    list_filter = ("clinic", "enabled")


@admin.register(ProtocolVersion)
class ProtocolVersionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only list; protocols are edited at /console/admin/protocols/ (drafts, validation, activation)."""

    list_display = ("protocol", "clinic", "version", "status", "title_en", "activated_at")
    list_filter = ("clinic", "status")

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(AcuityOverride)
class AcuityOverrideAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("case", "from_acuity", "to_acuity", "status", "requested_by", "cosigned_by", "requested_at")
    list_filter = ("clinic", "status")
