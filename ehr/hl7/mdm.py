"""The triage outcome as an HL7 v2.5 MDM^T02 (original document notification and content).

For EHRs whose inbound interface files documents rather than results: the nurse's note becomes one document
(TXA) whose content is TX OBX lines, the way transcription interfaces send notes. Acuity and disposition lead
the document text, since MDM carries no discrete observations a receiver would map.

Segments (HL7 v2.5, chapter 9):
- MSH as in ORU^R01 (`ehr.hl7.oru`) but MSH-9 `MDM^T02^MDM_T02`.
- EVN: EVN-1 `T02`, EVN-2 the end of the triage.
- PID: as in ORU^R01 (FHIR id PI, MRN MR, else the case uuid as ANON).
- PV1: PV1-2 `O` (outpatient: a telephone encounter is no admission).
- TXA: TXA-1 `1`, TXA-2 `TN` (telephone note; document type, user-defined table 0270), TXA-3 `TX`,
  TXA-4 the end of the triage, TXA-5 the nurse (originator), TXA-12 unique document number = the case uuid
  with CareLine as assigning authority (stable across resends), TXA-17 `AU` (authenticated; table 0271),
  TXA-19 `AV` (available; table 0273).
- OBX 1..n: TX, LOINC 34748-4 "Telephone encounter Note", one line each: acuity, disposition, the note lines.
"""

from __future__ import annotations

from django.conf import settings
from hl7apy.core import Message

from ehr.hl7.oru import _text, _ts, patient_identifiers
from ehr.types import Outcome

MESSAGE_TYPE = "MDM^T02^MDM_T02"


def build_mdm(outcome: Outcome, *, control_id: str) -> str:
    """The MDM^T02 for `outcome` as ER7 text (segments separated by `\\r`), ready for MLLP framing."""
    message = Message("MDM_T02", version="2.5")
    message.msh.msh_3 = _text(settings.HL7_SENDING_APPLICATION)
    message.msh.msh_4 = _text(outcome.clinic_slug)
    message.msh.msh_5 = _text(settings.HL7_RECEIVING_APPLICATION)
    message.msh.msh_7 = _ts(outcome.ended_at)
    message.msh.msh_9 = MESSAGE_TYPE
    message.msh.msh_10 = control_id
    message.msh.msh_11 = "P"
    message.msh.msh_12 = "2.5"

    message.evn.evn_1 = "T02"
    message.evn.evn_2 = _ts(outcome.ended_at)

    pid = message.pid
    pid.pid_1 = "1"
    identifiers = patient_identifiers(outcome)
    pid.pid_3 = identifiers[0]
    for extra in identifiers[1:]:
        pid.add_field("pid_3").value = extra
    given, _, family = outcome.patient_display.rpartition(" ")
    if outcome.patient_display:
        pid.pid_5 = f"{_text(family or given)}^{_text(given if family else '')}"
    message.pv1.pv1_2 = "O"

    nurse = f"{_text(outcome.nurse_username)}^{_text(outcome.nurse_display)}"
    txa = message.txa
    txa.txa_1 = "1"
    txa.txa_2 = "TN"
    txa.txa_3 = "TX"
    txa.txa_4 = _ts(outcome.ended_at)
    txa.txa_5 = nurse
    txa.txa_12 = f"{_text(outcome.case_uuid)}^{_text(settings.HL7_SENDING_APPLICATION)}"
    txa.txa_17 = "AU"
    txa.txa_19 = "AV"

    lines = [
        f"Triage acuity (CTAS 1-5): {outcome.acuity}",
        f"Disposition: {outcome.disposition_display} ({outcome.disposition_code})",
        *outcome.note.splitlines(),
    ]
    for number, line in enumerate(lines, start=1):
        obx = message.add_group("MDM_T02_OBSERVATION").obx
        obx.obx_1 = str(number)
        obx.obx_2 = "TX"
        obx.obx_3 = "34748-4^Telephone encounter Note^LN"
        obx.obx_4 = "1"
        obx.obx_5 = _text(line)
        obx.obx_11 = "F"
        obx.obx_14 = _ts(outcome.ended_at)
        obx.obx_16 = nurse
    return str(message.to_er7())
