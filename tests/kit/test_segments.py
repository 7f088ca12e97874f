"""Segment counting against carrier rules, and merge-field rendering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koinonia.kit.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MERGE_FIELDS,
    SegmentInfo,
    count_segments,
    find_fields,
    render,
    validate_template,
)

PROPERTY = settings(max_examples=300, deadline=None, database=None)


def reference_count(text: str) -> SegmentInfo:
    """Character by character, the way the rules are written, to check the fast version."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
        encoding, single, part = "GSM-7", 160, 153
    else:
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
        encoding, single, part = "UCS-2", 70, 67
    units = sum(costs)
    if units <= single:
        return SegmentInfo(encoding, 1, units)  # type: ignore[arg-type]
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part:
            parts, used = parts + 1, 0
        used += cost
    return SegmentInfo(encoding, parts, units)  # type: ignore[arg-type]


# --- the GSM-7 table -----------------------------------------------------------------------------


def test_basic_table_is_3gpp_23_038() -> None:
    assert len(GSM7_BASIC) == 127  # 128 codes minus ESC
    assert "\x1b" not in GSM7_BASIC
    # Spot checks of positions people get wrong: Ç capital, ¤ not $ at 0x24, ¡ § ¿ à, Greek.
    for char in "@£$¥èéùìòÇ\n\rØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡§¿àÄÖÑÜäöñü":
        assert char in GSM7_BASIC, char
    for char in "ç`áíóúâêÁ\t\x00\x7f":
        assert char not in GSM7_BASIC and char not in GSM7_EXTENSION, repr(char)
    assert frozenset("\f^{}\\[~]|€") == GSM7_EXTENSION


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SegmentInfo("GSM-7", 1, 0)),  # carriers bill an empty SMS as one
        ("a" * 160, SegmentInfo("GSM-7", 1, 160)),
        ("a" * 161, SegmentInfo("GSM-7", 2, 161)),
        ("a" * 306, SegmentInfo("GSM-7", 2, 306)),
        ("a" * 307, SegmentInfo("GSM-7", 3, 307)),
        ("€", SegmentInfo("GSM-7", 1, 2)),
        ("€" * 80, SegmentInfo("GSM-7", 1, 160)),
        ("a" * 159 + "€", SegmentInfo("GSM-7", 2, 161)),
        ("\f{}", SegmentInfo("GSM-7", 1, 6)),
        ("Ç é \u03a9", SegmentInfo("GSM-7", 1, 5)),  # Greek capital omega
        ("\r\n", SegmentInfo("GSM-7", 1, 2)),
        ("é" * 160, SegmentInfo("GSM-7", 1, 160)),
        ("ç", SegmentInfo("UCS-2", 1, 1)),  # only the capital is in the table
        ("\u2126", SegmentInfo("UCS-2", 1, 1)),  # the ohm sign looks the same but is not
        ("`", SegmentInfo("UCS-2", 1, 1)),
        ("\t", SegmentInfo("UCS-2", 1, 1)),
        ("ç" * 70, SegmentInfo("UCS-2", 1, 70)),
        ("ç" * 71, SegmentInfo("UCS-2", 2, 71)),
        ("ç" * 134, SegmentInfo("UCS-2", 2, 134)),
        ("ç" * 135, SegmentInfo("UCS-2", 3, 135)),
        ("😀" * 35, SegmentInfo("UCS-2", 1, 70)),
        ("😀" * 36, SegmentInfo("UCS-2", 2, 72)),
        ("\ud800", SegmentInfo("UCS-2", 1, 1)),  # a lone surrogate from bad JSON doesn't crash
    ],
)
def test_boundaries(text: str, expected: SegmentInfo) -> None:
    assert count_segments(text) == expected


def test_extension_character_is_not_split_across_parts() -> None:
    # 306 septets would fill exactly two parts, but the escape sequence at septets 153-154
    # can't straddle the boundary: part one carries 152, the € starts part two.
    text = "a" * 152 + "€" + "a" * 152
    assert count_segments(text) == SegmentInfo("GSM-7", 3, 306)
    # One character earlier it fits: 151 + 2 = 153.
    assert count_segments("a" * 151 + "€" + "a" * 153) == SegmentInfo("GSM-7", 2, 306)


def test_extension_character_at_position_153_moves_to_the_next_part() -> None:
    assert count_segments("a" * 152 + "€" + "a" * 10).segments == 2
    assert count_segments("a" * 152 + "€" + "a" * 152).segments == 3
    assert count_segments("a" * 153 + "€" + "a" * 151).segments == 2


def test_emoji_straddling_the_67_unit_boundary_moves_whole() -> None:
    # 134 units would be two parts, but the surrogate pair at units 67-68 can't be split.
    assert count_segments("ç" * 66 + "😀" + "ç" * 66) == SegmentInfo("UCS-2", 3, 134)
    assert count_segments("ç" * 65 + "😀" + "ç" * 67) == SegmentInfo("UCS-2", 2, 134)


