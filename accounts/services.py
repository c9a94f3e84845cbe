"""Authentication operations: TOTP enrolment and verification, backup codes, the auth audit trail.

MFA uses django-otp: a `TOTPDevice` (RFC 6238: 6 digits, 30 s step, one step of clock drift tolerated, each code
accepted once) and a `StaticDevice` holding single-use backup codes. A session is "OTP-verified" once
`django_otp.login(request, device)` stored the device in it; `accounts.middleware.OtpRequiredMiddleware` keeps
everything else out until then. HIPAA 45 CFR 164.312(d) (person or entity authentication); OWASP ASVS 5.0 V6.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import django_otp
import segno
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinics import db_scope
from clinics.models import StaffMember
from clinics.services import audit_record

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
    from django.http import HttpRequest
    from django_otp.models import Device

logger = logging.getLogger(__name__)

TOTP_DEVICE_NAME = "authenticator app"
BACKUP_DEVICE_NAME = "backup codes"
BACKUP_CODE_COUNT = 10


def audit_auth(*, user: AbstractBaseUser | AnonymousUser | None, action: str, reason: str = "") -> None:
    """Append an `auth.*` row to the user's clinic audit log (users of no clinic: a log line only, no PHI).

    Actions: `auth.login` (password and OTP passed), `auth.failure` (wrong password or OTP code),
    `auth.lockout`, `auth.logout`, `auth.session_expired`,
    `auth.mfa_enrolled`, `ws.frame_too_large`, `ws.rate_limited`.
    """
    member = None
    if user is not None and user.pk is not None:
        member = StaffMember.objects.select_related("clinic").filter(user_id=user.pk).first()
    if member is None:
        logger.info("%s for user id %s (no clinic: not audited)", action, getattr(user, "pk", None))
        return
    # Sign-in events happen before (or as) the session gets its clinic scope: write the row in the user's own
    # clinic scope (PostgreSQL row-level security, `clinics.db_scope`), never another clinic's.
    with db_scope.clinic_scope(member.clinic_id):
        audit_record(
            clinic=member.clinic,
            actor=cast("User", user) if user is not None and user.is_authenticated else None,
            action=action,
            object_type="user",
            object_id=str(user.pk) if user is not None else "",
            reason=reason,
            role=member.role,
        )


def confirmed_totp(user: AbstractBaseUser) -> TOTPDevice | None:
    """The user's confirmed TOTP device, or None (then the next sign-in enrols one)."""
    return TOTPDevice.objects.filter(user_id=user.pk, confirmed=True).order_by("pk").first()


def totp_enrolment_device(user: AbstractBaseUser) -> TOTPDevice:
    """The unconfirmed TOTP device the enrolment page shows (created with a fresh 160-bit secret if none)."""
    device = TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).order_by("pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


def totp_qr_svg(device: TOTPDevice) -> str:
    """The device's `otpauth://` URL as an inline SVG QR code (segno; no script, no style attribute)."""
    return str(segno.make(device.config_url, error="m").svg_inline(scale=4, title="TOTP enrolment QR code"))


def totp_secret_text(device: TOTPDevice) -> str:
    """The secret in base32, in groups of four (for typing into an app that cannot scan)."""
    from base64 import b32encode

    secret = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _normalise(token: str) -> str:
    return "".join(token.split()).lower()


@transaction.atomic
def mfa_enrol(*, request: HttpRequest, device: TOTPDevice, token: str) -> list[str] | None:
    """Confirm `device` with a first code from the app; returns the new backup codes, or None if the code is
    wrong. On success the session is OTP-verified, other unconfirmed devices are removed, a `StaticDevice` with
    BACKUP_CODE_COUNT fresh single-use codes replaces any old one, and `auth.mfa_enrolled` is audited."""
    user = request.user
    if device.user_id != user.pk or not device.verify_token(_normalise(token)):
        return None
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    TOTPDevice.objects.filter(user_id=user.pk, confirmed=False).delete()
    StaticDevice.objects.filter(user_id=user.pk).delete()
    backup = StaticDevice.objects.create(user=user, name=BACKUP_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=backup, token=code) for code in codes])
    django_otp.login(request, device)
    audit_auth(user=user, action="auth.mfa_enrolled")
    audit_auth(user=user, action="auth.login", reason="first sign-in: TOTP enrolled")
    return codes


def mfa_verify(*, user: AbstractBaseUser, token: str) -> Device | None:
    """The user's confirmed device (TOTP first, then backup codes) that accepts `token`, or None.

    A TOTP code is accepted once (django-otp keeps the last time step used); a backup code is deleted when
    used. django-otp's own throttling (exponential delay per device after failures) applies too."""
    token = _normalise(token)
    if not token:
        return None
    # A 6-digit number is an app code, anything else a backup code: only that device is tried, so a backup
    # code does not count as a failure (and a throttling delay) against the app device.
    kind = TOTPDevice if token.isdigit() and len(token) == 6 else StaticDevice
    for device in kind.objects.devices_for_user(user, confirmed=True):
        verified = django_otp.verify_token(user, device.persistent_id, token)
        if verified is not None:
            return verified
    return None
