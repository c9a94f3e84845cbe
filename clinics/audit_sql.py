"""The SQL of the append-only audit triggers (migration 0008 installs them; `manage.py flush` lifts the SQLite
ones for the wipe and puts them back). Kept out of the migration so the flush command can import it."""

PG_FORWARD = [
    """
    CREATE OR REPLACE FUNCTION clinics_auditevent_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'clinics_auditevent is append-only: % refused', TG_OP;
    END;
    $$ LANGUAGE plpgsql;
    """,
    "DROP TRIGGER IF EXISTS clinics_auditevent_append_only ON clinics_auditevent;",
    """
    CREATE TRIGGER clinics_auditevent_append_only BEFORE UPDATE OR DELETE ON clinics_auditevent
    FOR EACH ROW EXECUTE FUNCTION clinics_auditevent_append_only();
    """,
]
PG_BACKWARD = [
    "DROP TRIGGER IF EXISTS clinics_auditevent_append_only ON clinics_auditevent;",
    "DROP FUNCTION IF EXISTS clinics_auditevent_append_only();",
]
SQLITE_FORWARD = [
    """
    CREATE TRIGGER IF NOT EXISTS clinics_auditevent_no_update BEFORE UPDATE ON clinics_auditevent
    BEGIN SELECT RAISE(ABORT, 'clinics_auditevent is append-only: UPDATE refused'); END;
    """,
    """
    CREATE TRIGGER IF NOT EXISTS clinics_auditevent_no_delete BEFORE DELETE ON clinics_auditevent
    BEGIN SELECT RAISE(ABORT, 'clinics_auditevent is append-only: DELETE refused'); END;
    """,
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS clinics_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS clinics_auditevent_no_delete;",
]
