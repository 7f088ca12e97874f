"""Phone numbers to E.164 with `phonenumbers`: `normalize_phone` is the reference (parse, reject
extensions, `is_valid_number`, format E.164) and `check_e164` its last step, which the member
import's bulk path (`members.import_phones`) shares so both give the same answers and reasons.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, ValidationResult


class PhoneError(ValueError):
    """A phone number we can't text, with a reason fit to show the person who typed it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}
_LENGTH_REASONS = {
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "missing area code",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    ValidationResult.TOO_LONG: "too long",
}


def normalize_phone(raw: str, region: str = "US") -> str:
    """E.164 form of `raw` (national numbers read as `region`'s), or PhoneError with the reason."""
    text = raw.strip()
    if not text:
        raise PhoneError("empty")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise PhoneError(_PARSE_REASONS.get(exc.error_type, "not a number")) from None
    return check_e164(number, region)


def check_e164(number: PhoneNumber, region: str) -> str:
    """E.164 form of a parsed number we can text, or PhoneError with the reason."""
    if number.extension:
        raise PhoneError("has an extension; texts can't reach an extension")
    if phonenumbers.is_valid_number(number):
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    reason = _LENGTH_REASONS.get(phonenumbers.is_possible_number_with_reason(number))
    if reason is not None:
        raise PhoneError(reason)
    where = phonenumbers.region_code_for_number(number)
    if where is None:
        country_code = number.country_code or 0
        if country_code == phonenumbers.country_code_for_region(region):
            where = region
        else:
            where = phonenumbers.region_code_for_country_code(country_code)
    raise PhoneError(f"invalid number for region {where}")
