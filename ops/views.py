"""Clinic admin page of the capacity planner: `/console/admin/capacity/` (role admin; others 403).

A GET form of the planner's inputs (`ops.capacity.Inputs`); the plan table shows each number with its
assumption, and which per-process figures were measured (`bench/figures.json`) or defaults.
"""

from __future__ import annotations

import dataclasses

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from contactcenter.routing_views import _clinic, admin_view
from ops import capacity


@require_GET
@admin_view
def capacity_page(request: HttpRequest) -> HttpResponse:
    """The planner form and, for valid inputs, the plan; 400 with the reason for invalid ones."""
    fields = []
    values: dict[str, float | None] = {}
    error = ""
    for f in dataclasses.fields(capacity.Inputs):
        raw = request.GET.get(f.name, "").strip()
        default = 120.0 if f.name == "peak_calls_per_hour" else f.default
        try:
            values[f.name] = float(raw) if raw else default  # type: ignore[assignment]
        except ValueError:
            error = f"{f.name.replace('_', ' ')}: not a number"
            values[f.name] = default  # type: ignore[assignment]
        fields.append({"name": f.name, "label": f.name.replace("_", " "), "value": values[f.name]})
    plan = None
    if not error:
        try:
            plan = capacity.plan(capacity.Inputs(**values), capacity.load_figures(settings.CAPACITY_FIGURES_PATH))  # type: ignore[arg-type]
        except ValueError as exc:
            error = str(exc)
    rows = [{"row": r, "shown": capacity.format_value(r.value)} for r in (plan.rows if plan is not None else [])]
    context = {"clinic": _clinic(request), "fields": fields, "rows": rows, "error": error, "plan": plan}
    return render(request, "ops/capacity.html", context, status=400 if error else 200)
