"""Read queries of the nurse console, always scoped to the caller's clinic (STYLE habit 6).

Every read of a patient's chart goes through `access_patient_chart`, which checks the clinic and writes
the audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import QuerySet

from clinics.models import Clinic
from clinics.selectors import staff_for_user
from clinics.services import audit_record
from ehr import selectors as ehr_selectors
from ehr import services as ehr_services
from ehr.models import WriteBack
from ehr.phone import InvalidPhoneNumber, to_e164
from ehr.types import PatientContext
from ivr.models import InboundMessage, OutboundCall, OutboundMessage
from triage import breakglass
from triage.dispositions import BY_CODE as DISPOSITIONS_BY_CODE
from triage.dispositions import ladder_for
from triage.models import Case, CaseEvent
from triage.protocols import case_protocol
from triage.selectors import access_case, case_timeline

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# CTAS level names (Canadian Triage and Acuity Scale): shown next to the colour, never colour alone.
ACUITY_NAMES: dict[int, str] = {1: "Resuscitation", 2: "Emergent", 3: "Urgent", 4: "Less urgent", 5: "Non-urgent"}


def acuity_label(acuity: int) -> str:
    """ "2 · Emergent" for acuity 2 (CTAS level and name)."""
    return f"{acuity} · {ACUITY_NAMES.get(acuity, 'Unknown')}"


def case_protocol_title(case: Case) -> str:
    """The English title of the case's protocol ("chest pain"); the raw code if unknown, "" if none."""
    if case.protocol_version_ref_id is not None:  # selectors load it with the case (no extra query)
        return case.protocol_version_ref.title_en if case.protocol_version_ref else case.protocol_code
    protocol = case_protocol(case)
    return protocol.title("en") if protocol else case.protocol_code


def disposition_display(code: str, clinic: Clinic | None = None) -> str:
    """The ladder wording of a disposition code ("Home care") on `clinic`'s ladder (default ladder when
    None); "" for an empty or unknown code."""
    if clinic is not None:
        for rung in ladder_for(clinic):
            if rung.code == code:
                return rung.display
    disposition = DISPOSITIONS_BY_CODE.get(code)
    return disposition.display if disposition else ""


class ChartRestricted(Exception):
    """The chart is outside the user's normal access (an older case, no break-glass grant)."""


def access_patient_chart(*, user: User, case: Case, source_ip: str | None = None) -> PatientContext | None:
    """The EHR chart of `case`'s patient, for `user`; every successful read is audited.

    Returns None when the caller is unidentified (the case has no FHIR Patient id): there is no chart to
    read and nothing is audited. Otherwise reads `ehr.services.load_patient_context` (which may answer
    from its short cache) and appends an audit row `chart.read` (actor, case id, FHIR Patient id, source
    IP) for every read, cached or not (HIPAA access accounting counts disclosures, not EHR round trips).
    The chart of a case that ended more than CHART_OPEN_WINDOW_HOURS ago needs an active break-glass grant
    (`triage.breakglass`; its id goes in the audit row's reason), else ChartRestricted (nothing read).
    Raises Case.DoesNotExist when the case belongs to another clinic (callers answer 404; no audit row),
    NotStaff for non-staff users, and `ehr.types.EhrUnavailable` when the EHR cannot be read (nothing
    was shown, so nothing is audited; the console shows "chart unavailable").
    """
    staff = staff_for_user(user)
    if case.clinic_id != staff.clinic_id:
        raise Case.DoesNotExist("case of another clinic")
    if not case.patient_fhir_id:
        return None
    access = breakglass.chart_access(user=user, case=case)
    if not access.allowed:
        raise ChartRestricted(f"case {case.pk}: ended more than {settings.CHART_OPEN_WINDOW_HOURS} h ago")
    context = ehr_services.load_patient_context(case.patient_fhir_id, case_key=str(case.uuid))
    audit_record(
        clinic=staff.clinic,
        actor=user,
        action="chart.read",
        object_type="case",
        object_id=case.pk,
        patient_ref=case.patient_fhir_id,
        source_ip=source_ip,
        reason=f"break-glass #{access.grant.pk}" if access.grant is not None else "",
    )
    return context


