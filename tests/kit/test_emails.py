"""kit.emails.normalize_email gives exactly pydantic EmailStr's answers (its fast path included)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic.networks import validate_email

from koinonia.kit.emails import normalize_email

PROPERTY = settings(max_examples=500, deadline=None, database=None)


def reference(value: str) -> str | None:
    try:
        return validate_email(value)[1]
    except ValueError:
        return None


def ours(value: str) -> str | None:
    try:
        return normalize_email(value)
    except ValueError:
        return None


ATEXT = "abcXYZ019_!#$%&'*+-/=?^`{|}~"
_atom = st.text(st.sampled_from(ATEXT + "."), min_size=0, max_size=70)
_label = st.text(st.sampled_from("abcXYZ019-_"), min_size=0, max_size=70)
_tld = st.sampled_from(
    ["com", "org", "ORG", "de", "c0m", "123", "test", "local", "invalid", "onion", "arpa", "x"]
)
_domain = st.builds(
    lambda labels, tld: ".".join([*labels, tld]), st.lists(_label, max_size=4), _tld
) | st.sampled_from(["localhost", "xn--80ak6aa92e.com", "xn--bcher-kva.example", "xn--zz.com"])
_plain = st.builds(lambda local, domain: f"{local}@{domain}", _atom, _domain)
_word = st.text(st.sampled_from("abcXYZ019"), min_size=1, max_size=20)
_typical = st.builds(lambda local, label, tld: f"{local}@{label}.{tld}", _word, _word, _tld)
_messy = st.text(st.sampled_from(ATEXT + '.@ "<>()[]\\,;:ü\r\n\t'), max_size=40)


@PROPERTY
@given(_typical | _plain | _messy)
@example("ann..lee@example.org")
@example("Ann@Example.ORG")
@example("Ann Lee <ann@example.org>")
@example("abc@xn--80ak6aa92e.com")
@example("a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com")  # 255: one over
@example("a" * 63 + "@" + ".".join(["b" * 63] * 3) + ".com")
def test_the_same_answers_as_emailstr(value: str) -> None:
    assert ours(value) == reference(value)


def test_a_refusal_says_why() -> None:
    with pytest.raises(ValueError, match="not a valid email address"):
        normalize_email("ann@example.test")
