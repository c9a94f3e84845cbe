"""SMART on FHIR edges: the JWKS CareLine publishes, and the EHR launch of the nurse console.

`GET /.well-known/jwks.json` — public keys of the backend-services client (for registration at the EHR).
`GET /smart/launch/?iss=...&launch=...` — the EHR opens CareLine; the nurse must be signed in to CareLine (else
login and back); the browser goes to the EHR's authorization endpoint (PKCE S256; `ehr.fhir.smart.launch_begin`).
`GET /smart/callback/?code=...&state=...` — checks `state`, exchanges the code, and shows the launched
patient's cases in the nurse's own clinic. The EHR's access token is not kept; only the patient id and `iss`
go into the session (`smart_launch`).
"""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from clinics.selectors import NotStaff, staff_for_user
from clinics.services import audit_record
from ehr.fhir import smart
from ehr.types import EhrError, EhrUnavailable
from triage.selectors import case_list

PENDING_KEY = "smart_pending"  # session: state -> {verifier, iss, token_endpoint, redirect_uri}
PENDING_LIMIT = 5  # launches started and not finished (open tabs); older ones are dropped


@require_GET
def jwks(request: HttpRequest) -> JsonResponse:
    """The JWK Set of CareLine's SMART client keys (public parts only); cacheable for 5 minutes."""
    response = JsonResponse(smart.jwks())
    response["Cache-Control"] = "public, max-age=300"
    return response


def _launch_error(request: HttpRequest, exc: EhrError) -> HttpResponse:
    status = 503 if isinstance(exc, EhrUnavailable) else 400
    return render(request, "console/smart_error.html", {"message": str(exc)}, status=status)


def _redirect_uri(request: HttpRequest) -> str:
    path = reverse("smart-callback")
    if settings.PUBLIC_BASE_URL:
        return str(settings.PUBLIC_BASE_URL).rstrip("/") + path
    return request.build_absolute_uri(path)


def _staff(request: HttpRequest) -> Any:
    try:
        return staff_for_user(request.user)
    except NotStaff as exc:
        raise PermissionDenied("Not a member of any clinic.") from exc


@require_GET
@login_required
def launch(request: HttpRequest) -> HttpResponse:
    """EHR launch: validate `iss` + `launch`, then redirect to the EHR's authorization endpoint."""
    _staff(request)
    iss, launch_value = request.GET.get("iss", ""), request.GET.get("launch", "")
    if not iss or not launch_value:
        return render(
            request, "console/smart_error.html", {"message": "An EHR launch needs both iss and launch."}, status=400
        )
    try:
        started = smart.launch_begin(iss=iss, launch=launch_value, redirect_uri=_redirect_uri(request))
    except EhrError as exc:
        return _launch_error(request, exc)
    pending = dict(request.session.get(PENDING_KEY, {}))
    for stale in list(pending)[: max(0, len(pending) - PENDING_LIMIT + 1)]:
        pending.pop(stale)
    pending[started.state] = {
        "verifier": started.code_verifier,
        "iss": started.iss,
        "token_endpoint": started.token_endpoint,
        "redirect_uri": started.redirect_uri,
    }
    request.session[PENDING_KEY] = pending
    return HttpResponseRedirect(started.authorize_url)


@require_GET
@login_required
def callback(request: HttpRequest) -> HttpResponse:
    """EHR launch, second leg: check `state`, exchange the code (PKCE), list the patient's cases."""
    staff = _staff(request)
    pending = dict(request.session.get(PENDING_KEY, {}))
    started = pending.pop(request.GET.get("state", ""), None)
    request.session[PENDING_KEY] = pending
    if started is None:
        message = "This launch is unknown or was already used. Open CareLine again from the EHR."
        return render(request, "console/smart_error.html", {"message": message}, status=400)
    if request.GET.get("error"):
        error = request.GET["error"][:100]
        return render(request, "console/smart_error.html", {"message": f"The EHR refused: {error}"}, status=400)
    try:
        context = smart.launch_complete(
            iss=started["iss"],
            token_endpoint=started["token_endpoint"],
            code=request.GET.get("code", ""),
            code_verifier=started["verifier"],
            redirect_uri=started["redirect_uri"],
        )
    except EhrError as exc:
        return _launch_error(request, exc)
    request.session["smart_launch"] = {"iss": context.iss, "patient": context.patient}
    cases = list(case_list(clinic=staff.clinic).filter(patient_fhir_id=context.patient).order_by("-created_at"))
    audit_record(
        clinic=staff.clinic,
        actor=cast(User, request.user),
        action="smart.launch",
        object_type="Patient",
        object_id=context.patient,
        patient_ref=context.patient,
        source_ip=request.META.get("REMOTE_ADDR") or None,
    )
    return render(
        request,
        "console/smart_patient.html",
        {"staff": staff, "patient_id": context.patient, "cases": cases, "iss": context.iss},
    )
