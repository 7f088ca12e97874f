"""Keyword classification (SPEC §4.3): one word from the lists, any case, trimmed."""

from __future__ import annotations

import pytest

from koinonia.conversations.keywords import KEYWORDS, Keyword, classify


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", Keyword.STOP),
        ("stop", Keyword.STOP),
        ("stop.", Keyword.STOP),
        (" Stop ", Keyword.STOP),
        ("STOP!", Keyword.STOP),
        ("\n\tsToP!!!\n", Keyword.STOP),
        ('"stop"', Keyword.STOP),
        ("¡Stop!", Keyword.STOP),
        ("ＳＴＯＰ", Keyword.STOP),  # full-width letters (NFKC)
        ("STOPALL", Keyword.STOP),
        ("Unsubscribe", Keyword.STOP),
        ("cancel", Keyword.STOP),
        ("End.", Keyword.STOP),
        ("quit", Keyword.STOP),
        ("revoke", Keyword.STOP),
        ("optout", Keyword.STOP),
        ("start", Keyword.START),
        ("Yes!", Keyword.START),
        ("UNSTOP", Keyword.START),
        ("HELP", Keyword.HELP),
        ("info?", Keyword.HELP),
    ],
)
def test_keywords_match(body: str, expected: Keyword) -> None:
    assert classify(body) is expected


@pytest.mark.parametrize(
    "body",
    [
        "stop texting me",
        "please stop",
        "STOP STOP",
        "st op",
        "s.t.o.p",
        "stopp",
        "opt out",
        "yes please",
        "help me move chairs on Sunday",
        "",
        "   ",
        "!!!",
        "stop 🛑",
        "x" * 5000,
    ],
)
def test_chat_is_not_a_keyword(body: str) -> None:
    assert classify(body) is None


def test_every_listed_word_is_recognised() -> None:
    for keyword, words in KEYWORDS.items():
        for word in words:
            assert classify(word.lower()) is keyword
            assert classify(f" {word.title()}. ") is keyword
