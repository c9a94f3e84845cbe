"""Read queries of the clinics app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinics.models import Clinic, StaffMember

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


class NotStaff(Exception):
    """The user has no clinic membership (not a nurse, supervisor or admin of any clinic)."""


def staff_for_user(user: User | AnonymousUser) -> StaffMember:
    """Return the user's clinic membership. Raises NotStaff for anonymous users or users of no clinic."""
    if not user.is_authenticated:
        raise NotStaff("anonymous")
    try:
        return StaffMember.objects.select_related("clinic").get(user=user)
    except StaffMember.DoesNotExist as exc:
        raise NotStaff("no clinic membership") from exc


def clinic_for_number(number: str) -> Clinic | None:
    """The clinic whose Twilio number (E.164) is `number`, or None."""
    return Clinic.objects.filter(twilio_number=number).first()
