"""The import's bulk phone check (members.import_phones) gives exactly the reference answers of
kit.phones.normalize_phone, one by one; its NANP automata agree with `re`."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from koinonia.kit.phones import PhoneError, normalize_phone
from koinonia.members import import_phones as phones
from koinonia.members.import_phones import normalize_phones

PROPERTY = settings(max_examples=200, deadline=None, database=None)


def one_by_one(raws: list[str], region: str) -> list[str | tuple[str, str]]:
    """The reference answers, with errors made comparable."""
    results: list[str | tuple[str, str]] = []
    for raw in raws:
        try:
            results.append(normalize_phone(raw, region))
        except PhoneError as exc:
            results.append(("error", exc.reason))
    return results


def in_bulk(raws: list[str], region: str) -> list[str | tuple[str, str]]:
    return [
        r if isinstance(r, str) else ("error", r.reason) for r in normalize_phones(raws, region)
    ]


def test_bulk_keeps_order_and_duplicates() -> None:
    raws = ["(201) 555-0100", "bad", "201.555.0100", "", "+44 20 7946 0958", "bad"]
    results = normalize_phones(raws)
    assert results[0] == results[2] == "+12015550100"
    assert results[4] == "+442079460958"
    assert [r.reason for r in results if isinstance(r, PhoneError)] == [
        "not a number",
        "empty",
        "not a number",
    ]
    assert normalize_phones([]) == []


# --- the bulk path gives exactly the reference answers --------------------------------------------

# Area codes where phonenumbers' verdict turns on more than the area code: other NANP countries,
# personal numbers (52x, 53x), toll-free, premium, N11 service codes, 555, invalid ones.
AREA_CODES = [
    "201", "212", "268", "264", "284", "340", "345", "441", "473", "500", "521", "523", "524",
    "533", "555", "600", "658", "664", "670", "671", "684", "721", "758", "767", "784", "787",
    "800", "809", "829", "849", "868", "869", "876", "888", "900", "911", "939", "958", "999",
    "100", "011", "000",
]  # fmt: skip
FORMATS = [
    "{a}{e}{l}", "({a}) {e}-{l}", "{a}-{e}-{l}", "{a}.{e}.{l}", "{a} {e} {l}", "+1{a}{e}{l}",
    "+1 {a} {e} {l}", "+1 ({a}) {e}-{l}", "1{a}{e}{l}", "1-{a}-{e}-{l}", "1 ({a}) {e} {l}",
    " {a}{e}{l}\t", "+{a}{e}{l}", "{a}{e}{l} x12", "({a}){e}-{l}", "1({a}){e}{l}", "{a}-{e}{l}",
    "+1-{a}-{e}-{l}", "+ 1 {a} {e} {l}", "001 {a} {e} {l}", "011 1 {a} {e} {l}", "({a} {e}-{l}",
    "{a}) {e}-{l}", "{a}--{e}-{l}", "11{a}{e}{l}", "{a}{e}{l}1", "+1 1{a}{e}{l}", "{e}-{l}",
]  # fmt: skip
REGIONS = ["US", "CA", "PR", "AG", "GB"]

digits = st.text("0123456789", min_size=1, max_size=1)
area_code = st.sampled_from(AREA_CODES) | st.text("0123456789", min_size=3, max_size=3)
exchange = st.text("0123456789", min_size=3, max_size=3)
line = st.text("0123456789", min_size=4, max_size=4)
nanp_like = st.builds(
    lambda fmt, a, e, n: fmt.format(a=a, e=e, l=n),
    st.sampled_from(FORMATS),
    area_code,
    exchange,
    line,
)
messy = st.text(
    st.sampled_from([*"0123456789" * 3, *"+()-. x#*/,ext", "\u00a0", "\u2013", "٣", "２", "ℹ"])
    | st.characters(),
    max_size=25,
)


@PROPERTY
@given(st.lists(nanp_like | messy, max_size=30), st.sampled_from(REGIONS))
@example(["(555) 123-4567", "+1 555.123.4567", "555 123 4567 x12", "0044 20 7946 0958"], "US")
@example(["", "abc", "٢٠١٥٥٥٠١٠٠", "+1 201 555 0100", "2015550100", "12015550100"], "US")
@example(["2015550100", "2015550100", "19115550100", "+1 911 555 0100"], "CA")
def test_bulk_equals_one_by_one(raws: list[str], region: str) -> None:
    assert in_bulk(raws, region) == one_by_one(raws, region)


def test_numbers_sharing_a_settling_prefix_share_the_verdict() -> None:
    # The fast path judges a number by the first one seen with the same settling prefix, so
    # check many numbers per prefix, across the area codes where validity turns on the most
    # digits. Formats vary so the shape matching is exercised too.
    prefixes = phones._nanp_prefixes()
    assert prefixes is not None
    rnd = random.Random(20260308)

    def number(start: str) -> str:
        rest = "".join(rnd.choice("0123456789") for _ in range(10 - len(start)))
        return start + rest

    raws: list[str] = []
    for start in [a for a in AREA_CODES if a[0] in "23456789"] * 20 + ["2", "5", "8", "9"] * 50:
        digits10 = number(start)
        if digits10[3] not in "01":
            settled = prefixes.settling_prefix(digits10)
            for _ in range(4):
                d = number(settled)
                fmt = rnd.choice(FORMATS[:12])
                raws.append(fmt.format(a=d[:3], e=d[3:6], l=d[6:]))
    assert len(raws) > 3000
    for region in ("US", "CA"):
        assert in_bulk(raws, region) == one_by_one(raws, region)


# --- the pattern analysis behind the fast path ----------------------------------------------------


def test_fast_path_is_active_for_the_installed_metadata() -> None:
    # If a phonenumbers upgrade brings regex syntax the analyser doesn't know, imports still give
    # the right answers but slowly; this test says so instead of letting it pass unnoticed.
    assert phones._nanp_prefixes() is not None
    assert len(phones.nanp_patterns()) > 20


def accepts(automaton: phones._DigitAutomaton, text: str) -> bool:
    state = automaton.start
    for char in text:
        state = automaton.step(state, int(char))
    return automaton.outcome(state, 0) == phones._ALL


SYNTAX_CASES = [
    "", "1", "12|3", "[2-9]\\d{2}", "[^3]1?", "(?:1|23)*4", "(1|2){2,}", "\\d{1,3}", "5[1-46]?",
    "(?:[02]|1(?:3|4))+", "[\\d]{0,2}7", "[-1]2", "[1-]2", "x?1", "\\.?3", "(?:)3", "3{0}4",
]  # fmt: skip
ALL_SHORT_STRINGS = [
    "".join(p) for n in range(5) for p in itertools.product("0123456789", repeat=n)
]


@pytest.mark.parametrize("pattern", SYNTAX_CASES)
def test_automaton_agrees_with_re_on_every_short_digit_string(pattern: str) -> None:
    automaton = phones._DigitAutomaton(pattern)
    compiled = re.compile(pattern)
    for text in ALL_SHORT_STRINGS:
        assert accepts(automaton, text) == bool(compiled.fullmatch(text)), text


@pytest.mark.parametrize("pattern", ["^1", "1$", "(?=1)", "\\w", "1*?", "(?P<x>1)", "\\1", "{2}"])
def test_unsupported_syntax_is_refused_not_guessed(pattern: str) -> None:
    with pytest.raises(phones._UnsupportedPattern):
        phones._DigitAutomaton(pattern)


@PROPERTY
@given(st.data())
def test_metadata_automata_settle_only_when_every_completion_agrees(data: st.DataObject) -> None:
    pattern = data.draw(st.sampled_from(phones.nanp_patterns()))
    automaton = phones._DigitAutomaton(pattern)
    compiled = re.compile(pattern)
    prefix = data.draw(st.text("0123456789", max_size=10))
    state = automaton.start
    for char in prefix:
        state = automaton.step(state, int(char))
    verdict = automaton.outcome(state, 10 - len(prefix))
    for _ in range(20):
        full = prefix + data.draw(
            st.text("0123456789", min_size=10 - len(prefix), max_size=10 - len(prefix))
        )
        matched = bool(compiled.fullmatch(full))
        assert accepts(automaton, full) == matched
        if verdict != phones._MIXED:
            assert matched == (verdict == phones._ALL)
