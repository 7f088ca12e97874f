"""Carrier keywords (SPEC §4.3): an inbound text that is one of these words, alone, is a command
about consent, not a chat message.

Matching is deliberately narrow, so people's ordinary words stay chat: the whole text must be
one word from a list, in any case, with surrounding whitespace and punctuation ignored ("stop.",
" Stop ", "STOP!", "¡Stop!"); "stop texting me" and "please stop" are chat. Compatibility forms
are folded first (NFKC), so full-width letters from some keyboards match too.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum


class Keyword(StrEnum):
    STOP = "stop"  # opt out of every text from this church
    START = "start"  # opt back in
    HELP = "help"  # who is texting and how to stop


KEYWORDS: dict[Keyword, frozenset[str]] = {
    Keyword.STOP: frozenset(
        {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
    ),
    Keyword.START: frozenset({"START", "YES", "UNSTOP"}),
    Keyword.HELP: frozenset({"HELP", "INFO"}),
}
_BY_WORD: dict[str, Keyword] = {word: kw for kw, words in KEYWORDS.items() for word in words}
_LONGEST = max(map(len, _BY_WORD))


def _is_trimmed(ch: str) -> bool:
    # Whitespace, and every Unicode punctuation category (P*): ".", "!", "¡", "…", quotes.
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def classify(body: str) -> Keyword | None:
    """The keyword `body` is, or None when it is a chat message."""
    if len(body) > 64:  # a keyword with any plausible padding is far shorter; skip the work
        return None
    text = unicodedata.normalize("NFKC", body)
    start, end = 0, len(text)
    while start < end and _is_trimmed(text[start]):
        start += 1
    while end > start and _is_trimmed(text[end - 1]):
        end -= 1
    word = text[start:end]
    if not word or len(word) > _LONGEST:
        return None
    return _BY_WORD.get(word.upper())
