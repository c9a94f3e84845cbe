"""`manage.py migrate`, as Django's, run as the tables' owner in system scope (`clinics.db_scope.as_owner`).

With `DATABASE_APP_ROLE` set every connection `SET ROLE`s to the application role, which may not create or
alter tables; migrations (and the `post_migrate` install of the row-level security policies, the role and
its grants, `clinics.db_security`) need the login role that owns the schema. Data migrations run in system
scope so they see every clinic's rows through the policies.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands.migrate import Command as DjangoMigrate

from clinics import db_scope


class Command(DjangoMigrate):
    def handle(self, *args: Any, **options: Any) -> None:
        with db_scope.as_owner(using=options["database"]):
            super().handle(*args, **options)
