"""Field encryption at rest (`clinics.crypto`): the stored form, binding to the column, tampering, unknown key
ids, key configuration, and rotation with `manage.py rotate_field_keys`."""

from __future__ import annotations

import base64
import datetime
import importlib
import io

import pytest
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from clinics import crypto
from ehr.models import PatientLink
from triage.models import Case
from triage.services import case_enqueue

pytestmark = pytest.mark.django_db

KEY_A = "key-a:" + base64.b64encode(b"A" * 32).decode()
KEY_B = "key-b:" + base64.b64encode(b"B" * 32).decode()


def _stored(model, pk: int, column: str) -> str:
    """The raw column value, as the database holds it (no ORM decryption)."""
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {qn(column)} FROM {qn(model._meta.db_table)} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def _set_stored(model, pk: int, column: str, value: str) -> None:
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {qn(model._meta.db_table)} SET {qn(column)} = %s WHERE id = %s", [value, pk])


def _case(clinic, **fields) -> Case:
    return case_enqueue(
        clinic=clinic,
        callback_number="+15555550142",
        acuity=3,
        patient_display="Quentin Canaryfield",
        patient_birth_date=datetime.date(1961, 7, 4),
        answers=[{"question": "q1", "text": "Chest pain?", "answer": False}],
        **fields,
    )


def test_values_are_stored_sealed_and_read_back_plain(personas) -> None:
    case = _case(personas.north)
    stored = _stored(Case, case.pk, "callback_number")
    assert stored.startswith("enc:v1:test-not-secret:") and "5555550142" not in stored
    assert "Canaryfield" not in _stored(Case, case.pk, "patient_display")
    assert "1961" not in _stored(Case, case.pk, "patient_birth_date")
    assert "Chest" not in _stored(Case, case.pk, "answers")
    again = Case.objects.get(pk=case.pk)
    assert again.callback_number == "+15555550142" and again.patient_display == "Quentin Canaryfield"
    assert again.patient_birth_date == datetime.date(1961, 7, 4)
    assert again.answers == [{"question": "q1", "text": "Chest pain?", "answer": False}]
    assert Case.objects.filter(pk=case.pk).values_list("callback_number", flat=True).get() == "+15555550142"


def test_the_same_value_encrypts_differently_each_time(personas) -> None:
    first, second = _case(personas.north), _case(personas.north)
    assert _stored(Case, first.pk, "callback_number") != _stored(Case, second.pk, "callback_number")


