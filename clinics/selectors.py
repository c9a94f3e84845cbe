"""Read queries of the clinics app."""

from __future__ import annotations

from clinics.models import Clinic, StaffMember


class NotStaff(Exception):
    """The user has no clinic membership (not a nurse, supervisor or admin of any clinic)."""


def staff_for_user(user: object) -> StaffMember:
    """Return the user's clinic membership. Raises NotStaff for anonymous users or users of no clinic."""
    if not getattr(user, "is_authenticated", False):
        raise NotStaff("anonymous")
    try:
        return StaffMember.objects.select_related("clinic").get(user=user)
    except StaffMember.DoesNotExist as exc:
        raise NotStaff("no clinic membership") from exc


def clinic_for_number(number: str) -> Clinic | None:
    """The clinic whose Twilio number (E.164) is `number`, or None."""
    return Clinic.objects.filter(twilio_number=number).first()
