"""SMS segment counting as carriers bill it, and merge-field rendering.

Encoding follows 3GPP TS 23.038: a text is GSM-7 when every character is in the default alphabet
or its extension table, otherwise the whole text is sent as UCS-2 (UTF-16). Limits: GSM-7 160
septets in one SMS, 153 per part when concatenated (the user data header takes the rest); UCS-2 70
UTF-16 units, 67 per part. A part never splits an escape sequence (ESC + extension character) or
a surrogate pair: the pair moves whole to the next part, leaving a unit unused.

The empty text counts as 1 segment: carriers bill an empty SMS as one message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

# The default alphabet, row by row in code order 0x00-0x7F. 0x1B (ESC) is the escape to the
# extension table, not a character a text can contain, so it is left out.
_GSM7_ROWS = (
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ",  # 0x1B ESC sits between Ξ and Æ
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmnopqrstuvwxyzäöñüà",
)
GSM7_BASIC: frozenset[str] = frozenset("".join(_GSM7_ROWS))
# Extension table: each costs ESC + the character, 2 septets. "\f" is the page break (0x0A).
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")
_GSM7_ALL = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

# ASCII characters that are not a plain 1-septet GSM-7 character: controls other than LF/CR,
# backtick, DEL and the extension characters. Pure ASCII text without them is the common case.
_ASCII_NOT_BASIC = re.compile("[^" + re.escape("".join(c for c in GSM7_BASIC if c.isascii())) + "]")
_NOT_GSM7 = re.compile("[^" + re.escape("".join(sorted(_GSM7_ALL))) + "]")
_EXTENSION_CHAR = re.compile("[" + re.escape("".join(sorted(GSM7_EXTENSION))) + "]")
_ASTRAL_CHAR = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    encoding: Literal["GSM-7", "UCS-2"]
    segments: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2


def count_segments(text: str) -> SegmentInfo:
    n = len(text)
    if text.isascii() and _ASCII_NOT_BASIC.search(text) is None:
        return SegmentInfo("GSM-7", 1 if n <= GSM7_SINGLE else _parts(n, (), GSM7_PART), n)
    if _NOT_GSM7.search(text) is None:
        doubles = [m.start() for m in _EXTENSION_CHAR.finditer(text)]
        septets = n + len(doubles)
        if septets <= GSM7_SINGLE:
            return SegmentInfo("GSM-7", 1, septets)
        return SegmentInfo("GSM-7", _parts(n, doubles, GSM7_PART), septets)
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    if units <= UCS2_SINGLE:
        return SegmentInfo("UCS-2", 1, units)
    doubles = [m.start() for m in _ASTRAL_CHAR.finditer(text)] if units > n else []
    return SegmentInfo("UCS-2", _parts(n, doubles, UCS2_PART), units)


def _parts(n_chars: int, doubles: Sequence[int], part_size: int) -> int:
    """Parts needed for `n_chars` characters costing 1 unit, except those at the (ascending)
    indexes `doubles`, which cost 2 and may not be split across a part boundary.

    Works per double-width character rather than per character, so a long plain text costs
    nothing beyond the regex scan that found the doubles.
    """
    parts, used, next_index = 1, 0, 0
    for index in doubles:
        used += index - next_index  # single-unit characters split anywhere
        if used > part_size:
            parts += (used - 1) // part_size
            used = (used - 1) % part_size + 1
        if used + 2 > part_size:
            parts += 1
            used = 2
        else:
            used += 2
        next_index = index + 1
    used += n_chars - next_index
    if used > part_size:
        parts += (used - 1) // part_size
    return parts


# --- merge fields ------------------------------------------------------------------------------

MERGE_FIELDS: frozenset[str] = frozenset({"first_name", "last_name", "church_name", "group_name"})

# "{name}" or "{name|default}"; anything else in braces ("{", "{ }", "{a b}") is literal text.
_PLACEHOLDER = re.compile(r"\{ *([A-Za-z_][A-Za-z0-9_]*) *(?:\|([^{}]*))?\}")


def render(template: str, fields: Mapping[str, str]) -> str:
    """Fill the merge fields in one pass, so a value containing "{last_name}" stays literal.

    A missing or blank value takes the placeholder's default (`{first_name|friend}`), or becomes
    empty without one. Unknown placeholders are left exactly as typed.
    """

    def fill(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name not in MERGE_FIELDS:
            return match.group(0)
        value = fields.get(name)
        if value is None or not value.strip():
            return default.strip() if default is not None else ""
        return value

    return _PLACEHOLDER.sub(fill, template)


def find_fields(template: str) -> set[str]:
    """Names of every placeholder in the template, known or not."""
    return {m.group(1) for m in _PLACEHOLDER.finditer(template)}


def validate_template(template: str) -> list[str]:
    """Unknown placeholder names in order of first appearance; empty when the template is fine."""
    unknown: dict[str, None] = {}
    for m in _PLACEHOLDER.finditer(template):
        if m.group(1) not in MERGE_FIELDS:
            unknown.setdefault(m.group(1))
    return list(unknown)


def split_merge_fields(
    template: str, fields: Mapping[str, str], variable: AbstractSet[str]
) -> tuple[str, dict[str, list[str]]]:
    """The template rendered with `fields` but with every placeholder named in `variable`
    left out, and for each such name the default of each of its placeholders ("" without one).

    A text rendered for someone is then the fixed text plus, per variable field, its value
    once per placeholder when not blank, else those defaults: its length is a sum of parts,
    which lets the longest rendering over many people be computed without rendering each."""
    defaults: dict[str, list[str]] = {}

    def fill(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in variable:
            defaults.setdefault(name, []).append(default.strip() if default is not None else "")
            return ""
        return render(match.group(0), fields)

    return _PLACEHOLDER.sub(fill, template), defaults
