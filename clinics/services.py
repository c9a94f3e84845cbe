"""State-changing operations of the clinics app: tenants, staff, audit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import transaction

from clinics.models import AuditEvent, Clinic, StaffMember

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


def audit_record(
    *,
    clinic: Clinic,
    actor: User | AnonymousUser | None,
    action: str,
    object_type: str = "",
    object_id: str | int = "",
    patient_ref: str = "",
    reason: str = "",
    source_ip: str | None = None,
) -> AuditEvent:
    """Append one audit row (who, what, which patient, when, from where, and the stated reason if any) in the
    caller's transaction."""
    return AuditEvent.objects.create(
        clinic=clinic,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        patient_ref=patient_ref,
        reason=reason[:2000],
        source_ip=source_ip,
    )


def clinic_create(
    *, slug: str, name: str, twilio_number: str, on_call_number: str, timezone: str = "America/New_York"
) -> Clinic:
    """Create a clinic, or update the one with this slug (idempotent). Numbers are E.164 strings."""
    clinic, _ = Clinic.objects.update_or_create(
        slug=slug,
        defaults={
            "name": name,
            "twilio_number": twilio_number,
            "on_call_number": on_call_number,
            "timezone": timezone,
        },
    )
    return clinic


@transaction.atomic
def staff_create(*, clinic: Clinic, role: str, username: str, password: str, **profile: object) -> StaffMember:
    """Create (or reset the password and role of) a staff user in `clinic`.

    Raises ValueError for an unknown role. `profile` may hold `first_name`, `last_name`, `skills`,
    `languages`.
    """
    if role not in StaffMember.Role.values:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(StaffMember.Role.values)}")
    user_model = get_user_model()
    user, _ = user_model.objects.get_or_create(username=username)
    user.set_password(password)
    user.first_name = str(profile.get("first_name", user.first_name))
    user.last_name = str(profile.get("last_name", user.last_name))
    user.is_staff = role == StaffMember.Role.ADMIN
    user.save()
    member, _ = StaffMember.objects.update_or_create(
        user=user,
        defaults={
            "clinic": clinic,
            "role": role,
            "skills": list(profile.get("skills", []) or []),  # type: ignore[call-overload]
            "languages": list(profile.get("languages", ["en"]) or []),  # type: ignore[call-overload]
        },
    )
    return member
