"""Protocol reads and operations for the console, the API and the admin pages, scoped to the caller's clinic.

Orchestrates triage (protocol data) and ehr (the FHIR `Questionnaire` adapter), which may not import each
other (DESIGN §3). Authorization: every staff member may read the clinic's protocols; only role `admin`
may draft or activate versions (`NotClinicAdmin` otherwise). Errors: `clinics.selectors.NotStaff`,
`Protocol.DoesNotExist` / `ProtocolVersion.DoesNotExist` (unknown id or another clinic's),
`triage.exceptions.ProtocolInvalid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import QuerySet

from clinics import roles
from clinics.models import StaffMember
from clinics.selectors import staff_for_user
from ehr.fhir.questionnaire import QuestionnaireQuestion, questionnaire_json
from triage import protocol_versions
from triage.dispositions import ladder_for
from triage.models import Protocol, ProtocolVersion
from triage.protocols import from_version

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


class NotClinicAdmin(Exception):
    """The user is staff, but not a clinic admin (protocol editing is admin-only)."""


def require_admin(user: User | AnonymousUser) -> StaffMember:
    """The user's membership if they are a clinic admin. Raises NotStaff, NotClinicAdmin."""
    staff = staff_for_user(user)
    if not user.has_perm(roles.ADMINISTER):
        raise NotClinicAdmin("clinic admins only")
    return staff


def protocol_list(*, user: User | AnonymousUser) -> QuerySet[Protocol]:
    """The protocols of the user's clinic in menu order, with their versions prefetched."""
    staff = staff_for_user(user)
    return Protocol.objects.filter(clinic=staff.clinic).prefetch_related("versions").order_by("position", "code")


def protocol_get(*, user: User | AnonymousUser, protocol_id: int) -> Protocol:
    """One protocol of the user's clinic. Raises Protocol.DoesNotExist for another clinic's."""
    staff = staff_for_user(user)
    return Protocol.objects.prefetch_related("versions").get(pk=protocol_id, clinic=staff.clinic)


def active_version(protocol: Protocol) -> ProtocolVersion | None:
    """The protocol's active version (None while it has only drafts)."""
    return next((v for v in protocol.versions.all() if v.status == ProtocolVersion.Status.ACTIVE), None)


def version_get(*, user: User | AnonymousUser, protocol_id: int, version: int | None = None) -> ProtocolVersion:
    """Version number `version` of a protocol of the user's clinic, or its active one when None.
    Raises ProtocolVersion.DoesNotExist (also when there is no active version)."""
    staff = staff_for_user(user)
    versions = ProtocolVersion.objects.select_related("protocol", "clinic").filter(
        protocol_id=protocol_id, clinic=staff.clinic
    )
    if version is None:
        return versions.get(status=ProtocolVersion.Status.ACTIVE)
    return versions.get(version=version)


def questionnaire_for(version: ProtocolVersion) -> dict[str, Any]:
    """The FHIR R4 Questionnaire JSON of `version` (`ehr.fhir.questionnaire`), dispositions worded from
    its clinic's ladder."""
    protocol = from_version(version)
    wording = {d.code: d.display for d in ladder_for(version.clinic)}
    return questionnaire_json(
        code=protocol.code,
        version=protocol.version,
        status=version.status,
        title=version.title_en,
        questions=[
            QuestionnaireQuestion(
                id=q.id,
                text_en=q.en,
                text_es=q.es,
                disposition=q.disposition,
                disposition_display=wording.get(q.disposition, ""),
                acuity=q.acuity,
            )
            for q in protocol.questions
        ],
        default_disposition=protocol.default_disposition,
        default_disposition_display=wording.get(protocol.default_disposition, ""),
        publisher=version.clinic.name,
        date=(version.activated_at or version.created_at).isoformat(),
    )


@dataclass(frozen=True)
class DraftInput:
    """An admin's edit: titles, default disposition and the questions (most serious first)."""

    title_en: str
    title_es: str
    default_disposition: str
    questions: list[dict[str, str]]


def draft_save(*, user: User, protocol_id: int, draft: DraftInput) -> ProtocolVersion:
    """Save an admin's edit as a new draft version. Raises NotStaff, NotClinicAdmin, Protocol.DoesNotExist,
    ProtocolInvalid (every problem listed)."""
    staff = require_admin(user)
    return protocol_versions.protocol_draft_create(
        clinic=staff.clinic,
        protocol_id=protocol_id,
        author=user,
        title_en=draft.title_en,
        title_es=draft.title_es,
        questions=draft.questions,
        default_disposition=draft.default_disposition,
    )


def version_activate(*, user: User, version_id: int) -> ProtocolVersion:
    """Activate a version (the previous active one is retired). Raises NotStaff, NotClinicAdmin,
    ProtocolVersion.DoesNotExist, ProtocolInvalid."""
    staff = require_admin(user)
    return protocol_versions.protocol_version_activate(clinic=staff.clinic, version_id=version_id, actor=user)


def library_install(*, user: User) -> int:
    """Install the protocols of CareLine's library that the admin's clinic lacks; returns how many."""
    staff = require_admin(user)
    return protocol_versions.protocol_library_install(clinic=staff.clinic)


QUESTION_LINE_HELP = "One question per line, most serious first: id | disposition code | English text | Spanish text"


def parse_question_lines(text: str) -> tuple[list[dict[str, str]], list[str]]:
    """The admin form's questions box (see `QUESTION_LINE_HELP`) as question dicts, plus format errors.

    Blank lines are skipped. A line without exactly four `|`-separated fields is an error naming the line;
    the content itself is validated by `triage.models.validate_questions` on save.
    """
    questions: list[dict[str, str]] = []
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 4:
            errors.append(f"Line {number}: expected 4 fields separated by '|' (id | disposition | English | Spanish).")
            continue
        qid, disposition, text_en, text_es = parts
        questions.append({"id": qid, "disposition": disposition, "text_en": text_en, "text_es": text_es})
    return questions, errors


def question_lines(version: ProtocolVersion) -> str:
    """A version's questions in the admin form's line format."""
    return "\n".join(f"{q['id']} | {q['disposition']} | {q['text_en']} | {q['text_es']}" for q in version.questions)
