"""Phone normalisation: E.164, and reasons people can act on (the bulk path: tests/members)."""

from __future__ import annotations

import pytest

from koinonia.kit.phones import PhoneError, normalize_phone

# --- the reference path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(201) 555-0100", "US", "+12015550100"),
        ("+1 201.555.0100", "US", "+12015550100"),
        ("1-201-555-0100", "US", "+12015550100"),
        ("  2015550100  ", "US", "+12015550100"),
        ("２０１５５５０１００", "US", "+12015550100"),  # fullwidth digits
        ("1-800-FLOWERS", "US", "+18003569377"),  # letters on the keypad
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("011 44 20 7946 0958", "US", "+442079460958"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("(604) 555-0123", "CA", "+16045550123"),
        ("+1 268 460 1234", "US", "+12684601234"),  # Antigua, also +1
    ],
)
def test_valid_numbers_become_e164(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("call me", "not a number"),
        ("2.01555E+09", "not a number"),
        ("12345", "too short"),
        ("555-1234", "missing area code"),
        ("0044 20 7946 0958", "too long"),  # 00 isn't the international prefix in the US
        ("+999 1234 5678", "unknown country code"),
        ("555 123 4567", "invalid number for region US"),
        ("+1 268 100 1234", "invalid number for region AG"),
        ("201 555 0100 x12", "has an extension; texts can't reach an extension"),
    ],
)
def test_invalid_numbers_say_why(raw: str, reason: str) -> None:
    with pytest.raises(PhoneError) as caught:
        normalize_phone(raw)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == reason
