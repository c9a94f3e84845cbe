"""Forms of the clinic admin's routing page. List fields are typed as comma-separated codes; the models'
`clean` methods normalise and validate them, so the admin page and any other writer share one set of rules."""

from __future__ import annotations

from typing import Any

from django import forms

from clinics.models import Clinic
from triage.models import BusinessHours, Holiday, Queue, RoutingRule


class CodeListField(forms.Field):
    """Comma- or space-separated codes -> list of strings (validated by the model)."""

    widget = forms.TextInput

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        text = str(value or "").strip()
        return [part for part in text.replace(",", " ").split() if part]


class RoutingRuleForm(forms.ModelForm):  # type: ignore[type-arg]
    acuity_levels = CodeListField(required=False, help_text="e.g. 2, 3 (empty: any)")
    protocol_codes = CodeListField(required=False, help_text="e.g. fever, cough (empty: any)")
    caller_states = CodeListField(required=False, help_text="US state codes, e.g. MA, NH (empty: any)")
    required_skills = CodeListField(required=False, help_text="e.g. spanish, pediatrics")

    class Meta:
        model = RoutingRule
        fields = [
            "name",
            "order",
            "enabled",
            "acuity_levels",
            "protocol_codes",
            "min_age_years",
            "max_age_years",
            "language",
            "identified",
            "time_window",
            "caller_states",
            "target_queue",
            "required_skills",
            "require_licensure",
            "priority_boost_seconds",
            "escalation_policy",
            "fallback_after_minutes",
            "fallback_action",
            "fallback_queue",
        ]
        help_texts = {
            "priority_boost_seconds": "Seconds of head start added to the wait in the accumulating priority.",
            "fallback_after_minutes": "Minutes without a nurse before the fallback applies.",
        }

    def __init__(self, *args: Any, clinic: Clinic, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.clinic = clinic
        queues = Queue.objects.filter(clinic=clinic)
        self.fields["target_queue"].queryset = queues  # type: ignore[attr-defined]
        self.fields["fallback_queue"].queryset = queues  # type: ignore[attr-defined]
        self.fields["target_queue"].empty_label = "Default queue"  # type: ignore[attr-defined]


class BusinessHoursForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = BusinessHours
        fields = ["weekday", "opens", "closes"]
        widgets = {"opens": forms.TimeInput(attrs={"type": "time"}), "closes": forms.TimeInput(attrs={"type": "time"})}

    def __init__(self, *args: Any, clinic: Clinic, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.clinic = clinic


class HolidayForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Holiday
        fields = ["date", "name"]
        widgets = {"date": forms.DateInput(attrs={"type": "date"})}

    def __init__(self, *args: Any, clinic: Clinic, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.clinic = clinic

    def clean_date(self) -> Any:
        value = self.cleaned_data["date"]
        if Holiday.objects.filter(clinic=self.instance.clinic, date=value).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("This date is already a holiday.")
        return value


class QueueForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Queue
        fields = ["name", "slug"]

    def __init__(self, *args: Any, clinic: Clinic, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance.clinic = clinic

    def clean_slug(self) -> Any:
        value = self.cleaned_data["slug"]
        if Queue.objects.filter(clinic=self.instance.clinic, slug=value).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("A queue of this clinic already has this slug.")
        return value
