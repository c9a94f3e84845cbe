"""PostgreSQL row-level security policies, the application role and its grants (issue 6, 45 CFR 164.312(a)).

Applied after every `manage.py migrate` (the `post_migrate` receiver in `clinics.apps`), as the tables' owner
(`clinics.db_scope.as_owner`), and idempotently, so it also covers tables that later migrations create or
rebuild and schema migrations regenerated at merge time. PostgreSQL only; on SQLite nothing here runs.

- **Row-level security**: `ENABLE` + `FORCE` (the owner is subject too, unless superuser) on every table of
  `RLS_TABLES`, each with one policy `careline_clinic_scope` for all commands, `USING` and `WITH CHECK`:
  the row's `clinic_id` equals the session's `careline.clinic_id`, or that setting is `system`. Unset ("")
  matches nothing: fail-closed (README "Security", `clinics.db_scope`). Every listed table has its own
  `clinic_id` column (child rows such as case events, callback attempts, ledger entries and a video visit's
  quality samples, chat messages and attachments carry it too), so no policy has to look through a parent;
  `ehr_hl7message.clinic_id` may be NULL (an inbound message not yet tied to a clinic): visible in system
  scope only.
- **Application role** (`DATABASE_APP_ROLE`, e.g. `careline_app`): created NOLOGIN if missing (the login
  role SETs ROLE to it; or give it LOGIN and its own `DATABASE_URL`), granted SELECT, INSERT, UPDATE, DELETE
  on every table and USAGE, SELECT on every sequence of the schema, except the audit table
  (`clinics_auditevent`): SELECT and INSERT only, so UPDATE, DELETE and TRUNCATE are refused by the grants
  (permission denied) before the append-only trigger (`clinics/0008`) is even reached. Not a member of the
  owner, no CREATE on the schema, no BYPASSRLS.
"""

from __future__ import annotations

from typing import Any

from django.db import connections

from clinics import db_scope

AUDIT_TABLE = "clinics_auditevent"
POLICY = "careline_clinic_scope"

# PHI tables (and the audit log) whose rows belong to one clinic (`clinic_id`).
RLS_TABLES = (
    "triage_case",
    "triage_caseevent",
    "triage_callbackattempt",
    "triage_acuityoverride",
    "triage_routingledgerentry",
    "triage_breakglassgrant",
    "ivr_callleg",
    "ivr_outboundmessage",
    "ivr_inboundmessage",
    "ivr_outboundcall",
    "ivr_smsoptout",
    "ivr_remindercampaign",
    "ivr_appointmentreminder",
    "ehr_patientlink",
    "ehr_writeback",
    "ehr_hl7message",
    "contactcenter_videovisit",
    "contactcenter_callsession",
    "contactcenter_qualitysample",
    "contactcenter_visitmessage",
    "contactcenter_visitattachment",
    AUDIT_TABLE,
)

# `careline.clinic_id` is "system", or a clinic id; "" (unset) and NULL match no row.
CLINIC_PREDICATE = (
    "(current_setting('careline.clinic_id', true) = 'system' OR clinic_id = "
    "nullif(nullif(current_setting('careline.clinic_id', true), ''), 'system')::bigint)"
)


def rls_statements(table: str) -> list[str]:
    """The idempotent DDL that puts `table` behind the clinic policy."""
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
        f'DROP POLICY IF EXISTS {POLICY} ON "{table}"',
        f'CREATE POLICY {POLICY} ON "{table}" FOR ALL USING {CLINIC_PREDICATE} WITH CHECK {CLINIC_PREDICATE}',
    ]


def role_statements(role: str) -> list[str]:
    """The idempotent DDL that creates the app role (if missing) and sets its grants on the current schema."""
    quoted = f'"{role}"'
    literal = role.replace("'", "''")
    return [
        # CREATE ROLE has no IF NOT EXISTS; duplicate_object covers a concurrent creator (parallel test runs).
        f"""DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{literal}') THEN
                CREATE ROLE {quoted} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$""",
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
        f'REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON "{AUDIT_TABLE}" FROM {quoted}',
        f'GRANT SELECT, INSERT ON "{AUDIT_TABLE}" TO {quoted}',
    ]


def apply(*, using: str = "default") -> list[str]:
    """Install the policies and (when `DATABASE_APP_ROLE` is set) the role and grants on database `using`.

    Returns the statements executed (empty on SQLite). Tables of `RLS_TABLES` that do not exist yet (a partial
    migrate) are skipped; the next migrate covers them. Raises the database's error if the login role may not
    create roles or change these tables (it must own them).
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    existing = set(connection.introspection.table_names())
    statements = [sql for table in RLS_TABLES if table in existing for sql in rls_statements(table)]
    role = db_scope.app_role()
    if role:
        statements += role_statements(role)
    with db_scope.as_owner(using=using), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
    return statements


def on_post_migrate(sender: Any, using: str = "default", **kwargs: Any) -> None:
    """`post_migrate` receiver for the `clinics` app, after every migrate. `flush` sends the signal too, with
    no plan: the wipe changes no table, so the policies and grants are left as they are."""
    if kwargs.get("plan") is None:
        return
    apply(using=using)