def audit_case_read(*, user: User, case: Case, source_ip: str | None, action: str = "case.read") -> None:
    """Append the audit row of a PHI read of `case` shown to `user` (callback number, answers, timeline:
    `case.read`; the text and call thread: `case.conversation.read`), once the case is known to be the clinic's.
    HIPAA access accounting (164.312(b)) counts every disclosure, so every page or API read writes one."""
    audit_record(
        clinic=case.clinic,
        actor=user,
        action=action,
        object_type="case",
        object_id=case.pk,
        patient_ref=case.patient_fhir_id,
        source_ip=source_ip,
    )


def writebacks_for_case(*, case: Case) -> list[WriteBack]:
    """The EHR write-back outbox rows of `case` (target, state, attempts, last_error, sent_at)."""
    return list(ehr_selectors.writebacks_for_case(clinic=case.clinic, case_id=case.pk))


@dataclass(frozen=True)
class AnswerLine:
    """One protocol question as the caller heard it, with the answer."""

    question_id: str
    text: str
    answer: bool


@dataclass(frozen=True)
class CaseSummary:
    """What the case page shows besides the chart: the caller's answers and the case's timeline."""

    case: Case
    acuity_label: str
    protocol_title: str
    answers: tuple[AnswerLine, ...]
    suggested_disposition_display: str
    disposition_display: str
    timeline: QuerySet[CaseEvent]


def case_summary(*, user: User, case_id: int) -> CaseSummary:
    """The case `case_id` of the user's clinic with its answers and timeline.

    Raises Case.DoesNotExist (unknown id or another clinic's case) and NotStaff.
    """
    case = access_case(user=user, case_id=case_id)
    return CaseSummary(
        case=case,
        acuity_label=acuity_label(case.acuity),
        protocol_title=case_protocol_title(case),
        answers=tuple(
            AnswerLine(str(a.get("question", "")), str(a.get("text", "")), bool(a.get("answer"))) for a in case.answers
        ),
        suggested_disposition_display=disposition_display(case.suggested_disposition, case.clinic),
        disposition_display=disposition_display(case.disposition, case.clinic),
        timeline=case_timeline(case=case),
    )


@dataclass(frozen=True)
class ConversationEntry:
    """One text of a case's conversation: `direction` "in" (from the patient) or "out" (to the patient),
    `at`, `body` (PHI: shown only on the audited case page), `author` (nurse's name, "CareLine" for automatic
    texts, "Patient"), `state` (outbox state or delivery status; "" for inbound)."""

    direction: str
    at: datetime
    body: str
    author: str
    state: str


def case_conversation(*, case: Case) -> list[ConversationEntry]:
    """The texts exchanged with the case's patient, oldest first: inbound texts attached to the case and
    outbox texts to the patient's callback number (pages to staff are left out). The caller has checked
    access (`access_case`) and audited the page read."""
    entries = [
        ConversationEntry("in", m.received_at, m.body, "Patient", "")
        for m in InboundMessage.objects.filter(case=case).order_by("received_at", "pk")
    ]
    for m in OutboundMessage.objects.filter(case=case).select_related("sent_by").order_by("created_at", "pk"):
        if m.to != case.callback_number and m.to != _e164_or_blank(case.callback_number):
            continue
        author = (m.sent_by.get_full_name() or m.sent_by.get_username()) if m.sent_by else "CareLine"
        entries.append(
            ConversationEntry("out", m.created_at, m.body, author, m.delivery_status or m.get_state_display())
        )
    return sorted(entries, key=lambda e: e.at)


def case_calls(*, case: Case) -> QuerySet[OutboundCall]:
    """The case's "Call patient" calls, newest first."""
    return OutboundCall.objects.filter(case=case).select_related("nurse").order_by("-created_at", "-pk")


def _e164_or_blank(number: str) -> str:
    try:
        return to_e164(number)
    except InvalidPhoneNumber:
        return ""
