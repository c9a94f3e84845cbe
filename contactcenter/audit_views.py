"""The clinic admin's audit log page (`/console/admin/audit/`) and its CSV export.

Clinic admins only (role `admin`; other staff 403). Only the admin's own clinic's rows are ever read (every
query starts from `AuditEvent.objects.filter(clinic=...)`). Filters: `patient` (FHIR Patient id, exact), `user`
(username, exact), `action` (exact), `since` / `until` (dates, inclusive, UTC). The page shows the newest
`PAGE_ROWS` matches; `?format=csv` exports every match (oldest first), and the export itself is audited
(`audit.export`, with the filters as the reason) because it discloses who read which patient's record.
HIPAA 45 CFR 164.312(b) audit controls; 164.308(a)(1)(ii)(D) information system activity review.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.dateparse import parse_date
from django.views.decorators.http import require_GET

from clinics.models import AuditEvent, Clinic
from clinics.services import audit_record
from contactcenter.routing_views import _clinic, admin_view

PAGE_ROWS = 500
CSV_COLUMNS = (
    "seq",
    "at",
    "clinic",
    "user",
    "role",
    "action",
    "object_type",
    "object_id",
    "patient_ref",
    "reason",
    "source_ip",
    "request_id",
    "hash",
)
FILTERS = ("patient", "user", "action", "since", "until")


def _day(raw: str) -> datetime.date | None:
    try:
        return parse_date(raw) if raw else None
    except ValueError:
        return None


def audit_search(*, clinic: Clinic, filters: dict[str, str]) -> QuerySet[AuditEvent]:
    """`clinic`'s audit rows matching `filters` (see the module docstring), unordered; other clinics' rows never."""
    rows = AuditEvent.objects.filter(clinic=clinic).select_related("actor", "clinic")
    if filters.get("patient"):
        rows = rows.filter(patient_ref=filters["patient"])
    if filters.get("user"):
        rows = rows.filter(actor__username=filters["user"])
    if filters.get("action"):
        rows = rows.filter(action=filters["action"])
    since, until = _day(filters.get("since", "")), _day(filters.get("until", ""))
    if since:
        rows = rows.filter(at__date__gte=since)
    if until:
        rows = rows.filter(at__date__lte=until)
    return rows


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(rows: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in rows.order_by("seq").iterator(chunk_size=2000):
        yield writer.writerow(
            [
                _cell(v)
                for v in (
                    event.seq,
                    event.at.isoformat(),
                    event.clinic.slug,
                    event.actor.get_username() if event.actor else "",
                    event.role,
                    event.action,
                    event.object_type,
                    event.object_id,
                    event.patient_ref,
                    event.reason,
                    event.source_ip,
                    event.request_id,
                    event.hash,
                )
            ]
        )


@require_GET
@admin_view
def audit_page(request: HttpRequest) -> HttpResponse:
    """The filter form and the newest matches, or (`format=csv`) the CSV export of every match."""
    clinic = _clinic(request)
    filters = {name: request.GET.get(name, "").strip()[:128] for name in FILTERS}
    rows = audit_search(clinic=clinic, filters=filters)
    if request.GET.get("format") == "csv":
        described = " ".join(f"{name}={value}" for name, value in filters.items() if value) or "all"
        audit_record(
            clinic=clinic,
            actor=request.user,
            action="audit.export",
            object_type="audit",
            patient_ref=filters["patient"],
            reason=f"filters: {described}",
            source_ip=request.META.get("REMOTE_ADDR") or None,
        )
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-{clinic.slug}-{stamp}.csv"'
        return response  # type: ignore[return-value]  # streamed; the view decorators pass it through unchanged
    page_rows = list(rows.order_by("-seq")[:PAGE_ROWS])
    return render(
        request,
        "console/admin_audit.html",
        {
            "clinic": clinic,
            "filters": filters,
            "rows": page_rows,
            "page_rows": PAGE_ROWS,
            "truncated": len(page_rows) == PAGE_ROWS,
            "actions": AuditEvent.objects.filter(clinic=clinic)
            .order_by("action")
            .values_list("action", flat=True)
            .distinct(),
        },
    )
