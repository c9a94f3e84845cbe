"""Per-number, per-clinic SMS opt-out (STOP / START), consulted before every outbound SMS.

A number is looked up through a keyed digest (HMAC-SHA256 of the E.164 number under Django's signing key,
`django.utils.crypto.salted_hmac`), so the table can be searched while the number itself stays encrypted.
Rotating `DJANGO_SECRET_KEY` changes the digests, so opt-outs recorded before it are no longer found:
re-digest `SmsOptOut.number` (it is kept encrypted for that) when rotating the key.
"""

from __future__ import annotations

from django.utils.crypto import salted_hmac

from clinics.models import Clinic
from ehr.phone import InvalidPhoneNumber, to_e164
from ivr.models import SmsOptOut

_SALT = "careline.ivr.sms-opt-out"


def number_digest(number: str) -> str:
    """The keyed digest of a phone number (normalised to E.164 when it parses; else as given)."""
    try:
        normalised = to_e164(number)
    except InvalidPhoneNumber:
        normalised = number.strip()
    return salted_hmac(_SALT, normalised, algorithm="sha256").hexdigest()


def is_opted_out(*, clinic: Clinic, number: str) -> bool:
    """True when `number` replied STOP to `clinic` and has not replied START since."""
    return SmsOptOut.objects.filter(clinic=clinic, number_digest=number_digest(number), active=True).exists()


def opt_out(*, clinic: Clinic, number: str, keyword: str) -> SmsOptOut:
    """Record a STOP from `number` to `clinic` (idempotent)."""
    row, _ = SmsOptOut.objects.update_or_create(
        clinic=clinic,
        number_digest=number_digest(number),
        defaults={"number": number, "active": True, "keyword": keyword},
    )
    return row


def opt_in(*, clinic: Clinic, number: str, keyword: str) -> bool:
    """Record a START from `number`: messages may be sent again. Returns True when it had opted out."""
    return bool(
        SmsOptOut.objects.filter(clinic=clinic, number_digest=number_digest(number), active=True).update(
            active=False, keyword=keyword
        )
    )
