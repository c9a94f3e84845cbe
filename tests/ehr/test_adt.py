"""The ADT handler (`ehr.hl7.adt.handle_message`): store first, apply to PatientLink, ACK AA/AE/AR."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hl7
import pytest
from django.core.cache import cache

from ehr.hl7.adt import handle_message
from ehr.models import Hl7Message, PatientLink
from ehr.services import _context_cache_key
from tests.ehr.adt_messages import CANARY, adt

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hl7"
if not SAMPLES.is_dir():
    SAMPLES = Path("/work/shared/data/hl7")


def _send(text: str, clinic) -> tuple[str, str, str]:
    result = handle_message(data=text.encode("utf-8"), clinic=clinic)
    ack = hl7.parse(result.ack)
    msa = ack.segment("MSA")
    return str(msa[1]), str(msa[2]), str(msa[3]) if len(msa) > 3 else ""


def test_a04_registers_a_patient_and_the_ack_mirrors_the_header(personas) -> None:
    result = handle_message(data=adt("A04", "C-1", fhir_id="pat-9").encode(), clinic=personas.north)

    ack = hl7.parse(result.ack)
    msh, msa = ack.segment("MSH"), ack.segment("MSA")
    assert (str(msa[1]), str(msa[2])) == ("AA", "C-1")
    assert (str(msh[3]), str(msh[4]), str(msh[5]), str(msh[6])) == ("CARELINE", "north", "ADTAPP", "HOSP")
    assert str(msh[9]) == "ACK^A04^ACK" and str(msh[12]) == "2.5" and str(msh[10]) != "C-1"
    link = PatientLink.objects.get(clinic=personas.north, mrn="MRN-1001")
    assert (link.mrn_authority, link.fhir_id, link.family_name, link.given_name) == ("HOSP", "pat-9", CANARY, "Betty")
    assert str(link.birth_date) == "1980-02-14"
    assert link.phones == ["+15551461616"]  # XTN-6/7 and the v2.3-style XTN-1 are the same number
    row = Hl7Message.objects.get(pk=result.message_id)
    assert (row.direction, row.state, row.ack_code, row.control_id) == ("in", "applied", "AA", "C-1")
    assert (row.sending_application, row.sending_facility, row.clinic_id) == ("ADTAPP", "HOSP", personas.north.pk)
    assert row.raw.startswith("MSH|") and CANARY in row.raw and row.processed_at is not None


@pytest.mark.parametrize("trigger", ["A08", "A28", "A31", "A01", "A05"])
def test_register_and_update_triggers_upsert(personas, trigger) -> None:
    assert _send(adt("A04", "R-1", phone="555-000-1111"), personas.north)[0] == "AA"

    code, control, _ = _send(adt(trigger, "U-1", family="Newname", phone="555-222-3333"), personas.north)

    assert (code, control) == ("AA", "U-1")
    link = PatientLink.objects.get(clinic=personas.north, mrn="MRN-1001")
    assert link.family_name == "Newname" and link.phones == ["+15551461616", "+15552223333"]
    assert PatientLink.objects.count() == 1


def test_update_for_an_unknown_mrn_creates_the_link(personas) -> None:
    assert _send(adt("A08", "U-9", mrn="NEW-1"), personas.north)[0] == "AA"
    assert PatientLink.objects.filter(clinic=personas.north, mrn="NEW-1").exists()


def test_links_are_scoped_to_the_listener_clinic(personas) -> None:
    _send(adt("A04", "S-1", family="North"), personas.north)
    _send(adt("A04", "S-1", family="South"), personas.south)  # same MRN and control id, other clinic

    assert PatientLink.objects.get(clinic=personas.north).family_name == "North"
    assert PatientLink.objects.get(clinic=personas.south).family_name == "South"


def test_a40_merges_the_prior_mrn_into_the_survivor_as_an_alias(personas) -> None:
    _send(adt("A04", "M-1", mrn="OLD-1", fhir_id="old-fhir"), personas.north)
    _send(adt("A04", "M-2", mrn="OLDER-1"), personas.north)
    _send(adt("A40", "M-3", mrn="OLD-1", mrg="OLDER-1"), personas.north)  # OLDER-1 -> OLD-1

    code, _, _ = _send(adt("A40", "M-4", mrn="NEW-1", family="Survivor", mrg="OLD-1"), personas.north)

    assert code == "AA"
    survivor = PatientLink.objects.get(mrn="NEW-1")
    old = PatientLink.objects.get(mrn="OLD-1")
    older = PatientLink.objects.get(mrn="OLDER-1")
    assert old.merged_into == survivor and older.merged_into == survivor  # chains re-pointed, one deep
    assert old.resolve() == survivor and survivor.merged_into is None
    assert old.fhir_id == "old-fhir"  # the alias keeps what it had
    # an update sent under the old MRN lands on the survivor
    _send(adt("A08", "M-5", mrn="OLD-1", family="Updated"), personas.north)
    survivor.refresh_from_db()
    assert survivor.family_name == "Updated"
    assert PatientLink.objects.get(mrn="OLD-1").family_name == CANARY


def test_a40_for_an_unknown_prior_mrn_keeps_an_alias(personas) -> None:
    assert _send(adt("A40", "M-7", mrn="KEEP-1", mrg="GONE-1"), personas.north)[0] == "AA"
    assert PatientLink.objects.get(mrn="GONE-1").resolve().mrn == "KEEP-1"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (adt("A40", "E-1"), "ADT^A40 without MRG segment"),
        (adt("A40", "E-2", mrg="MRN-1001"), "MRG-1 names the surviving patient (PID-3)"),
        (adt("A04", "E-3").replace("MRN-1001^^^HOSP^MR", ""), "PID-3 has no patient identifier"),
        ("\r".join(adt("A04", "E-4").split("\r")[:2]), "no PID segment"),
    ],
)
def test_messages_that_cannot_be_applied_get_ae(personas, text, reason) -> None:
    code, control, text_out = _send(text, personas.north)

    assert code == "AE" and text_out == reason and control.startswith("E-")
    assert Hl7Message.objects.get(control_id=control).state == "error"
    assert not PatientLink.objects.filter(merged_into__isnull=False).exists()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"hello", "not an HL7 v2 message (no MSH segment)"),
        (adt("A04", "").encode(), "MSH-10 (message control id) is required"),
        (adt("A04", "X-1").encode().replace(b"Betty", b"B\xffetty"), "message is not valid UTF-8"),
        (adt("A04", "X-2", version="").encode(), "MSH-12 (version id) is required"),
        (adt("A04", "X-3", version="9.9").encode(), "cannot parse the message (UnsupportedVersion)"),
        (adt("A04", "X-4").replace("ADT^A04^ADT_A01", "ORU^R01").encode(), "unsupported message type ORU^R01"),
        (adt("A03", "X-5").encode(), "unsupported message type ADT^A03"),
        (adt("A04", "X-6").encode().replace(b"Betty", b"Be\x00tty"), "message contains NUL bytes"),
    ],
)
def test_messages_that_cannot_be_used_get_ar_and_are_still_stored(personas, data, reason) -> None:
    result = handle_message(data=data, clinic=personas.north)

    assert (result.code, result.text) == ("AR", reason)
    row = Hl7Message.objects.get(pk=result.message_id)
    assert row.state == "rejected" and row.ack_code == "AR" and row.ack_text == reason
    assert not PatientLink.objects.exists()


def test_invalid_utf8_is_stored_with_escapes(personas) -> None:
    result = handle_message(data=adt("A04", "X-1").encode().replace(b"Betty", b"B\xffetty"), clinic=personas.north)
    assert "B\\xffetty" in Hl7Message.objects.get(pk=result.message_id).raw


def test_a_resent_message_is_acked_again_but_not_applied_twice(personas) -> None:
    assert _send(adt("A04", "D-1", family="First"), personas.north)[0] == "AA"
    _send(adt("A08", "D-2", family="Second"), personas.north)

    code, control, text = _send(adt("A04", "D-1", family="First"), personas.north)  # the sender resends D-1

    assert (code, control) == ("AA", "D-1") and "not applied again" in text
    assert PatientLink.objects.get().family_name == "Second"  # D-1 did not overwrite the later update
    states = list(Hl7Message.objects.filter(control_id="D-1").order_by("pk").values_list("state", flat=True))
    assert states == ["applied", "duplicate"]


def test_same_control_id_from_another_sender_is_not_a_duplicate(personas) -> None:
    _send(adt("A04", "D-5", family="First"), personas.north)
    code, _, text = _send(adt("A08", "D-5", family="Other", app="OTHERAPP"), personas.north)
    assert code == "AA" and text == ""
    assert PatientLink.objects.get().family_name == "Other"


def test_a_rejected_message_is_processed_again_when_resent(personas) -> None:
    assert _send(adt("A40", "D-7"), personas.north)[0] == "AE"
    assert _send(adt("A40", "D-7", mrg="PRIOR-1"), personas.north)[0] == "AA"


def test_route_by_msh6_without_a_listener_clinic(personas) -> None:
    assert _send(adt("A04", "F-1"), None)[0] == "AA"  # MSH-6 is "north"
    assert PatientLink.objects.get().clinic == personas.north
    code, _, text = _send(adt("A04", "F-2").replace("|north|", "|nowhere|"), None)
    assert (code, text) == ("AR", "unknown receiving facility (MSH-6)")


def test_an_update_drops_the_cached_chart(personas) -> None:
    # Charts are cached per case and per patient; an inbound update must make every copy unreachable.
    keys = [_context_cache_key("pat-77", case_key) for case_key in ("", "case-a", "case-b")]
    for key in keys:
        cache.set(key, {"cached": True}, 60)

    _send(adt("A08", "K-1", fhir_id="pat-77"), personas.north)

    assert all(_context_cache_key("pat-77", case_key) not in keys for case_key in ("", "case-a", "case-b"))


def test_log_lines_carry_no_phi(personas, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for text in (adt("A04", "L-1"), adt("A40", "L-2"), adt("A04", "L-3").replace("2.5", "")):
        handle_message(data=text.encode(), clinic=personas.north)
    handle_message(data=b"\xff" + CANARY.encode(), clinic=personas.north)

    assert "L-1" in caplog.text  # the handler does log, by control id
    for phi in (CANARY, "Betty", "MRN-1001", "19800214", "1461616"):
        assert phi not in caplog.text


SAMPLE_INDEX = json.loads((SAMPLES / "index.json").read_text())["messages"]


@pytest.mark.parametrize("entry", SAMPLE_INDEX, ids=[e["file"] for e in SAMPLE_INDEX])
def test_every_shared_sample_parses_or_gets_a_clear_ack(personas, entry) -> None:
    data = (SAMPLES / entry["file"]).read_bytes()

    result = handle_message(data=data, clinic=personas.north)

    ack = hl7.parse(result.ack)
    assert str(ack.segment("MSA")[2]) == entry["msh10"]
    kind, trigger = entry["msh9"].split("^")[:2]
    if kind == "ADT":
        assert result.code == "AA", result.text
        assert result.state == "applied"
        assert PatientLink.objects.filter(clinic=personas.north).exists()
    else:
        assert (result.code, result.text) == ("AR", f"unsupported message type {kind}^{trigger}")
        assert not PatientLink.objects.exists()
