"""Email addresses: the one check, for API bodies (`kit.schemas.Email`) and the member import.

The rules are pydantic's `EmailStr`: email-validator without a deliverability check (no
special-use domains such as `.test` or `.local`, no consecutive dots, at most 254 characters),
the domain lower-cased (an IDNA domain in its Unicode form), `Name <addr>` read as `addr`.

`normalize_email` gives exactly `EmailStr`'s answers, faster for the common shape. A check costs
~35 µs, two thirds of it judging the domain: an import of 100,000 rows with an email column spent
3.5 s on it. For a plain ASCII address (a dot-atom local part, `@`, letters, digits, dots and
hyphens) email-validator judges the local part by that shape alone and the domain by the domain
alone; its one check on the whole is the limit of 254 UTF-8 bytes, before and after normalizing.
So the domain's verdict is taken once, from the reference itself, and cached; anything else,
and every refusal, takes the reference path (tests/kit/test_emails.py compares both).
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic.networks import validate_email

MAX_LENGTH = 254  # email-validator's limit on the whole address
# RFC 5322 atext, as email-validator's DOT_ATOM_TEXT, then an ASCII host name.
_PLAIN = re.compile(
    r"([a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~]+)*)"
    r"@([a-zA-Z0-9.\-]+)",
    re.ASCII,
)


def normalize_email(value: str) -> str:
    """The address as stored, or ValueError (pydantic's, its message says why)."""
    plain = _PLAIN.fullmatch(value)
    if plain is None or len(value) > MAX_LENGTH:
        return _reference(value)
    domain = _domain(plain[2])
    if domain is None:
        return _reference(value)  # raises, with the reason for this address
    normalized = f"{plain[1]}@{domain}"
    if len(normalized.encode()) > MAX_LENGTH:  # an IDNA domain's Unicode form can be longer
        return _reference(value)
    return normalized


def _reference(value: str) -> str:
    return validate_email(value)[1]


@lru_cache(maxsize=4096)
def _domain(domain: str) -> str | None:
    """The normalized domain, or None when email-validator refuses it (whatever the local part:
    the shortest one is the probe, so a length refusal holds for every longer address too)."""
    try:
        return _reference(f"a@{domain}").partition("@")[2]
    except ValueError:
        return None
