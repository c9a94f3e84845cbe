"""The interface analyst's page (`/console/admin/interfaces/`): the outbound queues per destination (FHIR, HL7
per message type) with their counts by state, the rows with attempts and last error, and Retry / Skip.

Clinic admins only (role `admin`; others 403); another clinic's rows 404. Retry and Skip require a reason,
which is kept on the row and the action is audited (`writeback.retry`, `writeback.skip`). The rules of what
may be retried or skipped live in `ehr.services`."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST

from contactcenter.routing_views import _clinic, admin_view
from ehr import selectors as ehr_selectors
from ehr import services as ehr_services
from ehr.models import WriteBack


@require_http_methods(["GET"])
@admin_view
def interfaces_page(request: HttpRequest) -> HttpResponse:
    """Counts per destination and state, then the newest 200 rows (filtered by `destination` / `state`)."""
    clinic = _clinic(request)
    destination = request.GET.get("destination", "")
    state = request.GET.get("state", "")
    if state and state not in ehr_selectors.OUTBOX_STATES:
        state = ""
    hl7_types = list(clinic.hl7_outbound_types or []) if settings.HL7_MLLP_HOST else []
    rows = ehr_selectors.outbound_rows(clinic=clinic, destination=destination, state=state)
    context = {
        "clinic": clinic,
        "summary": ehr_selectors.outbound_queue_summary(clinic=clinic, hl7_types=hl7_types),
        "states": ehr_selectors.OUTBOX_STATES,
        "rows": [(row, ehr_selectors.writeback_destination(row)) for row in rows],
        "destination": destination,
        "state": state,
        "retryable": ehr_services.RETRYABLE_STATES,
        "skippable": ehr_services.SKIPPABLE_STATES,
        "hl7_host": settings.HL7_MLLP_HOST,
        "hl7_port": settings.HL7_MLLP_PORT,
    }
    return render(request, "console/admin_interfaces.html", context)


def _operate(request: HttpRequest, writeback_id: int, *, skip: bool) -> HttpResponse:
    operate = ehr_services.writeback_skip if skip else ehr_services.writeback_retry
    try:
        row = operate(
            clinic=_clinic(request),
            writeback_id=writeback_id,
            actor=request.user,  # type: ignore[arg-type]
            reason=request.POST.get("reason", ""),
            source_ip=request.META.get("REMOTE_ADDR") or None,
        )
    except WriteBack.DoesNotExist as exc:
        raise Http404("No such outbound message.") from exc
    except ehr_services.WriteBackNotOperable as exc:
        messages.error(request, f"Message #{writeback_id}: {exc}")
    else:
        verb = "skipped" if skip else "queued to send now"
        messages.success(request, f"Message #{row.pk} (case {row.source_id}) {verb}.")
    url = reverse("console:interfaces-admin")
    query = {key: request.POST[key] for key in ("destination", "state") if request.POST.get(key)}
    return redirect(f"{url}?{urlencode(query)}" if query else url)


@require_POST
@admin_view
def writeback_retry(request: HttpRequest, writeback_id: int) -> HttpResponse:
    """Retry: back to pending, sent now (POST `reason`)."""
    return _operate(request, writeback_id, skip=False)


@require_POST
@admin_view
def writeback_skip(request: HttpRequest, writeback_id: int) -> HttpResponse:
    """Skip: marked skipped, never sent; the patient's later HL7 messages go on (POST `reason`)."""
    return _operate(request, writeback_id, skip=True)
