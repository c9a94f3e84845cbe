"""Phone number normalisation for EHR searches and callbacks (with Google's `phonenumbers`).

EHRs store numbers as typed: E.164 (`+15553031209`), national formats (`555-303-1209`,
`(555) 303-1209`) or bare digits. FHIR token search on `phone`/`telecom` is an exact string match on most
servers, so a caller ID in E.164 is searched in every common spelling at once (FHIR OR: comma-separated).
"""

from __future__ import annotations

import phonenumbers

DEFAULT_REGION = "US"


class InvalidPhoneNumber(ValueError):
    """The string is not a possible phone number."""


def to_e164(raw: str, *, region: str = DEFAULT_REGION) -> str:
    """`raw` in E.164 (`+15553031209`). Raises InvalidPhoneNumber.

    Fictional 555 numbers are *possible* but not *valid* numbers; they are accepted (test and demo data use
    them), so only possibility is checked.
    """
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(str(exc)) from exc
    if not phonenumbers.is_possible_number(number):
        raise InvalidPhoneNumber(f"not a possible number: {len(raw)} characters")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def search_variants(raw: str, *, region: str = DEFAULT_REGION) -> list[str]:
    """The spellings of `raw` to search for: E.164, national with dashes, national with parentheses, digits.

    Returns e.g. `["+15553031209", "555-303-1209", "(555) 303-1209", "5553031209"]`. Raises
    InvalidPhoneNumber.
    """
    e164 = to_e164(raw, region=region)
    number = phonenumbers.parse(e164)
    national = str(number.national_number)
    variants = [e164, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL), national]
    if len(national) == 10 and number.country_code == 1:  # NANP: also 555-303-1209
        variants.insert(1, f"{national[:3]}-{national[3:6]}-{national[6:]}")
    return list(dict.fromkeys(variants))
