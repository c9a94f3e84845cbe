"""Clinic admin pages for protocols, under /console/admin/protocols/ (role admin only; others get 403).

List the clinic's protocols, view every version with its questions, edit as a new draft version (with
every validation error shown next to the form, nothing saved), activate a version (the previous active
one is retired), and install the library topics the clinic lacks. Thin views: parse -> authorize
(`contactcenter.protocols.require_admin`) -> call -> render.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from contactcenter import protocols
from contactcenter.views import staff_view
from triage.dispositions import ladder_for
from triage.exceptions import ProtocolInvalid
from triage.models import Protocol, ProtocolVersion

View = Callable[..., HttpResponse]


def admin_view(view: View) -> View:
    """`staff_view` plus role admin (403 otherwise); unknown or another clinic's protocol -> 404."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            protocols.require_admin(request.user)
        except protocols.NotClinicAdmin as exc:
            raise PermissionDenied("Clinic admins only.") from exc
        try:
            return view(request, *args, **kwargs)
        except (Protocol.DoesNotExist, ProtocolVersion.DoesNotExist) as exc:
            raise Http404("No such protocol.") from exc

    return staff_view(wrapped)


@require_GET
@admin_view
def protocol_list(request: HttpRequest) -> HttpResponse:
    """The clinic's protocols in IVR menu order, with the active version and any drafts."""
    rows = [
        {
            "protocol": p,
            "active": protocols.active_version(p),
            "drafts": [v for v in p.versions.all() if v.status == ProtocolVersion.Status.DRAFT],
        }
        for p in protocols.protocol_list(user=request.user)
    ]
    return render(request, "console/admin/protocol_list.html", {"rows": rows, "staff": request.staff})  # type: ignore[attr-defined]


@require_POST
@admin_view
def library_install(request: HttpRequest) -> HttpResponse:
    """Add the library protocols the clinic lacks (never overwrites an existing protocol)."""
    added = protocols.library_install(user=cast(Any, request.user))
    messages.success(request, f"{added} protocol(s) added from the CareLine library.")
    return redirect("console:admin-protocols")


@require_GET
@admin_view
def protocol_detail(request: HttpRequest, protocol_id: int) -> HttpResponse:
    """Every version of one protocol, newest first, with its questions and an activate button."""
    protocol = protocols.protocol_get(user=request.user, protocol_id=protocol_id)
    wording = {d.code: d.display for d in ladder_for(protocol.clinic)}
    versions = [
        {
            "version": v,
            "questions": [
                {**q, "disposition_display": wording.get(q["disposition"], q["disposition"])} for q in v.questions
            ],
            "default_display": wording.get(v.default_disposition, v.default_disposition),
        }
        for v in protocol.versions.order_by("-version")
    ]
    return render(
        request,
        "console/admin/protocol_detail.html",
        {"protocol": protocol, "versions": versions, "staff": request.staff},  # type: ignore[attr-defined]
    )


@require_http_methods(["GET", "POST"])
@admin_view
def protocol_edit(request: HttpRequest, protocol_id: int) -> HttpResponse:
    """Edit as a new draft: the form starts from the newest version; errors re-render it (400), unsaved."""
    protocol = protocols.protocol_get(user=request.user, protocol_id=protocol_id)
    errors: list[str] = []
    status = 200
    if request.method == "POST":
        form = {key: request.POST.get(key, "") for key in ("title_en", "title_es", "default_disposition", "questions")}
        questions, errors = protocols.parse_question_lines(form["questions"])
        if not errors:
            try:
                draft = protocols.draft_save(
                    user=cast(Any, request.user),
                    protocol_id=protocol.pk,
                    draft=protocols.DraftInput(
                        title_en=form["title_en"],
                        title_es=form["title_es"],
                        default_disposition=form["default_disposition"],
                        questions=questions,
                    ),
                )
            except ProtocolInvalid as exc:
                errors = exc.errors
            else:
                messages.success(request, f"Saved as draft version {draft.version}. Activate it to use it on calls.")
                return redirect("console:admin-protocol", protocol_id=protocol.pk)
        status = 400
    else:
        newest = protocol.versions.order_by("-version").first()
        form = {
            "title_en": newest.title_en if newest else "",
            "title_es": newest.title_es if newest else "",
            "default_disposition": newest.default_disposition if newest else "",
            "questions": protocols.question_lines(newest) if newest else "",
        }
    return render(
        request,
        "console/admin/protocol_edit.html",
        {
            "protocol": protocol,
            "form": form,
            "errors": errors,
            "dispositions": ladder_for(protocol.clinic),
            "question_help": protocols.QUESTION_LINE_HELP,
            "staff": request.staff,  # type: ignore[attr-defined]
        },
        status=status,
    )


@require_POST
@admin_view
def version_activate(request: HttpRequest, protocol_id: int, version_id: int) -> HttpResponse:
    """Make a version the one calls use; the previously active one is retired."""
    protocol = protocols.protocol_get(user=request.user, protocol_id=protocol_id)
    if not protocol.versions.filter(pk=version_id).exists():
        raise ProtocolVersion.DoesNotExist("version of another protocol")
    try:
        version = protocols.version_activate(user=cast(Any, request.user), version_id=version_id)
    except ProtocolInvalid as exc:
        for error in exc.errors:
            messages.error(request, error)
    else:
        messages.success(request, f"Version {version.version} is now active.")
    return redirect("console:admin-protocol", protocol_id=protocol.pk)
