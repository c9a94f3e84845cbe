"""The read API of symptom protocols: what the IVR asks, and the first-"yes"-decides rule.

Protocols are versioned data (`triage.models.Protocol` / `ProtocolVersion`, edited by clinic admins); this
module turns a clinic's active versions into plain, immutable objects for the IVR and others:
`protocols_for(clinic)`, `get_protocol(code, clinic=...)`, `get_protocol_version(version_id)` and
`evaluate(protocol, answers)`. With no clinic (or a clinic that has no copy of a code) the project's built-in
library (`triage.protocol_library`) answers, so a call is never left without a protocol.

Content rules (the field's practice): questions ordered most serious first; each question's "yes" carries a
disposition (and so an acuity, from the clinic's ladder, see `triage.dispositions`); the first "yes"
decides. A question whose "yes" implies acuity 1 is a red flag: the caller gets emergency advice and a warm
transfer, never the queue. If every answer is "no", the protocol's `default_disposition` applies. The
library is written by the CareLine project; no licensed protocol text (e.g. Schmitt-Thompson) is copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from triage.dispositions import get_disposition, ladder_for
from triage.models import ProtocolVersion
from triage.protocol_library import LIBRARY, LIBRARY_VERSION

if TYPE_CHECKING:
    from clinics.models import Clinic
    from triage.models import Case

# The version string of the built-in library (cases triaged with it record this).
PROTOCOL_VERSION = LIBRARY_VERSION


@dataclass(frozen=True)
class Question:
    """A yes/no protocol question. `disposition` is the ladder code a "yes" implies; `level` the acuity of
    that code on the clinic's ladder (0: look it up on the default ladder)."""

    id: str
    en: str
    es: str
    disposition: str
    level: int = 0

    @property
    def acuity(self) -> int:
        """CTAS level (1-5) implied by a "yes"."""
        return self.level or get_disposition(self.disposition).acuity

    @property
    def red_flag(self) -> bool:
        """A "yes" means an emergency: warm transfer and emergency advice, no queue."""
        return self.acuity == 1

    def text(self, language: str) -> str:
        """The question in `language` ("en" or "es")."""
        return self.es if language == "es" else self.en


@dataclass(frozen=True)
class Protocol:
    """A symptom protocol as asked: `questions` most serious first; `default_disposition` when all are "no".

    `version` is the version label recorded on cases ("3", or the library's "2026.11.0"); `version_id` the
    `ProtocolVersion` primary key (None for the built-in library); `audience` "adult", "pediatric" or "all".
    """

    code: str
    title_en: str
    title_es: str
    questions: tuple[Question, ...]
    default_disposition: str
    version: str = PROTOCOL_VERSION
    version_id: int | None = None
    audience: str = "all"
    position: int = 100
    default_level: int = 0

    def title(self, language: str) -> str:
        """The protocol's title in `language` ("en" or "es")."""
        return self.title_es if language == "es" else self.title_en

    @property
    def default_acuity(self) -> int:
        """CTAS level of `default_disposition`."""
        return self.default_level or get_disposition(self.default_disposition).acuity

    def for_audience(self, audience: str) -> bool:
        """True when the protocol belongs in the menu for `audience` ("adult" or "pediatric")."""
        return self.audience in ("all", audience)


def _library_protocol(entry: tuple[Any, ...]) -> Protocol:
    code, audience, position, title_en, title_es, default, questions = entry
    return Protocol(
        code=code,
        title_en=title_en,
        title_es=title_es,
        questions=tuple(Question(qid, en, es, disposition) for qid, disposition, en, es in questions),
        default_disposition=default,
        audience=audience,
        position=position,
    )


# The built-in library as protocol objects (menu order).
PROTOCOLS: tuple[Protocol, ...] = tuple(sorted((_library_protocol(e) for e in LIBRARY), key=lambda p: p.position))
BY_CODE: dict[str, Protocol] = {p.code: p for p in PROTOCOLS}


