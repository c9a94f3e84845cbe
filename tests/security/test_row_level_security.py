"""PostgreSQL row-level security, the application role and its grants: the database's own wall between clinics.

Each test turns the ORM scoping off on purpose (`Case.objects.all()`, raw SQL over every RLS table) and shows
what the database alone returns. The suite runs as the non-superuser role `DATABASE_APP_ROLE`
(`careline.settings.test`), so these tests see exactly what the application sees. PostgreSQL only: on SQLite
(the embedded run) the ORM scoping is the only wall (README "Security").
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.utils import timezone

from careline.middleware import ClinicScopeMiddleware
from clinics import db_scope
from clinics.db_security import AUDIT_TABLE, RLS_TABLES
from clinics.models import AuditEvent
from clinics.services import audit_record
from contactcenter import visit_chat, visits
from contactcenter.models import CallSession, VideoVisit
from contactcenter.services import accept, claim_next
from ehr.hl7.adt import handle_message
from ehr.models import WriteBack
from ivr.models import AppointmentReminder, CallLeg, InboundMessage, OutboundCall, ReminderCampaign, SmsOptOut
from ivr.services.messages import outbound_message_record
from tests.ehr.adt_messages import adt
from triage.models import BreakGlassGrant, Case, CaseEvent
from triage.services import case_add_event, case_enqueue

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        os.environ.get("DATABASE_URL", "postgres").startswith("sqlite"), reason="row-level security is PostgreSQL's"
    ),
]

ROOT = Path(__file__).resolve().parents[2]


def _north_rows(personas: Any) -> Case:
    """A North case with a row in (nearly) every RLS table, created in the test's system scope."""
    north = personas.north
    case = case_enqueue(clinic=north, callback_number="+15553330001", acuity=3, patient_display="Northrow Patient")
    case_add_event(case=case, kind=CaseEvent.Kind.NOTE, summary="north timeline")
    CallLeg.objects.create(call_sid="CA" + uuid.uuid4().hex, clinic=north, from_number="+15553330001", case=case)
    outbound_message_record(clinic=north, case=case, to="+15553330001", body="north sms")
    handle_message(data=adt("A04", "CTRL-RLS-1", family="Northlink", mrn="MRN-RLS").encode(), clinic=north)
    WriteBack.objects.create(
        clinic=north, source_id=case.pk, target=WriteBack.Target.FHIR, idempotency_key=f"rls-{case.uuid}", payload={}
    )
    audit_record(clinic=north, actor=personas.alice, action="case.read", object_type="case", object_id=case.pk)
    BreakGlassGrant.objects.create(
        clinic=north, case=case, user=personas.bob, reason="north break-glass", expires_at=case.arrived_at
    )
    # Messaging (two-way SMS, opt-outs, "Call patient", reminders).
    InboundMessage.objects.create(clinic=north, case=case, message_sid="SM" + uuid.uuid4().hex, from_number="+1555")
    SmsOptOut.objects.create(clinic=north, number_digest=uuid.uuid4().hex, number="+15553330001")
    OutboundCall.objects.create(
        clinic=north, case=case, nurse=personas.alice, nurse_number="+15553330009", patient_number="+15553330001"
    )
    now = case.arrived_at
    campaign = ReminderCampaign.objects.create(clinic=north, name="north", window_start=now, window_end=now)
    AppointmentReminder.objects.create(campaign=campaign, clinic=north, appointment_id="a1", appointment_start=now)
    # A video visit with its call session, a quality sample, a chat message and an attachment (the services
    # set each child row's clinic from the visit).
    visit = VideoVisit.objects.create(
        room=uuid.uuid4(),
        clinic=north,
        case=case,
        nurse=personas.alice,
        token_hash=uuid.uuid4().hex * 2,
        expires_at=timezone.now() + timedelta(minutes=15),
    )
    CallSession.objects.create(clinic=north, case=case, visit=visit)
    visits.quality_record(visit_id=visit.pk, role="patient", figures={"rtt_ms": 12})
    visit_chat.chat_post(visit=visit, role="patient", author=None, body="north chat")
    visit_chat.attachment_store(visit=visit, role="patient", filename="north.pdf", data=b"%PDF-1.4 north")
    return case


