"""The member import's bulk phone check: `normalize_phones` gives exactly the answers of
`kit.phones.normalize_phone`, one number at a time, fast enough for files of 100,000 rows.

`is_valid_number` costs ~20 µs because it runs each NANP region's regexes; over 100,000 rows
that alone is 2 s. For input shaped like a plain NANP number ("(201) 555-0100",
"+1 201.555.0100", "12015550100") with a NANP default region, `parse` can only read country
code 1 and the 10 digits as written (see `_NANP_SHAPE`; the tests compare both paths), so the
verdict is a function of those digits; and phonenumbers' verdict on a 10-digit +1 number
depends on them only through whether they match its NANP metadata patterns. `_NanpPrefixes`
walks those patterns as automata and finds, per number, the shortest prefix after which every
pattern's outcome is settled whatever digits follow ("2015" settles all of them: 201 is a US
area code, 5 a valid exchange start). One real phonenumbers verdict per such prefix then stands
for every number under it. Anything else takes the reference path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import phonenumbers
from phonenumbers import PhoneNumber
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc

from koinonia.kit.phones import PhoneError, check_e164, normalize_phone


def normalize_phones(raws: Sequence[str], region: str = "US") -> list[str | PhoneError]:
    """`normalize_phone` for many numbers: each item is the E.164 string or the PhoneError."""
    fast = region in _NANP_REGIONS and _nanp_prefixes() is not None
    done: dict[str, str | PhoneError] = {}  # files repeat numbers (households, re-imports)
    results: list[str | PhoneError] = []
    for raw in raws:
        result = done.get(raw)
        if result is None:
            shape = _NANP_SHAPE.fullmatch(raw) if fast else None
            if shape is not None:
                result = _nanp_fast(shape[1] or shape[2], shape[3], shape[4], region)
            else:
                try:
                    result = normalize_phone(raw, region)
                except PhoneError as exc:
                    result = exc
            done[raw] = result
        results.append(result)
    return results


# --- the NANP fast path ------------------------------------------------------------------------

_NANP_REGIONS = frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(1, ()))

# Optional country code 1 and an area code and exchange that start with 2-9, so phonenumbers
# can read neither the leading "1" nor any part of the 10 digits other than as written (a national
# prefix "1" or an international prefix "011" can't start them). ASCII only: other digits and
# spaces go the reference way.
_NANP_SHAPE = re.compile(
    r"\s*(?:\+?1[ .-]?)?(?:\(([2-9]\d\d)\)|([2-9]\d\d))[ .-]?([2-9]\d\d)[ .-]?(\d{4})\s*", re.ASCII
)
_NANP_LENGTH = 10

# (region, settling prefix) -> None when valid, else the PhoneError reason
_nanp_verdicts: dict[tuple[str, str], str | None] = {}


def _nanp_fast(area: str, exchange: str, line: str, region: str) -> str | PhoneError:
    digits = area + exchange + line
    prefixes = _nanp_prefixes()
    assert prefixes is not None
    key = (region, prefixes.settling_prefix(digits))
    if key not in _nanp_verdicts:
        try:
            check_e164(PhoneNumber(country_code=1, national_number=int(digits)), region)
            _nanp_verdicts[key] = None
        except PhoneError as exc:
            _nanp_verdicts[key] = exc.reason
    reason = _nanp_verdicts[key]
    return "+1" + digits if reason is None else PhoneError(reason)


def nanp_patterns() -> list[str]:
    """Every regex phonenumbers can consult to judge a +1 number, each as a full-match pattern.

    All number descriptions of all NANP regions (a superset of those `is_valid_number` reads),
    plus each region's leading-digits pattern, which it applies with `re.match`: as a full match
    that is the pattern followed by any digits.
    """
    patterns: set[str] = set()
    for region in _NANP_REGIONS:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            continue
        if metadata.leading_digits:
            patterns.add(f"(?:{metadata.leading_digits})\\d*")
        for value in vars(metadata).values():
            if isinstance(value, PhoneNumberDesc) and value.national_number_pattern:
                patterns.add(value.national_number_pattern)
    return sorted(patterns)


@cache
def _nanp_prefixes() -> _NanpPrefixes | None:
    try:
        return _NanpPrefixes(nanp_patterns(), _NANP_LENGTH)
    except _UnsupportedPattern:
        return None  # a future metadata regex we can't analyse: everything takes the slow path


class _NanpPrefixes:
    """Shortest prefixes of `length`-digit strings that settle the full match of every pattern."""

    def __init__(self, patterns: list[str], length: int) -> None:
        self._automata = [_DigitAutomaton(p) for p in patterns]
        self._length = length
        # prefix -> (automaton index, state) of the patterns it leaves unsettled; once a pattern
        # is settled for a prefix it stays settled for every longer one.
        self._open: dict[str, tuple[tuple[int, int], ...]] = {
            "": tuple((i, a.start) for i, a in enumerate(self._automata))
        }
        self._settled: set[str] = set()

    def settling_prefix(self, digits: str) -> str:
        if len(digits) != self._length or not (digits.isascii() and digits.isdigit()):
            raise ValueError(f"expected {self._length} ASCII digits")
        for k in range(1, self._length + 1):
            prefix = digits[:k]
            if prefix in self._settled:
                return prefix
            if prefix in self._open:
                continue
            digit, rest = int(digits[k - 1]), self._length - k
            unsettled = []
            for i, state in self._open[digits[: k - 1]]:
                automaton = self._automata[i]
                state = automaton.step(state, digit)
                if automaton.outcome(state, rest) == _MIXED:
                    unsettled.append((i, state))
            if not unsettled:
                self._settled.add(prefix)
                return prefix
            self._open[prefix] = tuple(unsettled)
        raise AssertionError("a full-length string always settles")  # pragma: no cover


# --- digit regexes as automata ----------------------------------------------------------------

_NONE, _ALL, _MIXED = 0, 1, 2  # of the completions of a prefix: none match, all match, some do
_ANY_DIGIT = frozenset(range(10))


class _UnsupportedPattern(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _Digits:
    digits: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Sequence:
    items: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Either:
    branches: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Repeat:
    node: _Node
    low: int
    high: int | None  # None: unbounded


_Node = _Digits | _Sequence | _Either | _Repeat


class _PatternParser:
    """Parser for the digit-regex subset of the metadata, exact over strings of ASCII digits."""

    def __init__(self, pattern: str) -> None:
        self._text = pattern
        self._pos = 0

    def parse(self) -> _Node:
        node = self._alternation()
        if self._pos != len(self._text):
            raise _UnsupportedPattern(self._text)
        return node

    def _peek(self) -> str:
        return self._text[self._pos] if self._pos < len(self._text) else ""

    def _take(self) -> str:
        char = self._peek()
        if not char:
            raise _UnsupportedPattern(self._text)
        self._pos += 1
        return char

    def _alternation(self) -> _Node:
        branches = [self._concatenation()]
        while self._peek() == "|":
            self._pos += 1
            branches.append(self._concatenation())
        return branches[0] if len(branches) == 1 else _Either(tuple(branches))

    def _concatenation(self) -> _Node:
        items: list[_Node] = []
        while self._peek() not in ("", "|", ")"):
            items.append(self._quantified(self._atom()))
        return _Sequence(tuple(items))

    def _atom(self) -> _Node:
        char = self._take()
        if char == "(":
            if self._text.startswith("?:", self._pos):
                self._pos += 2
            elif self._peek() == "?":
                raise _UnsupportedPattern(self._text)
            node = self._alternation()
            if self._take() != ")":
                raise _UnsupportedPattern(self._text)
            return node
        if char == "[":
            return _Digits(self._char_class())
        if char == "\\":
            return _Digits(self._escape())
        if char == ".":
            return _Digits(_ANY_DIGIT)
        if char in "^$*+?{})|":
            raise _UnsupportedPattern(self._text)
        return _Digits(frozenset([int(char)]) if "0" <= char <= "9" else frozenset())

    def _escape(self) -> frozenset[int]:
        char = self._take()
        if char == "d":
            return _ANY_DIGIT
        if char in "0123456789dDsSwWbBAZ" or char.isalnum():
            raise _UnsupportedPattern(self._text)  # backreferences, classes, anchors
        return frozenset()  # an escaped punctuation character never matches a digit

    def _char_class(self) -> frozenset[int]:
        negate = self._peek() == "^"
        if negate:
            self._pos += 1
        members: set[int] = set()
        first = True
        while True:
            char = self._take()
            if char == "]" and not first:
                break
            first = False
            if char == "\\":
                members |= self._escape()
                continue
            if self._peek() == "-" and self._text[self._pos + 1 : self._pos + 2] not in ("", "]"):
                self._pos += 1
                end = self._take()
                if end == "\\" or not (char.isascii() and end.isascii()):
                    raise _UnsupportedPattern(self._text)
                members |= {d for d in range(10) if ord(char) <= ord(str(d)) <= ord(end)}
            elif "0" <= char <= "9":
                members.add(int(char))
        return _ANY_DIGIT - members if negate else frozenset(members)

    def _quantified(self, atom: _Node) -> _Node:
        char = self._peek()
        high: int | None
        if char == "?":
            low, high = 0, 1
        elif char == "*":
            low, high = 0, None
        elif char == "+":
            low, high = 1, None
        elif char == "{":
            match = re.compile(r"\{(\d+)(,(\d*))?\}").match(self._text, self._pos)
            if match is None:
                raise _UnsupportedPattern(self._text)
            low = int(match[1])
            high = low if match[2] is None else (int(match[3]) if match[3] else None)
            self._pos = match.end() - 1
        else:
            return atom
        self._pos += 1
        if self._peek() in ("?", "+"):
            raise _UnsupportedPattern(self._text)  # lazy or possessive: not in the metadata
        return _Repeat(atom, low, high)


class _DigitAutomaton:
    """A pattern's NFA, determinised lazily; DFA states are small ints."""

    def __init__(self, pattern: str) -> None:
        self._moves: list[list[tuple[frozenset[int], int]]] = []
        self._empty: list[list[int]] = []
        entry = self._new_state()
        self._final = self._build(_PatternParser(pattern).parse(), entry)
        self._sets: list[frozenset[int]] = []
        self._ids: dict[frozenset[int], int] = {}
        self._steps: list[list[int | None]] = []
        self._outcomes: dict[tuple[int, int], int] = {}
        self.start = self._intern(self._closure({entry}))

    def _new_state(self) -> int:
        self._moves.append([])
        self._empty.append([])
        return len(self._moves) - 1

    def _build(self, node: _Node, entry: int) -> int:
        """Add `node` starting at state `entry` (Thompson's construction); return its exit."""
        if isinstance(node, _Digits):
            exit_ = self._new_state()
            self._moves[entry].append((node.digits, exit_))
            return exit_
        if isinstance(node, _Sequence):
            for item in node.items:
                entry = self._build(item, entry)
            return entry
        if isinstance(node, _Either):
            exit_ = self._new_state()
            for branch in node.branches:
                branch_entry = self._new_state()
                self._empty[entry].append(branch_entry)
                self._empty[self._build(branch, branch_entry)].append(exit_)
            return exit_
        for _ in range(node.low):
            entry = self._build(node.node, entry)
        if node.high is None:
            loop = self._new_state()
            self._empty[entry].append(loop)
            self._empty[self._build(node.node, loop)].append(loop)
            return loop
        for _ in range(node.high - node.low):
            exit_ = self._new_state()
            self._empty[entry].append(exit_)
            self._empty[self._build(node.node, entry)].append(exit_)
            entry = exit_
        return entry

    def _closure(self, states: set[int]) -> frozenset[int]:
        stack = list(states)
        while stack:
            for target in self._empty[stack.pop()]:
                if target not in states:
                    states.add(target)
                    stack.append(target)
        return frozenset(states)

    def _intern(self, states: frozenset[int]) -> int:
        found = self._ids.get(states)
        if found is None:
            found = self._ids[states] = len(self._sets)
            self._sets.append(states)
            self._steps.append([None] * 10)
        return found

    def step(self, state: int, digit: int) -> int:
        target = self._steps[state][digit]
        if target is None:
            reached = {t for s in self._sets[state] for ds, t in self._moves[s] if digit in ds}
            target = self._steps[state][digit] = self._intern(self._closure(reached))
        return target

    def outcome(self, state: int, remaining: int) -> int:
        """Whether none, all or only some of the `remaining`-digit continuations fully match."""
        key = (state, remaining)
        found = self._outcomes.get(key)
        if found is not None:
            return found
        if remaining == 0:
            result = _ALL if self._final in self._sets[state] else _NONE
        elif not self._sets[state]:
            result = _NONE
        else:
            result = self.outcome(self.step(state, 0), remaining - 1)
            for digit in range(1, 10):
                if result == _MIXED:
                    break
                if self.outcome(self.step(state, digit), remaining - 1) != result:
                    result = _MIXED
        self._outcomes[key] = result
        return result
