"""HL7 v2 write-back (ORU^R01 and MDM^T02 over MLLP) against a real MLLP peer (tests/fixtures/mllp.py)."""

from __future__ import annotations

import asyncio
import contextlib

import hl7
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ValidationError
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from clinics.events import group_name, supervisor_group_name
from ehr.hl7.oru import control_id_for
from ehr.models import Hl7Message, WriteBack
from ehr.services import writeback_enqueue, writeback_send
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


def test_peer_answers_ae_the_row_retries_then_goes_dead(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    hl7_settings.HL7_AE_MAX_ATTEMPTS = 2
    mllp_peer.ack_code = "AE"

    rows = _enqueue(personas, make_outcome(""), django_capture_on_commit_callbacks)

    row = rows["hl7v2"]
    assert (row.state, row.attempts, row.last_error) == ("retrying", 1, "HL7 ACK AE")
    assert Hl7Message.objects.get(control_id=control_id_for(row.idempotency_key)).ack_code == "AE"
    with django_capture_on_commit_callbacks(execute=True):
        row = writeback_send(writeback_id=row.pk, now=row.next_attempt_at)
    assert (row.state, row.attempts, row.last_error) == ("dead", 2, "HL7 ACK AE (2 times)")
    assert len(mllp_peer.messages) == 2


def test_peer_answers_ar_the_row_goes_dead_and_supervisors_are_alerted(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    layer = get_channel_layer()
    supervisors = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(supervisor_group_name(personas.north.pk), supervisors)
    nurses = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name(personas.north.pk), nurses)
    mllp_peer.ack_code = "AR"

    rows = _enqueue(personas, make_outcome(""), django_capture_on_commit_callbacks)

    row = rows["hl7v2"]
    assert (row.state, row.attempts, row.next_attempt_at) == ("dead", 1, None)
    message = async_to_sync(layer.receive)(supervisors)
    assert message["event"] == "writeback.dead"
    assert message["payload"] == {
        "writeback_id": row.pk,
        "case_id": row.source_id,
        "target": "hl7v2",
        "message_type": "ORU^R01",
        "reason": "HL7 ACK AR",
    }
    seen = []
    with contextlib.suppress(TimeoutError):
        while True:
            seen.append(async_to_sync(asyncio.wait_for)(layer.receive(nurses), 0.3)["event"])
    assert "writeback.changed" in seen and "writeback.dead" not in seen  # nurses never get the alert


def test_an_ack_for_another_message_is_not_taken_as_ours(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    mllp_peer.ack_control_id = "SOMEONE-ELSES-ID"

    rows = _enqueue(personas, make_outcome(""), django_capture_on_commit_callbacks)

    row = rows["hl7v2"]
    assert row.state == "retrying"
    assert row.last_error == "HL7 ACK MSA-2 does not match the MSH-10 sent"


def test_a_clinic_sending_mdm_and_oru_gets_both_each_in_its_own_row(
    hl7_settings, mllp_peer, personas, make_outcome, django_capture_on_commit_callbacks
) -> None:
    personas.north.hl7_outbound_types = ["ORU^R01", "MDM^T02"]
    personas.north.save(update_fields=["hl7_outbound_types"])
    outcome = make_outcome("pat-1", patient_mrn="MRN-77")

    with django_capture_on_commit_callbacks(execute=True):
        rows = writeback_enqueue(clinic=personas.north, outcome=outcome)

    hl7_rows = [WriteBack.objects.get(pk=row.pk) for row in rows if row.target == "hl7v2"]
    assert [(row.message_type, row.state) for row in hl7_rows] == [("ORU^R01", "sent"), ("MDM^T02", "sent")]
    assert {row.ordering_key for row in hl7_rows} == {"fhir:pat-1"}
    types = [str(hl7.parse(raw).segment("MSH")[9]) for raw in mllp_peer.messages]
    assert types == ["ORU^R01^ORU_R01", "MDM^T02^MDM_T02"]
    mdm = hl7.parse(mllp_peer.messages[1])
    assert str(mdm.segment("MSH")[10]) == control_id_for(f"{outcome.case_uuid}:hl7v2:MDM^T02")
    txa = mdm.segment("TXA")
    assert (str(txa[2]), str(txa[12]), str(txa[17])) == ("TN", f"{outcome.case_uuid}^CARELINE", "AU")
    lines = [mdm.unescape(str(obx[5])) for obx in mdm.segments("OBX")]
    assert lines == [
        "Triage acuity (CTAS 1-5): 3",
        "Disposition: See your doctor within 24 hours (see_pcp_24h)",
        *NOTE.splitlines(),
    ]
    assert "pat-1^^^FHIR^PI" in str(mdm.segment("PID")[3])
    # hl7apy's strict validation accepts what we built (the receiver's parser sees a valid MDM_T02).
    parse_message(mllp_peer.messages[1].rstrip("\r"), validation_level=VALIDATION_LEVEL.STRICT).validate()


def test_hl7_outbound_types_are_validated(personas) -> None:
    personas.north.hl7_outbound_types = ["ORU^R01", "ADT^A08"]
    with pytest.raises(ValidationError):
        personas.north.full_clean()
    personas.north.hl7_outbound_types = ["MDM^T02"]
    personas.north.full_clean()


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
