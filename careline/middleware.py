"""Request id middleware and log filter.

Every HTTP request gets an id: the caller's `X-Request-ID` header when it is a short token of letters,
digits, `-`, `_`, `.` (a load balancer's id, so logs join up), else a fresh uuid4 hex. The id is echoed in the
`X-Request-ID` response header, stored on every audit row written during the request
(`clinics.services.audit_record`), and put on every log record (`RequestIdLogFilter`, `%(request_id)s`). It
carries no PHI: it is random or the proxy's opaque token, never derived from the request's content.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from clinics import db_scope, request_id

_TOKEN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
HEADER = "X-Request-ID"


def _request_id(request: HttpRequest) -> str:
    offered = request.headers.get(HEADER, "")
    return offered if _TOKEN.match(offered) else uuid.uuid4().hex


class RequestIdMiddleware(MiddlewareMixin):
    """Bind the request id and source address (`REMOTE_ADDR`) for the request's duration (sync and async, as
    Django's own middleware: `MiddlewareMixin` runs the hooks in the request's context either way)."""

    def process_request(self, request: HttpRequest) -> None:
        rid = _request_id(request)
        request.request_id = rid  # type: ignore[attr-defined]
        request_id.bind(request_id=rid, source_ip=request.META.get("REMOTE_ADDR") or None)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        rid = getattr(request, "request_id", "")
        if rid:
            response[HEADER] = rid
        request_id.clear()
        return response


class RequestIdLogFilter(logging.Filter):
    """Adds `request_id` (the current request's id, "-" outside a request) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.current().request_id or "-"
        return True


class NodeIdLogFilter(logging.Filter):
    """Adds `node` (`careline.drain.node_id()`: CARELINE_NODE_ID or hostname:pid) to every record it sees, so
    the lines of N web processes behind one proxy can be told apart."""

    def filter(self, record: logging.LogRecord) -> bool:
        from careline.drain import node_id

        record.node = node_id()
        return True


_URL_QUERY = re.compile(r"(\S*?)\?\S*")


class RedactUrlQueryFilter(logging.Filter):
    """Drops the query string of every URL in a record (message and args): `GET /fhir/Patient?phone=...` logs as
    `GET /fhir/Patient?<redacted>`. FHIR searches carry PHI in the query (phone, birth date, MRN, name), and
    urllib3 logs each request's URL at DEBUG (`urllib3.connectionpool`). Attached to that logger in LOGGING."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = _URL_QUERY.sub(r"\1?<redacted>", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                _URL_QUERY.sub(r"\1?<redacted>", arg) if isinstance(arg, str) and "?" in arg else arg
                for arg in record.args
            )
        return True


class ClinicScopeMiddleware:
    """Set the PostgreSQL row-level security scope (`clinics.db_scope`) for the request: a staff member's clinic,
    otherwise unset, so a query that escapes the ORM scoping still sees no other clinic's rows (and an
    anonymous request none). Restored when the response is done. After `AuthenticationMiddleware` (it reads
    `request.user`); REST API users are scoped by `contactcenter.api.ClinicAPIView` once DRF authenticated them
    (token or session), Twilio webhooks
    switch to system scope in `ivr.twilio.signature.twilio_webhook`. A no-op on SQLite.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if connection.vendor != "postgresql":
            return self.get_response(request)
        with db_scope.scope(db_scope.scope_for_user(getattr(request, "user", None))):
            return self.get_response(request)