def _in_request_of(user: Any, probe: Callable[[], Any]) -> Any:
    """Run `probe` as a view would, inside `ClinicScopeMiddleware` for a request by `user`."""
    seen: dict[str, Any] = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen["result"] = probe()
        return HttpResponse("ok")

    request = RequestFactory().get("/probe/")
    request.user = user
    ClinicScopeMiddleware(view)(request)
    return seen["result"]


def _count_clinic_rows(clinic_id: int) -> dict[str, int]:
    """Raw SQL, no ORM scoping: rows of `clinic_id` in every RLS table."""
    counts = {}
    with connection.cursor() as cursor:
        for table in RLS_TABLES:
            cursor.execute(f'SELECT count(*) FROM "{table}" WHERE clinic_id = %s', [clinic_id])
            counts[table] = cursor.fetchone()[0]
    return counts


def test_the_suite_runs_as_the_non_superuser_app_role() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
        )
        user, superuser, bypass = cursor.fetchone()
    assert (user, superuser, bypass) == (settings.DATABASE_APP_ROLE, False, False)


def test_every_phi_table_has_forced_rls_with_the_clinic_policy() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "(SELECT count(*) FROM pg_policies p WHERE p.tablename = c.relname) "
            "FROM pg_class c WHERE c.relname = ANY(%s) AND c.relkind = 'r'",
            [list(RLS_TABLES)],
        )
        rows = {name: (enabled, forced, policies) for name, enabled, forced, policies in cursor.fetchall()}
    assert rows == {table: (True, True, 1) for table in RLS_TABLES}


def test_with_orm_scoping_off_a_south_request_sees_none_of_norths_rows(personas) -> None:
    case = _north_rows(personas)
    north_id = personas.north.pk
    in_system = _count_clinic_rows(north_id)
    populated = set(RLS_TABLES) - {"triage_callbackattempt", "triage_acuityoverride"}
    assert all(in_system[t] >= 1 for t in populated), in_system  # the rows exist (the control)

    # Carol (South): the ORM's unscoped queries and raw SQL return nothing of North's.
    assert _in_request_of(personas.carol, lambda: list(Case.objects.all())) == []
    assert _in_request_of(personas.carol, lambda: Case.objects.filter(pk=case.pk).exists()) is False
    assert _in_request_of(personas.carol, lambda: AuditEvent.objects.filter(clinic_id=north_id).count()) == 0
    assert _in_request_of(personas.carol, lambda: _count_clinic_rows(north_id)) == dict.fromkeys(RLS_TABLES, 0)

    # Alice (North), same probe: her clinic's rows are there (allowed case from the same set-up).
    assert [c.pk for c in _in_request_of(personas.alice, lambda: list(Case.objects.all()))] == [case.pk]
    assert _in_request_of(personas.alice, lambda: _count_clinic_rows(north_id)) == in_system
    # The request's scope is restored afterwards.
    assert db_scope.current() == db_scope.SYSTEM


def test_a_south_request_cannot_write_norths_rows(personas) -> None:
    case = _north_rows(personas)

    def write_north() -> str:
        outcomes = []
        for statement, params in (
            ("UPDATE triage_case SET acuity = 1 WHERE id = %s", [case.pk]),
            ("DELETE FROM triage_caseevent WHERE case_id = %s", [case.pk]),
        ):
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                outcomes.append(cursor.rowcount)  # RLS: the row is invisible, so nothing matches
        try:
            with transaction.atomic():
                case_add_event(case=case, kind=CaseEvent.Kind.NOTE, summary="planted by south")
        except DatabaseError as exc:
            return f"{outcomes} {exc}"
        return f"{outcomes} inserted"

    result = _in_request_of(personas.carol, write_north)
    assert result.startswith("[0, 0] new row violates row-level security policy"), result
    case.refresh_from_db()
    assert case.acuity == 3 and not any(e.summary == "planted by south" for e in case.events.all())


def test_an_unset_scope_is_fail_closed(personas, client) -> None:
    _north_rows(personas)
    with db_scope.scope(db_scope.UNSET):
        assert Case.objects.count() == 0
        assert _count_clinic_rows(personas.north.pk) == dict.fromkeys(RLS_TABLES, 0)
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            case_enqueue(clinic=personas.north, callback_number="+15553330002", acuity=4)
    # An anonymous request runs unset too (not in the test's system scope).
    assert _in_request_of(AnonymousUserStub(), lambda: (db_scope.current(), Case.objects.count())) == ("", 0)
    with pytest.raises(ValueError):
        db_scope.scope("1 OR true").__enter__()


