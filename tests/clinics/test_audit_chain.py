"""The audit log is hash-chained per clinic, append-only in the database, and verifiable.

HIPAA 45 CFR 164.312(b) audit controls and 164.312(c)(1) integrity: rows chain per clinic (seq 1, 2, 3 ...,
prev_hash = previous hash), the database refuses a raw UPDATE or DELETE (trigger, both backends), and
`verify_audit_chain` finds an edited or deleted row (simulated DBA edit: trigger switched off inside the test).
Concurrent writers on PostgreSQL never fork the chain.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from clinics import db_scope
from clinics.audit_sql import SQLITE_BACKWARD, SQLITE_FORWARD
from clinics.models import AUDIT_GENESIS_HASH, AuditEvent
from clinics.services import audit_record


@contextlib.contextmanager
def trigger_off() -> Iterator[None]:
    """Simulate a DBA with table-owner rights: switch the append-only trigger off, then on again. As the owner
    (`db_scope.as_owner`): the application role (`DATABASE_APP_ROLE`) may neither alter nor edit the table."""
    with db_scope.as_owner(), _trigger_off():
        yield


@contextlib.contextmanager
def _trigger_off() -> Iterator[None]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Check the deferred foreign keys now: ALTER TABLE refuses while their trigger events are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE clinics_auditevent DISABLE TRIGGER clinics_auditevent_append_only")
        else:
            for statement in SQLITE_BACKWARD:
                cursor.execute(statement)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("ALTER TABLE clinics_auditevent ENABLE TRIGGER clinics_auditevent_append_only")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            else:
                for statement in SQLITE_FORWARD:
                    cursor.execute(statement)


def verify(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit_chain", *args, stdout=out)
    return out.getvalue()


def verify_fails(*args: str) -> str:
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit_chain", *args, stdout=out)
    return out.getvalue()


def append(personas, n: int, clinic=None, actor=None) -> list[AuditEvent]:
    return [
        audit_record(
            clinic=clinic or personas.north,
            actor=actor or personas.alice,
            action="chart.read",
            object_type="case",
            object_id=i,
            patient_ref=f"pat-{i}",
            source_ip="10.0.0.7",
        )
        for i in range(n)
    ]


@pytest.mark.django_db
def test_rows_chain_per_clinic_with_role_and_the_verifier_passes(personas):
    north = append(personas, 3)
    south = append(personas, 2, clinic=personas.south, actor=personas.carol)
    bob_row = audit_record(clinic=personas.north, actor=personas.bob, action="case.read")

    assert [e.seq for e in north] == [1, 2, 3]
    assert [e.seq for e in south] == [1, 2]
    assert bob_row.seq == 4
    assert north[0].prev_hash == AUDIT_GENESIS_HASH
    assert north[1].prev_hash == north[0].hash and north[2].prev_hash == north[1].hash
    assert bob_row.prev_hash == north[2].hash
    assert south[1].prev_hash == south[0].hash != north[0].hash
    assert (north[0].role, south[0].role, bob_row.role) == ("nurse", "nurse", "supervisor")
    # What was stored is what was hashed (the database's round trip keeps every hashed field).
    for event in AuditEvent.objects.all():
        assert event.computed_hash() == event.hash
    out = verify()
    assert "north: ok, 4 rows" in out
    assert "south: ok, 2 rows" in out
    assert "south: ok" in verify("--clinic", "south")


@pytest.mark.django_db
def test_a_raw_update_or_delete_is_refused_by_the_database(personas):
    event = append(personas, 1)[0]
    for sql in (
        "UPDATE clinics_auditevent SET reason = 'edited' WHERE id = %s",
        "DELETE FROM clinics_auditevent WHERE id = %s",
    ):
        # As the table owner (the application role is refused earlier, by its grants:
        # tests/security/test_row_level_security.py), the trigger refuses.
        with (
            pytest.raises(DatabaseError, match="append-only"),
            db_scope.as_owner(),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.reason == "" and stored.hash == event.hash
    # The ORM refuses as well, before the database is asked.
    with pytest.raises(Exception, match="append-only"):
        stored.save()


@pytest.mark.django_db
def test_an_edited_row_is_found_at_its_seq(personas):
    events = append(personas, 4)
    with trigger_off(), connection.cursor() as cursor:
        cursor.execute("UPDATE clinics_auditevent SET patient_ref = 'someone-else' WHERE id = %s", [events[1].pk])

    out = verify_fails("--clinic", "north")
    assert f"north: BROKEN at seq 2 (id {events[1].pk}): hash does not match" in out


@pytest.mark.django_db
def test_an_edited_row_with_a_recomputed_hash_breaks_the_next_link(personas):
    events = append(personas, 3)
    forged = AuditEvent.objects.get(pk=events[0].pk)
    forged.patient_ref = "someone-else"
    with trigger_off(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE clinics_auditevent SET patient_ref = %s, hash = %s WHERE id = %s",
            [forged.patient_ref, forged.computed_hash(), forged.pk],
        )

    out = verify_fails()
    assert f"north: BROKEN at seq 2 (id {events[1].pk}): prev_hash does not match" in out


@pytest.mark.django_db
def test_a_deleted_row_is_found_by_the_seq_gap(personas):
    events = append(personas, 4)
    append(personas, 1, clinic=personas.south, actor=personas.carol)
    with trigger_off(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM clinics_auditevent WHERE id = %s", [events[1].pk])

    out = verify_fails()
    assert f"north: BROKEN at seq 3 (id {events[2].pk}): expected seq 2" in out
    assert "south: ok, 1 rows" in out  # the other clinic's chain is unaffected


@pytest.mark.django_db
def test_unknown_clinic_is_an_error(personas):
    with pytest.raises(CommandError, match="unknown clinic"):
        call_command("verify_audit_chain", "--clinic", "nowhere", stdout=io.StringIO())


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="SQLite serialises writers database-wide; concurrency is PostgreSQL's (advisory lock) case",
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_the_chain_and_flush_still_works(personas):
    from django.db import connections

    threads_n, per_thread = 8, 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def writer() -> None:
        try:
            barrier.wait()
            for _ in range(per_thread):
                with transaction.atomic():
                    append(personas, 1)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    seqs = list(AuditEvent.objects.filter(clinic=personas.north).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, threads_n * per_thread + 1))
    assert "north: ok, 120 rows" in verify()
    # Teardown flushes with TRUNCATE, which fires no row trigger: the next test starts from an empty table.


@pytest.mark.django_db(transaction=True)
def test_flush_still_empties_the_table_and_the_guard_comes_back(personas):
    """The test runner's flush (TRUNCATE on PostgreSQL; DELETE on SQLite with the triggers lifted) still works,
    and afterwards the database refuses a raw DELETE again."""
    append(personas, 2)
    call_command("flush", interactive=False, verbosity=0)
    assert AuditEvent.objects.count() == 0
    from clinics.services import clinic_create  # the flush removed the personas too: one clinic and row again

    clinic = clinic_create(slug="north", name="North", twilio_number="+15550100100", on_call_number="+15550100199")
    event = audit_record(clinic=clinic, actor=None, action="system.check")
    assert event.seq == 1
    with pytest.raises(DatabaseError, match="append-only"), db_scope.as_owner(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM clinics_auditevent WHERE id = %s", [event.pk])
