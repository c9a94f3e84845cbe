"""Break-glass: who may read which case's chart, and the supervisor's time-limited override.

The rule (issue 6, "Isolation and access"; HIPAA 164.312(a)(2)(ii) emergency access procedure; minimum
necessary, 164.502(b)). Inside their own clinic only (never across clinics, whatever the permission):

- a staff member with `clinics.work_cases` reads the chart of an **open** case, or of a case that ended
  (closed, abandoned, transferred) less than `CHART_OPEN_WINDOW_HOURS` (72 h) ago: the after-hours work and
  its follow-up callbacks;
- an older case's chart needs **break-glass**: a user with `clinics.grant_break_glass` (role supervisor)
  writes a reason (at least `MIN_REASON_CHARS` characters) and gets `BREAKGLASS_GRANT_MINUTES` (60) of access
  for themself to that case's chart. Audited `breakglass.granted` (the reason stays on the grant, encrypted
  at rest, since it may name the patient), each chart
  read under it `chart.read` with reason "break-glass #id"; every grant is listed for review on
  `/console/admin/break-glass/` until a user with `clinics.review_break_glass` (clinic admin) marks it
  reviewed (`breakglass.reviewed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from clinics import roles
from clinics.selectors import staff_for_user
from clinics.services import audit_record
from triage.models import OPEN_STATES, BreakGlassGrant, Case
from triage.selectors import access_case

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

MIN_REASON_CHARS = 15


class BreakGlassRefused(Exception):
    """The user may not break glass here (no permission, case still readable, reason too short)."""


@dataclass(frozen=True)
class ChartAccess:
    """Whether `user` may read `case`'s chart now, and on what basis: `open`, `recent`, `break-glass`
    (then `grant`), or `restricted` (allowed False: an older case, no active grant)."""

    allowed: bool
    basis: str
    grant: BreakGlassGrant | None = None


def case_ended_at(case: Case) -> datetime | None:
    """When the case left the open states (closed, abandoned or transferred), None while it is open."""
    if case.state in OPEN_STATES:
        return None
    return case.closed_at or case.abandoned_at or case.transferred_at or case.arrived_at


def chart_access(*, user: User | AnonymousUser, case: Case) -> ChartAccess:
    """Apply the rule in the module doc. The case must already be the user's clinic's (`access_case`)."""
    if not user.has_perm(roles.WORK_CASES):
        return ChartAccess(False, "restricted")
    ended = case_ended_at(case)
    if ended is None:
        return ChartAccess(True, "open")
    if timezone.now() - ended < timedelta(hours=settings.CHART_OPEN_WINDOW_HOURS):
        return ChartAccess(True, "recent")
    grant = active_grant(user=user, case=case)
    if grant is not None:
        return ChartAccess(True, "break-glass", grant)
    return ChartAccess(False, "restricted")


def active_grant(*, user: User | AnonymousUser, case: Case) -> BreakGlassGrant | None:
    """The user's unexpired break-glass grant on `case`, if any."""
    if not user.is_authenticated:
        return None
    now = timezone.now()
    return (
        BreakGlassGrant.objects.filter(case=case, clinic_id=case.clinic_id, user_id=user.pk, expires_at__gt=now)
        .order_by("-expires_at")
        .first()
    )


def break_glass_grant(*, user: User, case_id: int, reason: str, source_ip: str | None = None) -> BreakGlassGrant:
    """Open `case_id`'s chart to `user` for BREAKGLASS_GRANT_MINUTES with a written `reason`.

    Raises Case.DoesNotExist (another clinic's or unknown case: 404, `access.denied` audited), NotStaff,
    BreakGlassRefused (no `clinics.grant_break_glass`; the chart is readable without it; reason shorter
    than MIN_REASON_CHARS). Audits `breakglass.granted` in the grant's transaction; a refusal
    for want of the permission is audited `breakglass.refused` (kept: it is committed before raising).
    """
    case = access_case(user=user, case_id=case_id)
    if not user.has_perm(roles.GRANT_BREAK_GLASS):
        audit_record(clinic=case.clinic, actor=user, action="breakglass.refused", object_type="case", object_id=case.pk)
        raise BreakGlassRefused("Only a supervisor can break the glass.")
    reason = " ".join(reason.split())
    if len(reason) < MIN_REASON_CHARS:
        raise BreakGlassRefused(f"Write why you need this chart (at least {MIN_REASON_CHARS} characters).")
    if chart_access(user=user, case=case).basis in ("open", "recent"):
        raise BreakGlassRefused("This chart is readable without break-glass.")
    now = timezone.now()
    with transaction.atomic():
        grant = BreakGlassGrant.objects.create(
            clinic=case.clinic,
            case=case,
            user=user,
            reason=reason[:2000],
            granted_at=now,
            expires_at=now + timedelta(minutes=settings.BREAKGLASS_GRANT_MINUTES),
        )
        _audit_grant(grant=grant, case=case, user=user, reason=reason, source_ip=source_ip)
    return grant


def _audit_grant(*, grant: BreakGlassGrant, case: Case, user: User, reason: str, source_ip: str | None) -> None:
    audit_record(
        clinic=case.clinic,
        actor=user,
        action="breakglass.granted",
        object_type="breakglass",
        object_id=grant.pk,
        patient_ref=case.patient_fhir_id,
        # The written reason may name the patient: it stays on the grant (encrypted at rest), not in the log.
        reason=f"case {case.pk}, {settings.BREAKGLASS_GRANT_MINUTES} min, written reason on grant #{grant.pk}",
        source_ip=source_ip,
    )


def grants_for_review(*, user: User) -> QuerySet[BreakGlassGrant]:
    """The user's clinic's grants, unreviewed first then newest (NotStaff for non-staff; callers check
    `clinics.review_break_glass`)."""
    staff = staff_for_user(user)
    return (
        BreakGlassGrant.objects.filter(clinic=staff.clinic)
        .select_related("user", "reviewed_by", "case")
        .order_by("reviewed_at", "-granted_at")
    )


@transaction.atomic
def break_glass_review(*, user: User, grant_id: int, note: str = "") -> BreakGlassGrant:
    """Mark a grant of the user's clinic reviewed (`clinics.review_break_glass`; never one's own grant).

    Raises BreakGlassGrant.DoesNotExist (another clinic's or unknown: 404), BreakGlassRefused. Audits
    `breakglass.reviewed`."""
    staff = staff_for_user(user)
    grant = BreakGlassGrant.objects.select_for_update().get(pk=grant_id, clinic=staff.clinic)
    if not user.has_perm(roles.REVIEW_BREAK_GLASS):
        raise BreakGlassRefused("Only a clinic admin can review break-glass access.")
    if grant.user_id == user.pk:
        raise BreakGlassRefused("Break-glass access is reviewed by someone else.")
    if grant.reviewed_at is None:
        grant.reviewed_at = timezone.now()
        grant.reviewed_by = user
        grant.review_note = note.strip()[:2000]
        grant.save(update_fields=["reviewed_at", "reviewed_by", "review_note"])
        audit_record(
            clinic=staff.clinic,
            actor=user,
            action="breakglass.reviewed",
            object_type="breakglass",
            object_id=grant.pk,
            patient_ref=grant.case.patient_fhir_id,
            reason=grant.review_note,
        )
    return grant