def _levels(clinic: Clinic | None) -> dict[str, int]:
    return {d.code: d.acuity for d in ladder_for(clinic)}


def from_version(version: ProtocolVersion, *, levels: dict[str, int] | None = None) -> Protocol:
    """A stored `ProtocolVersion` as a `Protocol`, acuities read from its clinic's ladder (`levels`: that
    ladder as disposition code -> acuity when the caller already read it; else one query here)."""
    if levels is None:
        levels = _levels(version.clinic)
    return Protocol(
        code=version.protocol.code,
        title_en=version.title_en,
        title_es=version.title_es,
        questions=tuple(
            Question(q["id"], q["text_en"], q["text_es"], q["disposition"], levels.get(q["disposition"], 0))
            for q in version.questions
        ),
        default_disposition=version.default_disposition,
        version=str(version.version),
        version_id=version.pk,
        audience=version.protocol.audience,
        position=version.protocol.position,
        default_level=levels.get(version.default_disposition, 0),
    )


def _active_versions(clinic: Clinic) -> list[ProtocolVersion]:
    return list(
        ProtocolVersion.objects.filter(clinic=clinic, status=ProtocolVersion.Status.ACTIVE)
        .select_related("protocol", "clinic")
        .order_by("protocol__position", "protocol__code")
    )


def protocols_for(clinic: Clinic | None) -> tuple[Protocol, ...]:
    """The protocols a caller of `clinic` can choose, in menu order: its active versions, or the built-in
    library when the clinic has none (e.g. created before the library was installed)."""
    if clinic is None:
        return PROTOCOLS
    active = _active_versions(clinic)
    if not active:
        return PROTOCOLS
    # One read of the ladder for all of them (every version here is `clinic`'s): the IVR builds this menu
    # twice per protocol-menu webhook, and a query per protocol made it the slowest step (bench/ivr_webhook.py).
    levels = _levels(clinic)
    return tuple(from_version(v, levels=levels) for v in active)


def get_protocol(code: str, *, clinic: Clinic | None = None) -> Protocol:
    """The protocol `code`: `clinic`'s active version, else the built-in library's. Raises KeyError for a
    code neither knows."""
    if clinic is not None:
        for version in _active_versions(clinic):
            if version.protocol.code == code:
                return from_version(version)
    return BY_CODE[code]


def get_protocol_version(version_id: int) -> Protocol:
    """The exact stored version `version_id` (any status), e.g. the one a call in progress started with.
    Raises ProtocolVersion.DoesNotExist."""
    return from_version(ProtocolVersion.objects.select_related("protocol", "clinic").get(pk=version_id))


def case_protocol(case: Case) -> Protocol | None:
    """The protocol a case was triaged with: its recorded version, else the clinic's (or library's)
    protocol of the same code; None when the case has no (known) protocol."""
    if case.protocol_version_ref_id is not None:
        return get_protocol_version(case.protocol_version_ref_id)
    if not case.protocol_code:
        return None
    try:
        return get_protocol(case.protocol_code, clinic=case.clinic)
    except KeyError:
        return None


@dataclass(frozen=True)
class TriageResult:
    """Outcome of a protocol: the deciding question (None when all were "no") and its disposition."""

    disposition: str
    acuity: int
    deciding_question: str | None

    @property
    def red_flag(self) -> bool:
        """Acuity 1: emergency advice and warm transfer, never queued."""
        return self.acuity == 1


def evaluate(protocol: Protocol, answers: dict[str, bool]) -> TriageResult | None:
    """Apply the first-"yes"-decides rule to `answers` (question id -> yes).

    Returns the result once it is decided: at the first "yes", or when every question has a "no". Returns
    None while a question before the first "yes" is still unanswered.
    """
    for question in protocol.questions:
        if question.id not in answers:
            return None
        if answers[question.id]:
            return TriageResult(question.disposition, question.acuity, question.id)
    return TriageResult(protocol.default_disposition, protocol.default_acuity, None)
