"""State-changing operations of the clinics app: tenants, staff, audit."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from clinics import request_id
from clinics.models import AUDIT_GENESIS_HASH, AuditEvent, Clinic, StaffMember
from clinics.roles import sync_role_group

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


def _lock_chain(clinic_id: int) -> None:
    """Serialise appends to `clinic_id`'s audit chain until the end of the current transaction.

    PostgreSQL: `pg_advisory_xact_lock(AUDIT_LOCK_NAMESPACE, clinic_id)` (released at commit/rollback).
    SQLite has no row or advisory locks; a write transaction holds the database-wide write lock (the
    embedded run opens transactions IMMEDIATE, so the head is read under it). Either way the unique
    (clinic, seq) constraint is the last wall: two writers can never both store the same `seq`, so the
    chain cannot fork; the loser's transaction fails instead.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [AUDIT_LOCK_NAMESPACE, clinic_id])


# First key of the two-key advisory lock (an arbitrary constant reserved for the audit chain: "CLAU").
AUDIT_LOCK_NAMESPACE = 0x434C4155


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
    role: str = "",
) -> AuditEvent:
    """Append one audit row to `clinic`'s hash chain, in the caller's transaction (a savepoint when there
    is one, else its own transaction): who (`actor`, and `role`: the actor's StaffMember role unless
    given), what (`action`, `object_type`/`object_id`), which patient (`patient_ref`: FHIR Patient id),
    when (`at`, now, UTC), from where (`source_ip`; default the current request's address), the request
    (`request_id` from `clinics.request_id`), and the stated reason if any (first 2000 characters).

    The row gets `seq` = head + 1 and `prev_hash` = head's hash under a per-clinic lock (`_lock_chain`),
    then `hash` (`clinics.models.audit_hash`). The lock is held to the end of the caller's transaction,
    so rows are chained in commit order. HIPAA 45 CFR 164.312(b) (audit controls). Raises
    django.db.DatabaseError if the row cannot be stored (the caller's access then rolls back with it).
    """
    context = request_id.current()
    who = actor if actor is not None and actor.is_authenticated else None
    if who is not None and not role:
        role = StaffMember.objects.filter(user_id=who.pk).values_list("role", flat=True).first() or ""
    if source_ip is None:
        source_ip = context.source_ip
    if source_ip:
        source_ip = str(ipaddress.ip_address(source_ip))  # the form the database gives back (hash stability)
    with transaction.atomic():
        _lock_chain(clinic.pk)
        head = AuditEvent.objects.filter(clinic_id=clinic.pk).order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = ((head[0] or 0) + 1, head[1]) if head else (1, AUDIT_GENESIS_HASH)
        event = AuditEvent(
            clinic=clinic,
            actor=who,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            patient_ref=patient_ref,
            reason=reason[:2000],
            source_ip=source_ip or None,
            role=role,
            request_id=context.request_id[:64],
            at=timezone.now(),
            seq=seq,
            prev_hash=prev_hash,
        )
        event.hash = event.computed_hash()
        event.save(force_insert=True)
    return event


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
    """Create (or reset the password and role of) a staff user in `clinic`, in the role's Group
    (`clinics.roles`: the role's permissions).

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
    sync_role_group(user=user, role=role)
    return member
