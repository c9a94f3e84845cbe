"""`manage.py flush`, as Django's, that also works with the append-only audit triggers on SQLite.

Django empties tables with TRUNCATE on PostgreSQL (no row trigger fires) but with `DELETE FROM` on SQLite, which
the audit table's BEFORE DELETE trigger refuses. Flush wipes the whole database by design (the test runner uses
it after every transactional test), so on SQLite this drops the audit triggers for the wipe and recreates them
afterwards, also when the wipe fails. On PostgreSQL it runs as the tables' owner (`clinics.db_scope.as_owner`):
the application role (`DATABASE_APP_ROLE`) has no TRUNCATE on any table. On SQLite anyone who can run
commands can edit the file anyway: there the
triggers guard against application mistakes; the security boundary is PostgreSQL's (README "Audit controls").
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands.flush import Command as DjangoFlush
from django.db import connections

from clinics import db_scope
from clinics.audit_sql import SQLITE_BACKWARD, SQLITE_FORWARD


class Command(DjangoFlush):
    def handle(self, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor != "sqlite":
            with db_scope.as_owner(using=options["database"]):
                super().handle(**options)
            return
        if "clinics_auditevent" not in connection.introspection.table_names():
            super().handle(**options)
            return
        with connection.cursor() as cursor:
            for statement in SQLITE_BACKWARD:
                cursor.execute(statement)
        try:
            super().handle(**options)
        finally:
            with connection.cursor() as cursor:
                for statement in SQLITE_FORWARD:
                    cursor.execute(statement)
