"""RunSQL migration (keep when regenerating schema migrations): the database refuses UPDATE and DELETE of
audit rows, whatever the application does (HIPAA 45 CFR 164.312(b), 164.312(c)(1)).

PostgreSQL: a row-level BEFORE UPDATE OR DELETE trigger that raises. TRUNCATE fires no row trigger, so Django's
test flush (TRUNCATE) still empties the table; in production the app role should not hold TRUNCATE either
(grants are the deployment's; see README "Audit controls"). SQLite (embedded demo): BEFORE UPDATE and BEFORE
DELETE triggers that RAISE(ABORT). SQLite's `DELETE FROM` flush would fire them, so `manage.py flush` (clinics'
override) drops them for the wipe and recreates them (clinics/management/commands/flush.py).
"""

from django.db import migrations

from clinics.audit_sql import PG_BACKWARD, PG_FORWARD, SQLITE_BACKWARD, SQLITE_FORWARD

STATEMENTS = {"postgresql": (PG_FORWARD, PG_BACKWARD), "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD)}


def _run(schema_editor, forward):
    pair = STATEMENTS.get(schema_editor.connection.vendor)
    if pair is None:
        return  # other backends: no trigger (only PostgreSQL and SQLite are supported)
    for statement in pair[0 if forward else 1]:
        schema_editor.execute(statement, params=None)  # no params: the `%` of RAISE is literal


def install(apps, schema_editor):
    _run(schema_editor, True)


def remove(apps, schema_editor):
    _run(schema_editor, False)


class Migration(migrations.Migration):
    dependencies = [("clinics", "0007_audit_chain_backfill")]

    operations = [migrations.RunPython(install, remove)]
