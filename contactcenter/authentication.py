"""REST API authentication that also sets the PostgreSQL row-level security scope (`clinics.db_scope`).

DRF authenticates a token in the view, after `careline.middleware.ClinicScopeMiddleware` has entered the
request as anonymous (unset scope: no PHI row). On success this switches the request's scope to the token
user's clinic; the middleware's scope restores the previous value when the response is done.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request

from clinics import db_scope
from clinics.selectors import NotStaff, staff_for_user


class ClinicScopedTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's; the request then runs in the token user's clinic scope (a user
    of no clinic keeps the unset scope: no PHI row visible)."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        result: tuple[Any, Any] | None = super().authenticate(request)
        if result is not None and connection.vendor == "postgresql":
            try:
                db_scope.switch(str(staff_for_user(result[0]).clinic_id))
            except NotStaff:
                db_scope.switch(db_scope.UNSET)
        return result
