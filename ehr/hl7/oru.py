"""The triage outcome as an HL7 v2.5 ORU^R01 (unsolicited observation result).

Why ORU^R01 and not MDM^T02: the outcome's discrete values (acuity, disposition) are observations that an
interface engine can map to flowsheet rows, and ORU^R01 is the message every EHR inbound results interface
accepts; MDM^T02 carries one document (TXA + OBX) and would bury acuity and disposition inside the note
text. The note still travels, as TX OBX lines under LOINC 34748-4 "Telephone encounter Note".

Segments (HL7 v2.5, chapter 7):
- MSH: MSH-3 `HL7_SENDING_APPLICATION`, MSH-4 clinic slug, MSH-5 `HL7_RECEIVING_APPLICATION`, MSH-9
  `ORU^R01^ORU_R01`, MSH-10 control id (`control_id_for`), MSH-11 `P`, MSH-12 `2.5`.
- PID: PID-3 the FHIR Patient id (type PI, authority `FHIR`) and the MRN (type MR) when known, else (caller
  never identified) the case uuid with type ANON "anonymous identifier" (table 0203); PID-5 the name.
- OBR: OBR-3 the case uuid (filler order number), OBR-4 SNOMED CT 401267002 "Telephone triage encounter",
  OBR-7/8 start and end of the triage, OBR-25 `F`.
- OBX 1: NM, the acuity (CTAS 1-5). OBX 2: CE, the disposition. OBX 3..n: TX, the note, one line each.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from django.conf import settings
from hl7apy.core import Message
from hl7apy.v2_5 import TX

from ehr.types import Outcome

MESSAGE_TYPE = "ORU^R01^ORU_R01"
CONTROL_ID_LENGTH = 20  # MSH-10 is ST(20) in HL7 v2.5


def control_id_for(idempotency_key: str) -> str:
    """MSH-10 for a write-back: the first 20 hex digits of SHA-256(idempotency key), stable across resends."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:CONTROL_ID_LENGTH]


def _text(value: str) -> str:
    """`value` with the HL7 delimiters escaped (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\), safe inside one component."""
    return str(TX(value.replace("\r", " ")).to_er7())


def _ts(moment: datetime) -> str:
    """HL7 v2.5 TS: YYYYMMDDHHMMSS+ZZZZ."""
    return moment.strftime("%Y%m%d%H%M%S%z")


def patient_identifiers(outcome: Outcome) -> list[str]:
    """PID-3 repetitions (CX): the FHIR Patient id (PI), the MRN (MR), else the case uuid (ANON)."""
    identifiers = []
    if outcome.patient_fhir_id:
        identifiers.append(f"{_text(outcome.patient_fhir_id)}^^^FHIR^PI")
    if outcome.patient_mrn:
        identifiers.append(f"{_text(outcome.patient_mrn)}^^^MRN^MR")
    if not identifiers:
        # PID-3 is required; an unidentified caller is filed under the case with type ANON (table 0203).
        identifiers.append(f"{_text(outcome.case_uuid)}^^^{_text(settings.HL7_SENDING_APPLICATION)}^ANON")
    return identifiers


def build_oru(outcome: Outcome, *, control_id: str) -> str:
    """The ORU^R01 for `outcome` as ER7 text (segments separated by `\\r`), ready for MLLP framing."""
    message = Message("ORU_R01", version="2.5")
    message.msh.msh_3 = _text(settings.HL7_SENDING_APPLICATION)
    message.msh.msh_4 = _text(outcome.clinic_slug)
    message.msh.msh_5 = _text(settings.HL7_RECEIVING_APPLICATION)
    message.msh.msh_7 = _ts(outcome.ended_at)
    message.msh.msh_9 = MESSAGE_TYPE
    message.msh.msh_10 = control_id
    message.msh.msh_11 = "P"
    message.msh.msh_12 = "2.5"

    result = message.oru_r01_patient_result
    pid = result.oru_r01_patient.pid
    pid.pid_1 = "1"
    identifiers = patient_identifiers(outcome)
    pid.pid_3 = identifiers[0]
    for extra in identifiers[1:]:  # further repetitions of PID-3
        pid.add_field("pid_3").value = extra
    given, _, family = outcome.patient_display.rpartition(" ")
    if outcome.patient_display:
        pid.pid_5 = f"{_text(family or given)}^{_text(given if family else '')}"

    order = result.oru_r01_order_observation
    order.obr.obr_1 = "1"
    order.obr.obr_3 = f"{_text(outcome.case_uuid)}^{_text(settings.HL7_SENDING_APPLICATION)}"
    order.obr.obr_4 = "401267002^Telephone triage encounter^SCT"
    order.obr.obr_7 = _ts(outcome.started_at)
    order.obr.obr_8 = _ts(outcome.ended_at)
    order.obr.obr_25 = "F"

    nurse = f"{_text(outcome.nurse_username)}^{_text(outcome.nurse_display)}"
    observations = [
        ("NM", "acuity^Triage acuity (CTAS 1-5)^L", "", str(outcome.acuity)),
        (
            "CE",
            "disposition^Disposition^L",
            "",
            f"{_text(outcome.disposition_code)}^{_text(outcome.disposition_display)}^L",
        ),
    ]
    for line in outcome.note.splitlines() or ([""] if not outcome.note else []):
        observations.append(("TX", "34748-4^Telephone encounter Note^LN", "1", _text(line)))
    for number, (value_type, code, sub_id, value) in enumerate(observations, start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(number)
        obx.obx_2 = value_type
        obx.obx_3 = code
        if sub_id:
            obx.obx_4 = sub_id
        obx.obx_5 = value
        obx.obx_11 = "F"
        obx.obx_14 = _ts(outcome.ended_at)
        obx.obx_16 = nurse
    return str(message.to_er7())
