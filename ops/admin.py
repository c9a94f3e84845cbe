"""Django admin: per-clinic SLOs (edited here) and their breach episodes (read-only)."""

from django.contrib import admin

from ops.models import SloBreach, SloObjective


@admin.register(SloObjective)
class SloObjectiveAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("clinic", "kind", "threshold", "window_minutes", "min_samples", "enabled")
    list_filter = ("clinic", "kind", "enabled")


@admin.register(SloBreach)
class SloBreachAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("objective", "opened_at", "cleared_at", "value_at_open", "worst_value", "last_value")
    list_filter = ("objective__clinic", "objective__kind")
    readonly_fields = ("objective", "opened_at", "cleared_at", "value_at_open", "worst_value", "last_value")
