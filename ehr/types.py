"""The small interface the rest of CareLine sees of the EHR (DESIGN §7, STYLE habit 7).

Callers use these plain dataclasses and the functions in `ehr.services`; they never see fhirclient models
or hl7apy segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


class EhrError(Exception):
    """Base class of EHR integration errors."""


class EhrUnavailable(EhrError):
    """The EHR did not answer in time, refused the connection, or answered 5xx. Retry later."""


class EhrRejected(EhrError):
    """The EHR answered but refused the request (4xx, HL7 AE/AR). Retrying the same payload will not help."""


@dataclass(frozen=True)
class PatientMatch:
    """A FHIR `Patient` found by phone. `display` is "Given Family"; `language` a BCP-47 code or "";
    `state` the US state (two-letter, upper case) of the patient's home or first address, or "" if absent."""

    fhir_id: str
    display: str
    birth_date: date | None
    language: str = ""
    state: str = ""


@dataclass(frozen=True)
class AppointmentDue:
    """A booked FHIR `Appointment` in a reminder window: its id, the patient's FHIR id ("" if none), its
    `start` (aware datetime), the patient's phone in E.164 ("" if none usable) and language ("en", "es", "")."""

    appointment_id: str
    patient_fhir_id: str
    start: datetime
    phone: str
    language: str = ""


@dataclass
class ChartEntry:
    """One line of a chart section: `text` to show, `detail` (e.g. reaction, dose), `date` ISO or ""."""

    text: str
    detail: str = ""
    date: str = ""
    severity: str = ""


@dataclass
class PatientContext:
    """The chart a nurse sees next to the caller's answers (FHIR R4 resources, summarised).

    Sections: `allergies` (AllergyIntolerance), `conditions` (active Condition), `medications` (active
    MedicationRequest), `encounters` (recent Encounter, newest first), `vitals` (latest vital-sign
    Observations). `unavailable` names the sections whose query failed (shown as "unavailable", not as
    empty). `fetched_at` is when the EHR was read.
    """

    fhir_id: str
    name: str
    birth_date: str
    gender: str
    phones: list[str] = field(default_factory=list)
    language: str = ""
    mrn: str = ""
    allergies: list[ChartEntry] = field(default_factory=list)
    conditions: list[ChartEntry] = field(default_factory=list)
    medications: list[ChartEntry] = field(default_factory=list)
    encounters: list[ChartEntry] = field(default_factory=list)
    vitals: list[ChartEntry] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    fetched_at: datetime | None = None


@dataclass(frozen=True)
class Answer:
    """One protocol question as asked and answered."""

    question_id: str
    text: str
    answer: bool


@dataclass(frozen=True)
class SentMessage:
    """An SMS CareLine sent the caller during the case: when (aware datetime) and the text sent.
    `message_id` is CareLine's id of the message (stable; keys the FHIR Communication)."""

    sent_at: datetime
    body: str
    message_id: str = ""


@dataclass(frozen=True)
class Outcome:
    """A closed triage case, as the EHR receives it. Times are aware datetimes (UTC).

    `case_uuid` is the stable identifier every written resource is keyed on (conditional create), so a retry
    never duplicates. `acuity` is the CTAS level 1-5; `disposition_code` and `disposition_display` come
    from the ladder in `triage.dispositions`.
    """

    case_uuid: str
    case_id: int
    clinic_slug: str
    clinic_name: str
    patient_fhir_id: str
    patient_display: str
    started_at: datetime
    ended_at: datetime
    acuity: int
    disposition_code: str
    disposition_display: str
    note: str
    nurse_username: str
    nurse_display: str
    protocol_code: str
    protocol_title: str
    protocol_version: str
    answers: tuple[Answer, ...] = ()
    channel: str = "voice"
    patient_mrn: str = ""  # the MRN when the chart was read (PID-3 in HL7 v2); "" if unknown
    # True while the EHR lookup of the caller is still pending (the EHR was down during the call): the FHIR
    # write-back waits for the patient instead of being skipped (`writeback_patient_resolved`).
    patient_pending: bool = False
    # SMS messages sent to the caller for this case (advice, callback notices), oldest first; each becomes
    # a FHIR Communication in the write-back.
    messages_sent: tuple[SentMessage, ...] = ()
