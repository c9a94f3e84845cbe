"""HL7 v2 write-back (ORU^R01 over MLLP) against a real MLLP peer (tests/fixtures/mllp.py)."""

from __future__ import annotations

import hl7
import pytest

from ehr.hl7.oru import control_id_for
from ehr.models import Hl7Message, WriteBack
from ehr.services import writeback_enqueue
from tests.ehr.conftest import NOTE

pytestmark = pytest.mark.django_db


@pytest.fixture
def hl7_settings(settings, mllp_peer):
    settings.HL7_MLLP_HOST = mllp_peer.host
    settings.HL7_MLLP_PORT = mllp_peer.port
    settings.HL7_TIMEOUT_SECONDS = 3
    return settings


def _enqueue(personas, outcome, capture) -> dict[str, WriteBack]:
    with capture(execute=True):
        rows = writeback_enqueue(clinic=personas.north, outcome=outcome)
    return {row.target: WriteBack.objects.get(pk=row.pk) for row in rows}


def test_peer_receives_an_oru_and_the_row_is_sent(
    fhir, hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    patient_id = fhir.patient("oconner-betty")["server_id"]
    outcome = make_outcome(patient_id, patient_mrn="MRN-77")

    rows = _enqueue(personas, outcome, django_capture_on_commit_callbacks)

    assert rows["fhir"].state == "sent"
    row = rows["hl7v2"]
    assert row.state == "sent"
    assert row.response == {
        "control_id": control_id_for(f"{outcome.case_uuid}:hl7v2"),
        "ack_code": "AA",
        "ack_text": "",
    }
    [raw] = mllp_peer.messages
    message = hl7.parse(raw)
    assert str(message.segment("MSH")[9]) == "ORU^R01^ORU_R01"
    assert str(message.segment("MSH")[3]) == hl7_settings.HL7_SENDING_APPLICATION
    assert str(message.segment("MSH")[10]) == row.response["control_id"]
    assert len(row.response["control_id"]) <= 20
    pid3 = str(message.segment("PID")[3])
    assert f"{patient_id}^^^FHIR^PI" in pid3 and "MRN-77^^^MRN^MR" in pid3
    assert str(message.segment("OBR")[4]) == "401267002^Telephone triage encounter^SCT"
    obx = message.segments("OBX")
    assert (str(obx[0][2]), str(obx[0][5])) == ("NM", "3")
    assert str(obx[1][5]).startswith("see_pcp_24h^")
    note_lines = [message.unescape(str(s[5])) for s in obx[2:]]
    assert note_lines == NOTE.splitlines()
    log = Hl7Message.objects.get(control_id=row.response["control_id"])
    assert (log.direction, log.ack_code, log.message_type) == ("out", "AA", "ORU^R01^ORU_R01")
    assert log.raw == raw.rstrip("\r")  # the peer re-serialises with a trailing segment separator


def test_peer_answers_ae_and_the_row_fails(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    mllp_peer.ack_code = "AE"

    rows = _enqueue(personas, make_outcome(""), django_capture_on_commit_callbacks)

    assert rows["hl7v2"].state == "failed"
    assert rows["hl7v2"].last_error == "HL7 ACK AE"
    assert len(mllp_peer.messages) == 1
    assert Hl7Message.objects.get(control_id=control_id_for(rows["hl7v2"].idempotency_key)).ack_code == "AE"


def test_peer_down_and_the_row_retries(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    mllp_peer.stop()

    rows = _enqueue(personas, make_outcome(""), django_capture_on_commit_callbacks)

    row = rows["hl7v2"]
    assert row.state == "retrying" and row.attempts == 1 and row.next_attempt_at is not None
    assert row.last_error == "MLLP ConnectionRefusedError"


def test_unidentified_caller_skips_fhir_but_files_hl7(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    rows = _enqueue(personas, make_outcome(""), django_capture_on_commit_callbacks)

    assert rows["fhir"].state == "skipped"
    assert rows["hl7v2"].state == "sent"
    outcome_uuid = WriteBack.objects.get(pk=rows["hl7v2"].pk).payload["case_uuid"]
    assert str(hl7.parse(mllp_peer.messages[0]).segment("PID")[3]) == f"{outcome_uuid}^^^CARELINE^ANON"
