"""Django admin: per-clinic SLOs (edited here), their breach episodes and alert outbox rows (read-only)."""

from django.contrib import admin

from ops.models import SloAlert, SloBreach, SloObjective


@admin.register(SloObjective)
class SloObjectiveAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("clinic", "kind", "threshold", "window_minutes", "min_samples", "enabled")
    list_filter = ("clinic", "kind", "enabled")


@admin.register(SloBreach)
class SloBreachAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("objective", "opened_at", "cleared_at", "value_at_open", "worst_value", "last_value")
    list_filter = ("objective__clinic", "objective__kind")
    readonly_fields = ("objective", "opened_at", "cleared_at", "value_at_open", "worst_value", "last_value")


@admin.register(SloAlert)
class SloAlertAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("breach", "event", "state", "attempts", "last_attempt_at", "last_error", "sent_at")
    list_filter = ("state", "event")
    readonly_fields = ("breach", "event", "body", "state", "attempts", "last_attempt_at", "last_error", "sent_at")
