"""Inbound HL7 v2 ADT feed: store the message, apply it to `ehr.PatientLink`, answer an ACK.

`handle_message` is the whole contract between the MLLP listener (`ehr.hl7.listener`) and the database; it
never raises (property-tested with arbitrary segment soups in tests/ehr/test_adt_property.py).

Order of work for one message (HL7 v2.5 chapter 2, original acknowledgment mode):
1. the raw message is written to `ehr.Hl7Message` (direction `in`, state `received`) and committed, so it is
   kept even if applying it fails or the process dies before the ACK;
2. it is checked and applied in one transaction;
3. the row gets its state and ACK code, and the ACK text is returned for the listener to send.

ACK codes (MSA-1):
- **AR** (application reject) when the message cannot be used at all: not UTF-8, no MSH, MSH-9 / MSH-10 /
  MSH-12 missing, a version hl7apy does not know, a structure hl7apy cannot parse, an MSH-6 that names no
  clinic (listener without `--clinic`), or a message type this feed does not take ("unsupported message type").
- **AE** (application error) when it parses but cannot be applied: no PID, no patient identifier in PID-3,
  ADT^A40 without MRG or merging a patient into itself, or an unexpected error while applying.
- **AA** when applied, and again for a resend of an already applied message (same clinic, MSH-3, MSH-4 and
  MSH-10): the resend is logged as `duplicate` and not applied twice. A resend of an AE/AR message is
  processed afresh (the sender may have fixed it, or the patient may exist by now).

Message types (HL7 v2.5 chapter 3): ADT^A01 (admit), A04 (register), A05 (pre-admit), A28 (add person)
create or update the patient; A08 (update patient information) and A31 (update person) do too: an update
for an MRN the feed has not seen creates the link (feeds often go live after patients were registered, and
A08/A31 carry the full PID; an AE would only stall the sender's queue). ADT^A40 (merge patient, identifier
list) re-points MRG-1 (the prior MRN) to the PID-3 survivor and keeps the prior MRN as an alias.

Parsing: hl7apy `parse_message` with `VALIDATION_LEVEL.TOLERANT` and `find_groups=False` (a flat list of
segments). STRICT rejects most real feeds (the shared samples: 15 of 24 fail STRICT for things such as a
repeated PID-4 or a missing EVN, none of which matters here), so the checks that matter are made here
instead: MSH-9, MSH-10 and MSH-12 present, PID-3 with an identifier, MRG-1 for A40. Field values are read
from hl7apy's segments and split on the message's own encoding characters. Segment separators `\\r\\n` and
`\\n` are accepted as `\\r` (plain files and some senders use them).

Log lines carry ids and codes only (MSH-10, MSH-9, ACK code, row ids), never names, MRNs or raw text.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message

from clinics.models import Clinic
from ehr.models import Hl7Message, PatientLink
from ehr.phone import InvalidPhoneNumber, to_e164
from ehr.services import forget_patient_context

logger = logging.getLogger(__name__)

UPSERT_TRIGGERS = frozenset({"A01", "A04", "A05", "A08", "A28", "A31"})
MERGE_TRIGGERS = frozenset({"A40"})
SUPPORTED_TRIGGERS = UPSERT_TRIGGERS | MERGE_TRIGGERS
FHIR_AUTHORITY = "FHIR"  # PID-3.4 of the FHIR Patient id repetition (as CareLine's own ORU^R01 sends it)
ACK_VERSION = "2.5"  # ACK version when the message's own MSH-12 is unusable
MAX_CONTROL_ID = 64
MAX_HD = 255

State = Hl7Message.State


class Rejected(Exception):
    """AR: the message cannot be used (reason goes to MSA-3)."""


class NotApplicable(Exception):
    """AE: the message parsed but cannot be applied (reason goes to MSA-3)."""


@dataclass(frozen=True)
class InboundResult:
    """What the listener sends back: `ack` (ER7 text), its MSA-1 `code` and MSA-3 `text`; the log row id."""

    ack: str
    code: str
    text: str
    message_id: int | None
    state: str


@dataclass(frozen=True)
class _Header:
    """MSH fields read by plain splitting (works on messages hl7apy cannot parse, for the AR)."""

    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    message_type: str = ""
    control_id: str = ""
    processing_id: str = ""
    version: str = ""
    component: str = "^"

    @property
    def type_and_trigger(self) -> tuple[str, str]:
        parts = self.message_type.split(self.component)
        return parts[0].strip().upper(), (parts[1].strip().upper() if len(parts) > 1 else "")


def _header(text: str) -> _Header | None:
    if not text.startswith("MSH") or len(text) < 8:
        return None
    separator = text[3]
    if separator.isalnum() or separator in "\r\n":
        return None
    fields = text.split("\r", 1)[0].split(separator)
    component = fields[1][:1] if len(fields) > 1 and fields[1] else "^"

    def msh(n: int) -> str:  # MSH-1 is the separator itself, so MSH-n is fields[n - 1]
        return fields[n - 1].strip() if len(fields) > n - 1 else ""

    return _Header(
        sending_application=msh(3),
        sending_facility=msh(4),
        receiving_application=msh(5),
        receiving_facility=msh(6),
        message_type=msh(9),
        control_id=msh(10),
        processing_id=msh(11),
        version=msh(12).split(component)[0],
        component=component,
    )


def _decode(data: bytes) -> tuple[str, str | None]:
    """(text for parsing and storage, rejection reason or None). Non-UTF-8 bytes are kept as escapes."""
    try:
        text = data.decode("utf-8")
        reason = None
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="backslashreplace")
        reason = "message is not valid UTF-8"
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    if "\x00" in text:  # PostgreSQL text cannot hold NUL; HL7 does not allow it either
        text = text.replace("\x00", "\\x00")
        reason = reason or "message contains NUL bytes"
    return text, reason


def _resolve_clinic(default: Clinic | None, header: _Header) -> Clinic:
    if default is not None:
        return default
    facility = header.receiving_facility.split(header.component)[0].strip()
    clinic = Clinic.objects.filter(slug__iexact=facility).first() if facility else None
    if clinic is None:
        raise Rejected("unknown receiving facility (MSH-6)")
    return clinic


# --- reading segments --------------------------------------------------------------------------------------


class _Segments:
    """The flat segments of an hl7apy message, with field access split on its encoding characters."""

    def __init__(self, message: Message) -> None:
        self.message = message
        chars: dict[str, str] = dict(message.encoding_chars)
        self.component = chars.get("COMPONENT", "^")
        self.subcomponent = chars.get("SUBCOMPONENT", "&")
        self.repetition = chars.get("REPETITION", "~")
        self.escape = chars.get("ESCAPE", "\\")
        self.field_separator = chars.get("FIELD", "|")

    def first(self, name: str) -> Any | None:
        for child in self.message.children:
            if child.name == name:
                return child
        return None

    def repetitions(self, segment: Any, number: int) -> list[list[str]]:
        """Field `number` of `segment`: one list of components per repetition (unescaped, first subcomponent)."""
        try:
            fields = getattr(segment, f"{segment.name.lower()}_{number}")
        except Exception:  # noqa: BLE001 - hl7apy raises assorted errors for a field its version lacks
            return []
        result = []
        for field in fields:
            value = field.to_er7()
            result.append([self._unescape(c.split(self.subcomponent)[0]) for c in value.split(self.component)])
        return [components for components in result if any(components)]

    def _unescape(self, value: str) -> str:
        e = self.escape
        if e not in value:
            return value.strip()
        for code, char in (
            ("F", self.field_separator),
            ("S", self.component),
            ("T", self.subcomponent),
            ("R", self.repetition),
            ("E", e),
        ):
            value = value.replace(f"{e}{code}{e}", char)
        return value.strip()


def _component(components: list[str], n: int) -> str:
    return components[n - 1] if len(components) >= n else ""


@dataclass(frozen=True)
class _Identifier:
    mrn: str
    authority: str


def _pick_mrn(repetitions: list[list[str]]) -> _Identifier | None:
    """The MR repetition of a CX list (PID-3, MRG-1), else the first one that is not the FHIR id."""
    candidates = [r for r in repetitions if _component(r, 1) and _component(r, 4).upper() != FHIR_AUTHORITY]
    for r in candidates:
        if _component(r, 5).upper() == "MR":
            return _Identifier(_component(r, 1)[:64], _component(r, 4)[:64])
    if candidates:
        return _Identifier(_component(candidates[0], 1)[:64], _component(candidates[0], 4)[:64])
    return None


def _fhir_id(repetitions: list[list[str]]) -> str:
    for r in repetitions:
        if _component(r, 4).upper() == FHIR_AUTHORITY and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", _component(r, 1)):
            return _component(r, 1)
    return ""


def _birth_date(value: str) -> date | None:
    match = re.match(r"(\d{4})(\d{2})(\d{2})", value)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _phones(segments: _Segments, pid: Any) -> list[str]:
    """PID-13 (home) and PID-14 (business): XTN-12 (unformatted), else XTN-6 + XTN-7, else XTN-1 (v2.3)."""
    phones: list[str] = []
    for number in (13, 14):
        for r in segments.repetitions(pid, number):
            raw = _component(r, 12) or (_component(r, 6) + _component(r, 7)) or _component(r, 1)
            if not raw:
                continue
            try:
                value = to_e164(raw)
            except InvalidPhoneNumber:
                value = raw[:40]
            if value not in phones:
                phones.append(value)
    return phones


@dataclass(frozen=True)
class _Demographics:
    identifier: _Identifier
    fhir_id: str
    family: str
    given: str
    birth_date: date | None
    phones: list[str]


def _demographics(segments: _Segments) -> _Demographics:
    pid = segments.first("PID")
    if pid is None:
        raise NotApplicable("no PID segment")
    ids = segments.repetitions(pid, 3)
    identifier = _pick_mrn(ids)
    if identifier is None:
        raise NotApplicable("PID-3 has no patient identifier")
    names = segments.repetitions(pid, 5)
    name = names[0] if names else []
    births = segments.repetitions(pid, 7)
    return _Demographics(
        identifier=identifier,
        fhir_id=_fhir_id(ids),
        family=_component(name, 1)[:200],
        given=_component(name, 2)[:200],
        birth_date=_birth_date(_component(births[0], 1)) if births else None,
        phones=_phones(segments, pid),
    )


# --- applying -----------------------------------------------------------------------------------------------


def _upsert(*, clinic: Clinic, person: _Demographics, control_id: str) -> PatientLink:
    """Create or update the link for PID-3 (following an alias to its survivor). Non-empty fields overwrite."""
    link, _ = PatientLink.objects.select_for_update().get_or_create(
        clinic=clinic, mrn_authority=person.identifier.authority, mrn=person.identifier.mrn
    )
    link = link.resolve()
    for attribute, value in (
        ("fhir_id", person.fhir_id),
        ("family_name", person.family),
        ("given_name", person.given),
        ("birth_date", person.birth_date),
        ("phones", person.phones),
    ):
        if value:
            setattr(link, attribute, value)
    link.last_control_id = control_id
    link.save()
    return link


def _merge(*, clinic: Clinic, segments: _Segments, person: _Demographics, control_id: str) -> list[PatientLink]:
    mrg = segments.first("MRG")
    if mrg is None:
        raise NotApplicable("ADT^A40 without MRG segment")
    prior_id = _pick_mrn(segments.repetitions(mrg, 1))
    if prior_id is None:
        raise NotApplicable("MRG-1 has no prior patient identifier")
    if prior_id == person.identifier:
        raise NotApplicable("MRG-1 names the surviving patient (PID-3)")
    survivor = _upsert(clinic=clinic, person=person, control_id=control_id)
    prior, _ = PatientLink.objects.select_for_update().get_or_create(
        clinic=clinic, mrn_authority=prior_id.authority, mrn=prior_id.mrn
    )
    if prior.pk == survivor.pk:  # the prior MRN already resolves to the survivor: a repeated merge
        return [survivor]
    if survivor.merged_into_id == prior.pk:  # merging back the other way: the survivor stops being an alias
        survivor.merged_into = None
        survivor.save(update_fields=["merged_into", "updated_at"])
    PatientLink.objects.filter(clinic=clinic, merged_into=prior).update(merged_into=survivor)  # one deep
    prior.merged_into = survivor
    prior.last_control_id = control_id
    prior.save(update_fields=["merged_into", "last_control_id", "updated_at"])
    return [survivor, prior]


def _apply(*, clinic: Clinic, trigger: str, segments: _Segments, control_id: str) -> list[PatientLink]:
    person = _demographics(segments)
    if trigger in MERGE_TRIGGERS:
        return _merge(clinic=clinic, segments=segments, person=person, control_id=control_id)
    return [_upsert(clinic=clinic, person=person, control_id=control_id)]


def _parse(text: str, header: _Header) -> _Segments:
    try:
        message = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    except Exception as exc:  # noqa: BLE001 - hl7apy raises many exception types for bad input
        raise Rejected(f"cannot parse the message ({type(exc).__name__})") from None
    return _Segments(message)


# --- the ACK ------------------------------------------------------------------------------------------------


def _set(target: Any, attribute: str, value: str) -> None:
    value = value.replace("\r", " ").replace("\n", " ")
    if not value:
        return
    try:
        setattr(target, attribute, value)
    except Exception:  # noqa: BLE001 - a value hl7apy will not take is left out of the ACK, not fatal
        logger.debug("ACK field %s left empty", attribute)


def build_ack(header: _Header | None, *, code: str, text: str) -> str:
    """The ACK (ER7) for a message with `header`: MSH-3..6 swapped, MSA-1 `code`, MSA-2 its MSH-10, MSA-3
    `text`. Version: the message's MSH-12 when hl7apy knows it, else 2.5."""
    header = header or _Header()
    try:
        ack = Message("ACK", version=header.version or ACK_VERSION)
    except Exception:  # noqa: BLE001 - UnsupportedVersion and friends
        ack = Message("ACK", version=ACK_VERSION)
    _set(ack.msh, "msh_3", header.receiving_application)
    _set(ack.msh, "msh_4", header.receiving_facility)
    _set(ack.msh, "msh_5", header.sending_application)
    _set(ack.msh, "msh_6", header.sending_facility)
    _set(ack.msh, "msh_7", timezone.now().strftime("%Y%m%d%H%M%S"))
    trigger = header.type_and_trigger[1]
    _set(ack.msh, "msh_9", f"ACK^{trigger}^ACK" if re.fullmatch(r"[A-Z0-9]{3}", trigger) else "ACK")
    _set(ack.msh, "msh_10", "ACK" + uuid.uuid4().hex[:17])
    _set(ack.msh, "msh_11", header.processing_id.split(header.component)[0][:1] or "P")
    ack.msa.msa_1 = code
    _set(ack.msa, "msa_2", header.control_id[:MAX_CONTROL_ID])
    _set(ack.msa, "msa_3", text[:80])
    return str(ack.to_er7())