def test_a_flipped_byte_fails_authentication(personas) -> None:
    case = _case(personas.north)
    stored = _stored(Case, case.pk, "callback_number")
    prefix, _, body = stored.rpartition(":")
    blob = bytearray(base64.urlsafe_b64decode(body))
    blob[len(blob) // 2] ^= 0x01
    _set_stored(Case, case.pk, "callback_number", f"{prefix}:{base64.urlsafe_b64encode(bytes(blob)).decode()}")
    with pytest.raises(crypto.TamperedValue, match="triage.case.callback_number"):
        Case.objects.get(pk=case.pk)


def test_a_ciphertext_moved_to_another_column_fails_authentication(personas) -> None:
    case = _case(personas.north)
    _set_stored(Case, case.pk, "note", _stored(Case, case.pk, "patient_display"))
    with pytest.raises(crypto.TamperedValue, match="moved from another column"):
        Case.objects.get(pk=case.pk)


def test_plaintext_in_an_encrypted_column_is_refused(personas) -> None:
    case = _case(personas.north)
    _set_stored(Case, case.pk, "note", "injected plaintext")
    with pytest.raises(crypto.FieldEncryptionError, match="not an encrypted field value"):
        Case.objects.get(pk=case.pk)


def test_an_unknown_key_id_raises_an_error_naming_it(personas, settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = KEY_A
    case = _case(personas.north)
    settings.FIELD_ENCRYPTION_KEYS = KEY_B
    with pytest.raises(crypto.UnknownKeyId, match="'key-a'") as caught:
        Case.objects.get(pk=case.pk)
    assert caught.value.kid == "key-a" and "FIELD_ENCRYPTION_KEYS" in str(caught.value)


def test_encrypted_columns_cannot_be_queried_by_value(personas) -> None:
    _case(personas.north)
    with pytest.raises(FieldError, match="encrypted at rest"):
        list(Case.objects.filter(callback_number="+15555550142"))
    with pytest.raises(FieldError, match="encrypted at rest"):
        list(Case.objects.filter(note__contains="x"))
    assert Case.objects.filter(patient_birth_date__isnull=False).count() == 1


def test_rotation_re_encrypts_to_the_newest_key_and_the_old_key_can_then_go(personas, settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = KEY_A
    case = _case(personas.north)
    link = PatientLink.objects.create(
        clinic=personas.north,
        mrn="MRN-7",
        family_name="Canaryfield",
        birth_date=datetime.date(1961, 7, 4),
        phones=["+15555550142"],
    )
    assert crypto.key_id(_stored(Case, case.pk, "note")) == "key-a"

    settings.FIELD_ENCRYPTION_KEYS = f"{KEY_B},{KEY_A}"  # B first: B encrypts, A still decrypts
    assert Case.objects.get(pk=case.pk).callback_number == "+15555550142"
    out = io.StringIO()
    call_command("rotate_field_keys", "--dry-run", stdout=out)
    assert "triage.Case.callback_number: 1 to re-encrypt" in out.getvalue()
    assert crypto.key_id(_stored(Case, case.pk, "note")) == "key-a"  # dry run wrote nothing

    out = io.StringIO()
    call_command("rotate_field_keys", "--batch-size", "1", stdout=out)
    report = out.getvalue()
    assert "triage.Case.callback_number: 1 re-encrypted" in report
    assert "ehr.PatientLink.birth_date: 1 re-encrypted" in report
    assert "ehr.PatientLink.phones: 1 re-encrypted" in report
    for column in ("callback_number", "note", "patient_display", "patient_birth_date", "answers"):
        assert crypto.key_id(_stored(Case, case.pk, column)) == "key-b"

    again = io.StringIO()
    call_command("rotate_field_keys", stdout=again)  # idempotent
    assert "total re-encrypted: 0" in again.getvalue()

    settings.FIELD_ENCRYPTION_KEYS = KEY_B  # A removed from the environment
    assert Case.objects.get(pk=case.pk).callback_number == "+15555550142"
    assert Case.objects.get(pk=case.pk).patient_birth_date == datetime.date(1961, 7, 4)
    link = PatientLink.objects.get(pk=link.pk)
    assert (link.family_name, link.birth_date, link.phones) == (
        "Canaryfield",
        datetime.date(1961, 7, 4),
        ["+15555550142"],
    )


def test_rotation_stops_on_a_value_under_an_unknown_key(personas, settings) -> None:
    settings.FIELD_ENCRYPTION_KEYS = KEY_A
    _case(personas.north)
    settings.FIELD_ENCRYPTION_KEYS = KEY_B
    with pytest.raises(Exception, match="'key-a'"):
        call_command("rotate_field_keys", stdout=io.StringIO())


def test_keys_can_come_from_a_file(personas, settings, tmp_path) -> None:
    path = tmp_path / "field-keys"
    path.write_text(f"# rotated 2026-11\n{KEY_B}\n{KEY_A}\n")
    settings.FIELD_ENCRYPTION_KEYS = ""
    settings.FIELD_ENCRYPTION_KEYS_FILE = str(path)
    case = _case(personas.north)
    assert crypto.key_id(_stored(Case, case.pk, "callback_number")) == "key-b"
    assert Case.objects.get(pk=case.pk).callback_number == "+15555550142"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "holds no key"),
        ("nokid", "kid:base64key"),
        ("short:" + base64.b64encode(b"x" * 16).decode(), "32 bytes"),
        (f"{KEY_A},{KEY_A}", "appears twice"),
    ],
)
def test_bad_key_configuration_is_refused_without_echoing_key_material(spec, message) -> None:
    with pytest.raises(ImproperlyConfigured, match=message) as caught:
        crypto.parse_keys(spec)
    assert base64.b64encode(b"A" * 32).decode() not in str(caught.value)


