"""The clinic admin's routing page (`/console/admin/routing/`): ordered rules with a preview against the last
100 cases, queues, business hours and holidays. Clinic admins only (role `admin`): other staff get 403, and
another clinic's rows 404. Every change is audited (`routing.*` actions)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from clinics import roles
from clinics.models import Clinic
from clinics.services import audit_record
from contactcenter.routing_forms import BusinessHoursForm, HolidayForm, QueueForm, RoutingRuleForm
from contactcenter.views import staff_view
from triage import routing
from triage.models import BusinessHours, Holiday, RoutingRule
from triage.selectors import cases_for_routing_preview, routing_rules
from triage.services import queue_default_for

View = Callable[..., HttpResponse]


def admin_view(view: View) -> View:
    """`staff_view` plus the `clinics.administer_clinic` permission (role clinic admin; 403 otherwise)."""

    @staff_view
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm(roles.ADMINISTER):
            raise PermissionDenied("Clinic admins only.")
        return view(request, *args, **kwargs)

    return wrapped


def _clinic(request: HttpRequest) -> Clinic:
    clinic: Clinic = request.staff.clinic  # type: ignore[attr-defined]
    return clinic


def _audit(request: HttpRequest, action: str, obj: Model) -> None:
    audit_record(
        clinic=_clinic(request),
        actor=request.user,
        action=action,
        object_type=obj._meta.model_name or "",
        object_id=str(obj.pk),
        source_ip=request.META.get("REMOTE_ADDR") or None,
    )


def _page(request: HttpRequest, **forms: Any) -> HttpResponse:
    clinic = _clinic(request)
    queue_default_for(clinic=clinic)
    context = {
        "clinic": clinic,
        "rules": routing_rules(clinic=clinic),
        "hours": BusinessHours.objects.filter(clinic=clinic),
        "holidays": Holiday.objects.filter(clinic=clinic),
        "queues": clinic.queues.all(),
        "hours_form": forms.get("hours_form") or BusinessHoursForm(clinic=clinic),
        "holiday_form": forms.get("holiday_form") or HolidayForm(clinic=clinic),
        "queue_form": forms.get("queue_form") or QueueForm(clinic=clinic),
    }
    return render(request, "console/admin_routing.html", context, status=400 if forms else 200)


@require_http_methods(["GET"])
@admin_view
def routing_page(request: HttpRequest) -> HttpResponse:
    """Rules in evaluation order, queues, business hours and holidays, each with its add form."""
    return _page(request)


@require_http_methods(["GET", "POST"])
@admin_view
def rule_edit(request: HttpRequest, rule_id: int | None = None) -> HttpResponse:
    """Create or edit a rule. `action=preview` validates the unsaved rule and shows which of the clinic's last
    100 cases it would have routed; `action=save` saves it. Invalid input re-renders with the errors (400)."""
    clinic = _clinic(request)
    rule = get_object_or_404(RoutingRule, pk=rule_id, clinic=clinic) if rule_id else RoutingRule(clinic=clinic)
    if rule_id is None and request.method == "GET":
        last = routing_rules(clinic=clinic).last()
        rule.order = (last.order + 1) if last else 1
    preview: list[routing.PreviewRow] | None = None
    status = 200
    if request.method == "POST":
        form = RoutingRuleForm(request.POST, instance=rule, clinic=clinic)
        if form.is_valid():
            candidate = form.save(commit=False)
            if request.POST.get("action") == "preview":
                others = list(routing_rules(clinic=clinic).exclude(pk=candidate.pk))
                preview = routing.preview_rule(
                    candidate, cases_for_routing_preview(clinic=clinic, limit=100), other_rules=others
                )
            else:
                with transaction.atomic():
                    candidate.save()
                    _audit(request, "routing.rule.save", candidate)
                messages.success(request, f'Rule "{candidate.name}" saved.')
                return redirect("console:routing-admin")
        else:
            status = 400
    else:
        form = RoutingRuleForm(instance=rule, clinic=clinic)
    context = {
        "clinic": clinic,
        "form": form,
        "rule": rule,
        "preview": preview,
        "preview_count": sum(1 for row in preview or [] if row.would_route),
        "preview_matches": sum(1 for row in preview or [] if row.matches),
    }
    return render(request, "console/admin_rule_form.html", context, status=status)


@require_POST
@admin_view
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(RoutingRule, pk=rule_id, clinic=_clinic(request))
    with transaction.atomic():
        _audit(request, "routing.rule.delete", rule)
        rule.delete()
    messages.success(request, f'Rule "{rule.name}" deleted.')
    return redirect("console:routing-admin")


@require_POST
@admin_view
def rule_move(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Move a rule one place up or down (`direction`); the rules are renumbered 1..n in the new order."""
    clinic = _clinic(request)
    with transaction.atomic():
        rules = list(RoutingRule.objects.filter(clinic=clinic).order_by("order", "pk").select_for_update())
        index = next((i for i, r in enumerate(rules) if r.pk == rule_id), None)
        if index is None:
            return HttpResponse("No such rule.", status=404)
        target = index - 1 if request.POST.get("direction") == "up" else index + 1
        if 0 <= target < len(rules):
            rules[index], rules[target] = rules[target], rules[index]
        for position, rule in enumerate(rules, start=1):
            if rule.order != position:
                rule.order = position
                rule.save(update_fields=["order"])
        _audit(request, "routing.rule.move", rules[target if 0 <= target < len(rules) else index])
    return redirect("console:routing-admin")


def _add(request: HttpRequest, form_class: Any, key: str, action: str) -> HttpResponse:
    form = form_class(request.POST, clinic=_clinic(request))
    if not form.is_valid():
        return _page(request, **{key: form})
    with transaction.atomic():
        obj = form.save()
        _audit(request, action, obj)
    messages.success(request, "Saved.")
    return redirect("console:routing-admin")


@require_POST
@admin_view
def hours_add(request: HttpRequest) -> HttpResponse:
    return _add(request, BusinessHoursForm, "hours_form", "routing.hours.add")


@require_POST
@admin_view
def holiday_add(request: HttpRequest) -> HttpResponse:
    return _add(request, HolidayForm, "holiday_form", "routing.holiday.add")


@require_POST
@admin_view
def queue_add(request: HttpRequest) -> HttpResponse:
    return _add(request, QueueForm, "queue_form", "routing.queue.add")


@require_POST
@admin_view
def hours_delete(request: HttpRequest, hours_id: int) -> HttpResponse:
    row = get_object_or_404(BusinessHours, pk=hours_id, clinic=_clinic(request))
    with transaction.atomic():
        _audit(request, "routing.hours.delete", row)
        row.delete()
    return redirect("console:routing-admin")


@require_POST
@admin_view
def holiday_delete(request: HttpRequest, holiday_id: int) -> HttpResponse:
    row = get_object_or_404(Holiday, pk=holiday_id, clinic=_clinic(request))
    with transaction.atomic():
        _audit(request, "routing.holiday.delete", row)
        row.delete()
    return redirect("console:routing-admin")
