"""State-changing operations on versioned protocols: install the library, draft a version, activate it.

A version is never edited once active: an admin's change is a new draft (`version` = highest + 1), checked
with `triage.models.validate_questions` against the clinic's disposition ladder, then activated, which
retires the previously active version in the same transaction (one active version per protocol).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from clinics.models import Clinic
from clinics.services import audit_record
from triage.dispositions import ladder_codes
from triage.exceptions import ProtocolInvalid
from triage.models import Protocol, ProtocolVersion, validate_questions
from triage.protocol_library import LIBRARY, LIBRARY_SOURCE

if TYPE_CHECKING:
    from django.contrib.auth.models import User


@transaction.atomic
def protocol_library_install(*, clinic: Clinic) -> int:
    """Give `clinic` every library protocol it lacks, as version 1, active. Returns how many were added.

    Idempotent: a protocol the clinic already has (any version, edited or not) is left alone, so running it
    again never overwrites an admin's edits. Library content: `triage.protocol_library`.
    """
    added = 0
    for code, audience, position, title_en, title_es, default, questions in LIBRARY:
        protocol, created = Protocol.objects.get_or_create(
            clinic=clinic, code=code, defaults={"audience": audience, "position": position}
        )
        if not created and protocol.versions.exists():
            continue
        ProtocolVersion.objects.create(
            protocol=protocol,
            clinic=clinic,
            version=1,
            status=ProtocolVersion.Status.ACTIVE,
            title_en=title_en,
            title_es=title_es,
            questions=[
                {"id": qid, "text_en": en, "text_es": es, "disposition": disposition}
                for qid, disposition, en, es in questions
            ],
            default_disposition=default,
            source=LIBRARY_SOURCE,
            activated_at=timezone.now(),
        )
        added += 1
    return added


def protocol_version_errors(
    *, clinic: Clinic, title_en: str, title_es: str, questions: Any, default_disposition: str
) -> list[str]:
    """Every validation problem of a would-be version of `clinic` ([] when valid)."""
    codes = ladder_codes(clinic)
    errors = []
    if not title_en.strip() or not title_es.strip():
        errors.append("Both titles (English and Spanish) are required.")
    errors += validate_questions(questions, ladder_codes=codes)
    if default_disposition not in codes:
        errors.append(f"Unknown default disposition code {default_disposition!r}.")
    return errors


@transaction.atomic
def protocol_draft_create(
    *,
    clinic: Clinic,
    protocol_id: int,
    author: User,
    title_en: str,
    title_es: str,
    questions: list[dict[str, str]],
    default_disposition: str,
) -> ProtocolVersion:
    """Save an edit of protocol `protocol_id` as a new draft version (highest version + 1).

    `questions`: list of `{"id", "text_en", "text_es", "disposition"}`, most serious first. Raises
    ProtocolInvalid with every problem (unknown disposition code, empty text, duplicate id, ...) and
    Protocol.DoesNotExist for another clinic's protocol.
    """
    protocol = Protocol.objects.select_for_update().get(pk=protocol_id, clinic=clinic)
    errors = protocol_version_errors(
        clinic=clinic,
        title_en=title_en,
        title_es=title_es,
        questions=questions,
        default_disposition=default_disposition,
    )
    if errors:
        raise ProtocolInvalid(errors)
    highest = protocol.versions.aggregate(highest=Max("version"))["highest"] or 0
    version = ProtocolVersion.objects.create(
        protocol=protocol,
        clinic=clinic,
        version=highest + 1,
        status=ProtocolVersion.Status.DRAFT,
        title_en=title_en.strip(),
        title_es=title_es.strip(),
        questions=[
            {key: str(q[key]).strip() for key in ("id", "text_en", "text_es", "disposition")} for q in questions
        ],
        default_disposition=default_disposition,
        source=f"edited by {author.get_username()}",
        author=author,
    )
    audit_record(
        clinic=clinic, actor=author, action="protocol.draft", object_type="protocol_version", object_id=version.pk
    )
    return version


@transaction.atomic
def protocol_version_activate(*, clinic: Clinic, version_id: int, actor: User) -> ProtocolVersion:
    """Make version `version_id` the one calls use; the previously active version becomes `retired`.

    Re-validates the content against the clinic's current ladder (a rung may have been removed since the
    draft was saved): raises ProtocolInvalid. Raises ProtocolVersion.DoesNotExist for another clinic's
    version. Activating the active version is a no-op. Calls already in progress keep the version they
    started with (the IVR holds its id).
    """
    version = ProtocolVersion.objects.select_for_update().select_related("protocol").get(pk=version_id, clinic=clinic)
    Protocol.objects.select_for_update().get(pk=version.protocol_id)
    if version.status == ProtocolVersion.Status.ACTIVE:
        return version
    errors = protocol_version_errors(
        clinic=clinic,
        title_en=version.title_en,
        title_es=version.title_es,
        questions=version.questions,
        default_disposition=version.default_disposition,
    )
    if errors:
        raise ProtocolInvalid(errors)
    ProtocolVersion.objects.filter(protocol_id=version.protocol_id, status=ProtocolVersion.Status.ACTIVE).update(
        status=ProtocolVersion.Status.RETIRED
    )
    version.status = ProtocolVersion.Status.ACTIVE
    version.activated_at = timezone.now()
    version.save(update_fields=["status", "activated_at"])
    audit_record(
        clinic=clinic, actor=actor, action="protocol.activate", object_type="protocol_version", object_id=version.pk
    )
    return version