def test_one_non_gsm_character_switches_the_whole_text_to_ucs2() -> None:
    assert count_segments("a" * 100) == SegmentInfo("GSM-7", 1, 100)
    assert count_segments("a" * 100 + "ç") == SegmentInfo("UCS-2", 2, 101)


SMS_ALPHABET = st.sampled_from(
    sorted(GSM7_BASIC) + sorted(GSM7_EXTENSION) * 4 + list("ç`—’\t") + ["😀", "🙏", "𝄞"]
)
GSM_ALPHABET = st.sampled_from(sorted(GSM7_BASIC) + sorted(GSM7_EXTENSION) * 8)


@PROPERTY
@given(st.text(SMS_ALPHABET, max_size=400) | st.text(GSM_ALPHABET, max_size=700) | st.text())
def test_matches_the_character_by_character_reference(text: str) -> None:
    assert count_segments(text) == reference_count(text)


@PROPERTY
@given(st.text(GSM_ALPHABET, max_size=700))
def test_gsm_parts_hold_the_septets(text: str) -> None:
    info = count_segments(text)
    assert info.encoding == "GSM-7"
    assert info.units == len(text) + sum(c in GSM7_EXTENSION for c in text)
    if info.segments == 1:
        assert info.units <= 160
    else:
        # Enough parts for the septets, and at most one septet left unused per boundary.
        assert 152 * (info.segments - 1) < info.units <= 153 * info.segments
        assert info.units > 160


@PROPERTY
@given(st.text(min_size=1))
def test_ucs2_units_are_utf16_code_units(text: str) -> None:
    info = count_segments(text)
    if info.encoding == "UCS-2":
        assert info.units == len(text.encode("utf-16-le", "surrogatepass")) // 2
        assert info.segments == 1 or 66 * (info.segments - 1) < info.units <= 67 * info.segments


# --- merge fields ---------------------------------------------------------------------------------


def test_renders_known_fields_and_defaults() -> None:
    fields = {
        "first_name": "Ann",
        "last_name": "Lee",
        "church_name": "Grace",
        "group_name": "Choir",
    }
    template = "Hi {first_name} {last_name}, {church_name} {group_name}: see you {first_name|x}!"
    assert render(template, fields) == "Hi Ann Lee, Grace Choir: see you Ann!"


@pytest.mark.parametrize(
    ("template", "fields", "expected"),
    [
        ("Hi {first_name|friend}", {}, "Hi friend"),
        ("Hi {first_name|friend}", {"first_name": ""}, "Hi friend"),
        ("Hi {first_name|friend}", {"first_name": "  "}, "Hi friend"),
        ("Hi {first_name|dear friend}!", {"first_name": "Bo"}, "Hi Bo!"),
        ("Hi {first_name}!", {}, "Hi !"),
        ("Hi {first_name|}!", {}, "Hi !"),
        ("Hi { first_name | friend }", {}, "Hi friend"),
        ("{nickname} and {nickname|x}", {"nickname": "N"}, "{nickname} and {nickname|x}"),
        ("{First_Name}", {"first_name": "Ann"}, "{First_Name}"),
        ("{", {}, "{"),
        ("}{", {}, "}{"),
        ("{ }", {}, "{ }"),
        ("{first name}", {"first_name": "Ann"}, "{first name}"),
        ("{{first_name}}", {"first_name": "Ann"}, "{Ann}"),
        ("{first_name", {"first_name": "Ann"}, "{first_name"),
        ("{first_name|{x}}", {"first_name": "Ann"}, "{first_name|{x}}"),
        ("{last_name}", {"last_name": "{first_name}"}, "{first_name}"),  # values aren't re-read
        ("{group_name}", {"group_name": "Youth"}, "Youth"),
    ],
)
def test_render_edge_cases(template: str, fields: dict[str, str], expected: str) -> None:
    assert render(template, fields) == expected


def test_find_and_validate_fields() -> None:
    template = "{first_name|friend} {Last} {church_name} {oops} {Last} { } {"
    assert find_fields(template) == {"first_name", "Last", "church_name", "oops"}
    assert validate_template(template) == ["Last", "oops"]
    assert validate_template("Hi {first_name}, welcome to {group_name}!") == []
    assert {"first_name", "last_name", "church_name", "group_name"} == MERGE_FIELDS


@PROPERTY
@given(
    st.text(st.sampled_from("{}|ab _first_name") | st.characters(), max_size=80),
    st.dictionaries(st.sampled_from([*sorted(MERGE_FIELDS), "other"]), st.text(max_size=10)),
)
def test_render_never_fails_and_leaves_brace_free_text_alone(
    template: str, fields: dict[str, str]
) -> None:
    rendered = render(template, fields)
    if "{" not in template:
        assert rendered == template
    if not validate_template(template) and not find_fields(template):
        assert rendered == template