def test_production_settings_require_a_key(monkeypatch) -> None:
    import importlib
    import sys

    for name, value in {
        "DJANGO_SECRET_KEY": "x" * 60,
        "TWILIO_AUTH_TOKEN": "t",
        "PUBLIC_BASE_URL": "https://c.example",
        "ALLOWED_HOSTS": "c.example",
        "CARELINE_DEMO": "false",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FIELD_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("FIELD_ENCRYPTION_KEYS_FILE", raising=False)
    sys.modules.pop("careline.settings.production", None)
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS"):
        importlib.import_module("careline.settings.production")
    monkeypatch.setenv("FIELD_ENCRYPTION_KEYS", KEY_B)
    sys.modules.pop("careline.settings.production", None)
    production = importlib.import_module("careline.settings.production")
    assert production.FIELD_ENCRYPTION_KEYS == KEY_B
    sys.modules.pop("careline.settings.production", None)


def test_the_data_migration_encrypts_legacy_plaintext_rows_and_reverses(personas) -> None:
    case = _case(personas.north)
    _set_stored(Case, case.pk, "note", "legacy plaintext note")
    _set_stored(Case, case.pk, "answers", '[{"question": "q1", "answer": true}]')
    columns = [("note", "triage.case.note", False), ("answers", "triage.case.answers", True)]
    changed = crypto.migrate_columns(connection, table=Case._meta.db_table, pk="id", columns=columns, forward=True)
    assert changed == 2  # only the two plaintext values; the sealed ones are left as they are
    assert crypto.is_encrypted(_stored(Case, case.pk, "note"))
    again = Case.objects.get(pk=case.pk)
    assert again.note == "legacy plaintext note" and again.answers == [{"question": "q1", "answer": True}]
    assert crypto.migrate_columns(connection, table=Case._meta.db_table, pk="id", columns=columns, forward=True) == 0
    crypto.migrate_columns(connection, table=Case._meta.db_table, pk="id", columns=columns, forward=False)
    assert _stored(Case, case.pk, "note") == "legacy plaintext note"


def test_the_working_state_data_migrations_encrypt_call_legs_and_timeline_rows(personas) -> None:
    """ivr 0006 and triage 0007 (the columns encrypted in this issue's second pass) seal legacy plaintext."""
    from types import SimpleNamespace

    from django.apps import apps

    from ivr.models import CallLeg
    from triage.models import CaseEvent

    case = _case(personas.north)
    event = CaseEvent.objects.filter(case=case).first()
    assert event is not None
    leg = CallLeg.objects.create(call_sid="CAlegacy", clinic=personas.north, from_number="+15555550142")
    _set_stored(CallLeg, leg.pk, "collected", '{"dob": "1961-07-04", "digits": ["1"]}')
    _set_stored(CallLeg, leg.pk, "last_twiml", "<Response><Say>legacy</Say></Response>")
    _set_stored(CaseEvent, event.pk, "summary", "legacy plaintext summary")
    _set_stored(CaseEvent, event.pk, "detail", '{"note": "legacy"}')
    editor = SimpleNamespace(connection=connection)
    for module, in_app in (
        ("ivr.migrations.0006_encrypt_working_state_rows", "ivr"),
        ("triage.migrations.0007_encrypt_caseevent_rows", "triage"),
    ):
        importlib.import_module(module).Migration.operations[0].code(apps, editor)  # RunPython forward
        assert in_app in module
    for model, pk, column in (
        (CallLeg, leg.pk, "collected"),
        (CallLeg, leg.pk, "last_twiml"),
        (CaseEvent, event.pk, "summary"),
        (CaseEvent, event.pk, "detail"),
    ):
        assert crypto.is_encrypted(_stored(model, pk, column)), column
    leg.refresh_from_db()
    event.refresh_from_db()
    assert leg.collected == {"dob": "1961-07-04", "digits": ["1"]}
    assert leg.last_twiml == "<Response><Say>legacy</Say></Response>"
    assert (event.summary, event.detail) == ("legacy plaintext summary", {"note": "legacy"})
