from django.contrib import admin

from triage.models import Case, CaseEvent


class CaseEventInline(admin.TabularInline):  # type: ignore[type-arg]
    model = CaseEvent
    extra = 0
    readonly_fields = ("at", "kind", "summary", "actor", "detail")


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "clinic", "state", "acuity", "arrived_at", "disposition")
    list_filter = ("clinic", "state", "acuity")
    inlines = [CaseEventInline]
