"""The database's clinic context for PostgreSQL row-level security (the second wall behind the ORM scoping).

Every PHI table (`clinics.db_security.RLS_TABLES`) has a policy that shows and accepts only rows whose
`clinic_id` matches the session setting `careline.clinic_id`:

- `"<clinic id>"`: that clinic's rows only. Set by `careline.middleware.ClinicScopeMiddleware` (staff HTTP
  requests), `contactcenter.api.ClinicAPIView` (REST API calls, once DRF authenticated the token) and
  `clinic_scope()` (WebSocket consumers' database work).
- `"system"`: every clinic's rows. `system_scope()`: Twilio webhooks (`ivr.twilio.signature.twilio_webhook`),
  Celery tasks (`careline.celery`), the MLLP listener, operator commands (`system_scoped`), migrations.
- `""` (unset): no row; reads return nothing and writes are refused (fail-closed). Anonymous requests, and a
  new connection (outside the test settings, whose test code starts in system scope).

The setting is session-level (`set_config(..., false)`), not transaction-local: Django runs in autocommit, so
a transaction-local value would vanish after the first statement of a request. Each `scope()` therefore
restores the previous value when it exits (also on an exception), and the value is tracked on the
connection wrapper so a reconnect inside a scope (`connection_created`) gets it back. A rolled-back
transaction reverts a `set_config` made inside it on the server; the restore on exit then writes the same
previous value.

Superusers bypass row-level security, so production runs as a non-superuser role: `DATABASE_APP_ROLE`
(e.g. `careline_app`, NOLOGIN) that every new connection `SET ROLE`s to, except while `as_owner()` is active
(`manage.py migrate` and `flush`, which need the table owner). On SQLite (the embedded demo) all of this is a
no-op: the ORM scoping (`access_*` selectors, clinic-filtered services) is the only wall there.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections
from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper

GUC = "careline.clinic_id"
SYSTEM = "system"
UNSET = ""
_ATTR = "careline_scope"

_owner = threading.local()


def app_role() -> str:
    """The role the application's connections `SET ROLE` to (setting `DATABASE_APP_ROLE`), "" for none."""
    return str(getattr(settings, "DATABASE_APP_ROLE", "") or "")


def _is_pg(connection: BaseDatabaseWrapper) -> bool:
    return connection.vendor == "postgresql" and connection.alias != NO_DB_ALIAS


def _owner_depth() -> int:
    return int(getattr(_owner, "depth", 0))


def current(using: str = "default") -> str:
    """The scope this process last set on connection `using` (`""` when none; always `""` on SQLite)."""
    return str(getattr(connections[using], _ATTR, _initial_scope()))


def _initial_scope() -> str:
    # Production: fail-closed (""). careline.settings.test: "system", so test code may create fixtures of
    # any clinic directly; every request, task and webhook still sets its own scope over it.
    return str(getattr(settings, "DATABASE_INITIAL_SCOPE", UNSET) or UNSET)


def _write(connection: BaseDatabaseWrapper, value: str) -> None:
    setattr(connection, _ATTR, value)
    if not _is_pg(connection) or connection.connection is None:
        return  # not connected yet: connection_created applies the tracked value
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, false)", [GUC, value])


def switch(value: str, *, using: str = "default") -> None:
    """Set the scope without restoring it: only inside an enclosing `scope()` (which restores on exit), e.g.
    DRF's token authentication, which learns the user after `ClinicScopeMiddleware` entered the request."""
    _write(connections[using], value)


@contextlib.contextmanager
def scope(value: str, *, using: str = "default") -> Iterator[None]:
    """Run the block with `careline.clinic_id = value` on connection `using`, then restore the previous value.

    `value` is a clinic id as a string, `SYSTEM`, or `UNSET`. Raises `ValueError` for anything else (the
    policies cast the value to bigint: a stray string would fail every query, not widen access).
    """
    if value not in (SYSTEM, UNSET) and not value.isdigit():
        raise ValueError(f"not a database scope: {value!r}")
    connection = connections[using]
    previous = current(using)
    if value != previous:  # else no round trip, e.g. an anonymous request on a connection already unset
        _write(connection, value)
    try:
        yield
    finally:
        try:
            if current(using) != previous:  # changed here or by a `switch()` inside the block
                _write(connection, previous)
        except DatabaseError:
            # The block left the transaction aborted: its rollback reverts the server-side value; keep the
            # tracked one right so the next connection or statement uses `previous`.
            setattr(connection, _ATTR, previous)


def scope_for_user(user: Any) -> str:
    """The scope of a signed-in user: their clinic's id (`StaffMember`), else `UNSET` (anonymous, or no clinic)."""
    from clinics.models import StaffMember  # lazily: LOGGING imports careline.middleware, which imports this

    if user is None or not user.is_authenticated:
        return UNSET
    clinic_id = StaffMember.objects.filter(user_id=user.pk).values_list("clinic_id", flat=True).first()
    return UNSET if clinic_id is None else str(clinic_id)


def clinic_scope(clinic_id: int, *, using: str = "default") -> contextlib.AbstractContextManager[None]:
    """`scope()` for one clinic: only its rows of the RLS tables are visible and writable."""
    return scope(str(int(clinic_id)), using=using)


def system_scope(*, using: str = "default") -> contextlib.AbstractContextManager[None]:
    """`scope()` for work on behalf of the service itself (webhooks, tasks, listeners, commands): every clinic."""
    return scope(SYSTEM, using=using)


@contextlib.contextmanager
def as_owner(*, using: str = "default") -> Iterator[None]:
    """Run the block as the connection's login role (the tables' owner), in system scope: `RESET ROLE` now and
    for connections opened meanwhile, `SET ROLE <DATABASE_APP_ROLE>` again on exit. For `migrate` and `flush`
    (DDL, grants, TRUNCATE), never for request or task code."""
    _owner.depth = _owner_depth() + 1
    connection = connections[using]
    try:
        if _is_pg(connection) and connection.connection is not None and app_role():
            with connection.cursor() as cursor:
                cursor.execute("RESET ROLE")
        with system_scope(using=using):
            yield
    finally:
        _owner.depth = _owner_depth() - 1
        if _owner_depth() == 0 and _is_pg(connection) and connection.connection is not None and app_role():
            _set_role(connection)


def _set_role(connection: BaseDatabaseWrapper) -> None:
    role = app_role()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            raise ImproperlyConfigured(
                f"DATABASE_APP_ROLE {role!r} does not exist: run `manage.py migrate` (it creates the role, "
                "grants and policies) or create it as the database owner"
            )
        cursor.execute(f"SET ROLE {connection.ops.quote_name(role)}")


def on_connection_created(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """`connection_created` receiver: `SET ROLE` to the app role (unless `as_owner()` is active) and apply the
    tracked scope (the initial one for a first connection)."""
    if not _is_pg(connection):
        return
    if app_role() and _owner_depth() == 0:
        _set_role(connection)
    value = str(getattr(connection, _ATTR, _initial_scope()))
    setattr(connection, _ATTR, value)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, false)", [GUC, value])


_F = TypeVar("_F", bound=Callable[..., Any])


def system_scoped(func: _F) -> _F:
    """Decorate an operator command's `handle` (or any entry point acting for the service) to run in
    `system_scope()` on the default database."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with system_scope():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