# --- the entry point ----------------------------------------------------------------------------------------


def _check(header: _Header | None, decode_error: str | None) -> tuple[str, str]:
    """(type, trigger) of a usable message; raises Rejected otherwise."""
    if decode_error:
        raise Rejected(decode_error)
    if header is None:
        raise Rejected("not an HL7 v2 message (no MSH segment)")
    if not header.control_id:
        raise Rejected("MSH-10 (message control id) is required")
    if len(header.control_id) > MAX_CONTROL_ID:
        raise Rejected(f"MSH-10 longer than {MAX_CONTROL_ID} characters")
    if len(header.sending_application) > MAX_HD or len(header.sending_facility) > MAX_HD:
        raise Rejected(f"MSH-3 or MSH-4 longer than {MAX_HD} characters")
    if not header.message_type:
        raise Rejected("MSH-9 (message type) is required")
    if not header.version:
        raise Rejected("MSH-12 (version id) is required")
    kind, trigger = header.type_and_trigger
    if kind != "ADT" or trigger not in SUPPORTED_TRIGGERS:
        raise Rejected(f"unsupported message type {kind[:3]}^{trigger[:3]}")
    return kind, trigger


def _store(clinic: Clinic | None, header: _Header | None, text: str) -> Hl7Message:
    usable = header if header and len(header.control_id) <= MAX_CONTROL_ID else None
    return Hl7Message.objects.create(
        clinic=clinic,
        direction=Hl7Message.Direction.INBOUND,
        message_type=(header.message_type if header else "")[:20],
        control_id=usable.control_id if usable else "",
        sending_application=(usable.sending_application[:MAX_HD] if usable else ""),
        sending_facility=(usable.sending_facility[:MAX_HD] if usable else ""),
        raw=text,
        state=State.RECEIVED,
    )