class AnonymousUserStub:
    is_authenticated = False
    pk = None


@pytest.mark.parametrize(
    "statement",
    [
        f"UPDATE {AUDIT_TABLE} SET action = 'case.rewritten'",
        f"DELETE FROM {AUDIT_TABLE}",
        f"TRUNCATE {AUDIT_TABLE}",
    ],
)
def test_the_app_role_may_not_update_delete_or_truncate_audit_rows(personas, statement) -> None:
    _north_rows(personas)
    with pytest.raises(DatabaseError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    # Refused by the grants (SQLSTATE 42501), before the append-only trigger would be reached.
    assert getattr(raised.value.__cause__, "sqlstate", None) == "42501"
    assert "permission denied for table clinics_auditevent" in str(raised.value)
    assert AuditEvent.objects.filter(action="case.read").count() == 1


def test_the_patients_visit_pages_run_in_the_visits_clinic_scope_once_the_link_or_session_verified(
    personas, monkeypatch
) -> None:
    """The patient has no account, so her requests start unset. Her join link (signature verified) and her
    session bound to the room get the visit's clinic scope from one system-scoped lookup of the visit's ids:
    she sees that clinic's rows only. A stranger stays unset; his refusal is audited in the visit's clinic."""
    case = case_enqueue(clinic=personas.north, callback_number="+15553330003", acuity=3)
    case_enqueue(clinic=personas.south, callback_number="+15553330004", acuity=3)  # must stay invisible
    assert claim_next(user=personas.alice).pk == case.pk
    accept(user=personas.alice, case_id=case.pk)
    started = visits.visit_start(user=personas.alice, case_id=case.pk, base_url="https://careline.test")
    room, path = started.visit.room, started.link.removeprefix("https://careline.test")
    seen: list[tuple[str, list[int]]] = []
    history = visit_chat.visit_history

    def probe(*, visit: VideoVisit) -> list[dict[str, Any]]:
        seen.append((db_scope.current(), sorted(set(Case.objects.values_list("clinic_id", flat=True)))))
        return history(visit=visit)

    monkeypatch.setattr(visit_chat, "visit_history", probe)

    assert Client().get(f"/visit/{room}/history/").status_code == 403 and seen == []
    assert AuditEvent.objects.filter(
        clinic=personas.north,
        actor=None,
        action="access.denied",
        object_type="video_visit",
        object_id=str(started.visit.pk),
    ).exists()
    patient = Client()
    assert patient.get(path).status_code == 200  # the landing page: the link verified, read in North's scope
    assert patient.post(path).status_code == 302  # redeemed: timeline entry and audit row written under RLS
    assert patient.get(f"/visit/{room}/history/").status_code == 200
    assert seen == [(str(personas.north.pk), [personas.north.pk])]
    assert db_scope.current() == db_scope.SYSTEM  # the test's own scope is back


def test_the_app_role_grants_on_the_audit_table_are_select_and_insert_only() -> None:
    role = settings.DATABASE_APP_ROLE
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee = %s AND table_name = %s ORDER BY privilege_type",
            [role, AUDIT_TABLE],
        )
        assert [r[0] for r in cursor.fetchall()] == ["INSERT", "SELECT"]
        cursor.execute("SELECT has_table_privilege(%s, 'triage_case', 'TRUNCATE')", [role])
        assert cursor.fetchone()[0] is False


@pytest.mark.django_db(transaction=True)
def test_migrations_apply_on_a_fresh_database_and_install_rls_role_and_grants() -> None:
    """`manage.py migrate` on an empty database (as the owner) ends with the policies, role and grants."""
    params = connection.settings_dict
    name = f"careline_fresh_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(
        host=params["HOST"] or "127.0.0.1",
        port=params["PORT"] or 5432,
        user=params["USER"],
        password=params["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgres://{params['USER']}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{name}"
        env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "careline.settings.test"}
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as fresh:
            forced = fresh.execute(
                "SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relrowsecurity AND relforcerowsecurity",
                [list(RLS_TABLES)],
            ).fetchone()
            grants = fresh.execute(
                "SELECT privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = %s AND table_name = %s ORDER BY privilege_type",
                [settings.DATABASE_APP_ROLE, AUDIT_TABLE],
            ).fetchall()
        assert forced == (len(RLS_TABLES),)
        assert [g[0] for g in grants] == ["INSERT", "SELECT"]
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
