"""A dump of the whole database holds none of the canary PHI a flow stored, while the ORM reads it back.

PostgreSQL: `pg_dump` of the test database (data committed: a transactional test). SQLite (`make
test-embedded`): the database file's bytes. If encryption were off, the first assertions (canaries present
through the ORM) would still pass and the dump assertions would fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection

from ehr.hl7.adt import handle_message
from ehr.models import Hl7Message, PatientLink, WriteBack
from ehr.services import writeback_enqueue
from ehr.types import Answer, Outcome
from ivr.models import CallLeg, OutboundMessage
from ivr.services.messages import outbound_message_record
from tests.ehr.adt_messages import adt
from tests.ivr.phone import Phone
from triage.models import Case, CaseEvent
from triage.services import case_add_event, case_claim_next, case_complete, case_enqueue

CALLBACK = "+15553141592"
NOTE = "Qzxcanarynote advised fluids"
SMS = "Xyzzycanarysms call us back"
HL7_NAME = "Zzdumpcanary"
WRITEBACK_NAME = "Wqcanarywriteback"
IVR_CALLER = "+15552718281"
IVR_DOB_DIGITS = "07131937"  # keyed on the phone: CallLeg.collected (and the stored TwiML's context)
IVR_DOB = "1937-07-13"
TIMELINE_NOTE = "Vvtimelinecanary caller says the rash spread"
TIMELINE_DETAIL = "Kktimelinedetailcanary"
CANARIES = (
    CALLBACK,
    NOTE,
    SMS,
    HL7_NAME,
    WRITEBACK_NAME,
    "Qzxcanarynote",
    "Xyzzycanarysms",
    IVR_CALLER,
    IVR_DOB_DIGITS,
    IVR_DOB,
    TIMELINE_NOTE,
    "Vvtimelinecanary",
    TIMELINE_DETAIL,
)


def _database_bytes() -> bytes:
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        pg_dump = shutil.which("pg_dump")
        assert pg_dump, "pg_dump is needed for this test (installed with PostgreSQL)"
        env = {**os.environ, "PGPASSWORD": str(settings.get("PASSWORD") or "")}
        command = [pg_dump, "--data-only", "--no-owner", "-d", settings["NAME"]]
        if settings.get("HOST"):
            command += ["-h", str(settings["HOST"])]
        if settings.get("PORT"):
            command += ["-p", str(settings["PORT"])]
        if settings.get("USER"):
            command += ["-U", str(settings["USER"])]
        return subprocess.run(command, env=env, capture_output=True, check=True, timeout=120).stdout
    assert connection.vendor == "sqlite"
    path = Path(settings["NAME"])
    assert path.is_file(), "the SQLite test database must be a file (CARELINE_TEST_DB)"
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(FULL)")  # harmless when the file is not in WAL mode
    data = path.read_bytes()
    wal = Path(f"{path}-wal")
    return data + (wal.read_bytes() if wal.is_file() else b"")


@pytest.mark.django_db(transaction=True)
def test_database_dump_holds_no_plaintext_canary(personas, client) -> None:
    north, alice = personas.north, personas.alice
    # An IVR call through the signed webhooks: the EHR is unreachable in tests (closed port), so the flow asks
    # for the birth date and keeps it in the leg's working state for the later lookup.
    phone = Phone(client, from_number=IVR_CALLER)
    phone.dial()
    phone.press("1")  # English
    assert phone.step() == "dob"
    phone.press(IVR_DOB_DIGITS)
    assert phone.step() == "protocol"
    case = case_enqueue(
        clinic=north, callback_number=CALLBACK, acuity=3, patient_fhir_id="pat-1", patient_display=WRITEBACK_NAME
    )
    assert case_claim_next(clinic=north, nurse=alice).pk == case.pk
    case_complete(case_id=case.pk, clinic=north, nurse=alice, disposition_code="home-care", note=NOTE)
    case_add_event(case=case, kind=CaseEvent.Kind.NOTE, summary=TIMELINE_NOTE, detail={"text": TIMELINE_DETAIL})
    outbound_message_record(clinic=north, case=case, to=CALLBACK, body=SMS)
    handle_message(data=adt("A04", "CTRL-DUMP-1", family=HL7_NAME, mrn="MRN-DUMP").encode(), clinic=north)
    now = datetime.now(UTC)
    writeback_enqueue(
        clinic=north,
        outcome=Outcome(
            case_uuid=str(case.uuid),
            case_id=case.pk,
            clinic_slug=north.slug,
            clinic_name=north.name,
            patient_fhir_id="pat-1",
            patient_display=WRITEBACK_NAME,
            started_at=now,
            ended_at=now,
            acuity=3,
            disposition_code="home-care",
            disposition_display="Home care",
            note=NOTE,
            nurse_username="alice",
            nurse_display="Alice",
            protocol_code="",
            protocol_title="",
            protocol_version="",
            answers=(Answer(question_id="q1", text="Fever?", answer=True),),
        ),
    )

    # Present through the ORM (so the test fails if nothing was stored, or if encryption were off) ...
    stored = Case.objects.get(pk=case.pk)
    assert (stored.callback_number, stored.note, stored.patient_display) == (CALLBACK, NOTE, WRITEBACK_NAME)
    assert any(m.body == SMS and m.to == CALLBACK for m in OutboundMessage.objects.all())
    assert any(HL7_NAME in m.raw for m in Hl7Message.objects.all())
    assert PatientLink.objects.get(mrn="MRN-DUMP").family_name == HL7_NAME
    assert any(w.payload.get("patient_display") == WRITEBACK_NAME for w in WriteBack.objects.all())
    leg = CallLeg.objects.get(call_sid=phone.call_sid)
    assert (leg.from_number, leg.collected["dob"]) == (IVR_CALLER, IVR_DOB) and leg.last_twiml.startswith("<?xml")
    note = CaseEvent.objects.get(case=case, kind=CaseEvent.Kind.NOTE)
    assert (note.summary, note.detail) == (TIMELINE_NOTE, {"text": TIMELINE_DETAIL})

    # ... and absent from the database's bytes.
    dump = _database_bytes()
    assert b"enc:v1:" in dump and b"MRN-DUMP" in dump  # the rows are in the dump (the MRN stays plaintext)
    found = [canary for canary in CANARIES if canary.encode() in dump]
    assert found == [], f"plaintext PHI in the database dump: {found}"