def handle_message(*, data: bytes, clinic: Clinic | None = None) -> InboundResult:
    """Store, check, apply and acknowledge one inbound message (`data`: the MLLP payload, bytes).

    `clinic`: the listener's clinic (`mllp_listen --clinic`); None routes by MSH-6 = a clinic slug. Returns
    the ACK to send; never raises for anything in `data` (database outages do raise: no ACK is sent then,
    so the sender resends). See the module docstring for codes and rules.
    """
    text, decode_error = _decode(data)
    header = _header(text)
    try:
        target = _resolve_clinic(clinic, header) if header else clinic
    except Rejected:
        target = None
    row = _store(target, header, text)
    state, code = State.APPLIED, "AA"
    reason = ""
    touched: list[PatientLink] = []
    try:
        _, trigger = _check(header, decode_error)
        assert header is not None
        target = _resolve_clinic(clinic, header)
        segments = _parse(text, header)
        already = Hl7Message.objects.filter(
            clinic=target,
            direction=Hl7Message.Direction.INBOUND,
            state=State.APPLIED,
            sending_application=header.sending_application,
            sending_facility=header.sending_facility,
            control_id=header.control_id,
        ).exists()
        if already:
            state, reason = State.DUPLICATE, "duplicate of an applied message; not applied again"
        else:
            try:
                with transaction.atomic():
                    touched = _apply(clinic=target, trigger=trigger, segments=segments, control_id=header.control_id)
                    row.state = State.APPLIED
                    row.save(update_fields=["state"])
            except IntegrityError:  # a concurrent connection applied the same message first
                touched = []
                state, reason = State.DUPLICATE, "duplicate of an applied message; not applied again"
    except Rejected as exc:
        state, code, reason = State.REJECTED, "AR", str(exc)
    except NotApplicable as exc:
        state, code, reason = State.ERROR, "AE", str(exc)
    except Exception as exc:  # noqa: BLE001 - never let a message crash the feed; no PHI in the log line
        logger.error("HL7 in: message %s could not be applied (%s)", row.pk, type(exc).__name__)
        state, code, reason = State.ERROR, "AE", "internal error while applying the message"
    row.state, row.ack_code, row.ack_text, row.processed_at = state, code, reason[:500], timezone.now()
    row.save(update_fields=["state", "ack_code", "ack_text", "processed_at"])
    for fhir_id in {link.fhir_id for link in touched if link.fhir_id}:
        forget_patient_context(fhir_id)
    logger.info(
        "HL7 in: message %s control_id=%s type=%s ack=%s state=%s",
        row.pk,
        row.control_id or "-",
        row.message_type or "-",
        code,
        state,
    )
    return InboundResult(
        ack=build_ack(header, code=code, text=reason), code=code, text=reason, message_id=row.pk, state=state
    )
