"""What the church's provider accepts in one text, checked when a send is accepted.

Twilio refuses a body over `twilio.MAX_BODY_CHARS` characters, Telnyx one over
`telnyx.MAX_PARTS` parts (the sandbox speaks Twilio's API, so Twilio's limit). Content is
limited before merge fields are filled, so the check is on the longest text any recipient
would get: the fixed text (church name and defaults filled) plus, for {first_name} and
{last_name}, the longest per-recipient contribution, which SQL computes over the audience in
one aggregate (`MessageRepository.longest_rendering`): a rendered text's characters,
septets and UTF-16 units are sums over its pieces.

Parts are counted from those sums (GSM-7: 160, then 153 per part; UCS-2: 70, then 67). That
ignores only that a part never splits an escape sequence or a surrogate pair, which can cost
one more part at a boundary; the rejection it could miss is a text within a few characters of
the limit, and the message still records its exact segments when sent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from koinonia.kit.errors import ValidationFailed
from koinonia.kit.segments import (
    GSM7_PART,
    GSM7_SINGLE,
    UCS2_PART,
    UCS2_SINGLE,
    count_segments,
    find_fields,
    split_merge_fields,
)
from koinonia.sms import telnyx, twilio

# Merge fields whose value differs per recipient (group_name is not filled for broadcasts).
PER_RECIPIENT = frozenset({"first_name", "last_name"})


@dataclass(frozen=True, slots=True)
class ProviderLimit:
    provider: str
    max_chars: int | None = None
    max_parts: int | None = None


def provider_limit(sms_provider: str) -> ProviderLimit:
    if sms_provider == "telnyx":
        return ProviderLimit("Telnyx", max_parts=telnyx.MAX_PARTS)
    return ProviderLimit("Twilio", max_chars=twilio.MAX_BODY_CHARS)


@dataclass(frozen=True, slots=True)
class Measure:
    """A piece of text measured every way a limit counts it."""

    chars: int
    gsm: bool  # all GSM-7 (else the whole text becomes UCS-2)
    septets: int  # as GSM-7 (meaningful when gsm)
    units: int  # as UCS-2: UTF-16 code units

    @classmethod
    def of(cls, text: str) -> Measure:
        info = count_segments(text)
        if info.encoding == "GSM-7":
            return cls(len(text), True, info.units, len(text))  # GSM-7 is all in the BMP
        return cls(len(text), False, 0, info.units)


@dataclass(frozen=True, slots=True)
class FieldShape:
    """How one per-recipient field adds to the text: `copies` times a non-blank value, or
    for a blank value the defaults of its placeholders (measured as `blank`)."""

    name: str
    copies: int
    blank: Measure


@dataclass(frozen=True, slots=True)
class RenderPlan:
    text: str  # the fixed text: what everyone gets when `fields` is empty
    fixed: Measure
    fields: tuple[FieldShape, ...]


def plan(content: str, church_name: str) -> RenderPlan:
    used = find_fields(content) & PER_RECIPIENT
    fixed, defaults = split_merge_fields(content, {"church_name": church_name}, used)
    shapes = tuple(
        FieldShape(name, len(defaults[name]), Measure.of("".join(defaults[name])))
        for name in sorted(defaults)
    )
    return RenderPlan(fixed, Measure.of(fixed), shapes)


@dataclass(frozen=True, slots=True)
class Longest:
    """Per-recipient contributions of the fields, at their largest over the audience (None
    where no recipient is in that case)."""

    chars: int | None
    gsm_septets: int | None  # among recipients whose names keep the text GSM-7
    ucs2_units: int | None  # among recipients whose names make it UCS-2
    units: int | None  # among all recipients


def _parts(gsm: bool, size: int) -> int:
    single, part = (GSM7_SINGLE, GSM7_PART) if gsm else (UCS2_SINGLE, UCS2_PART)
    return 1 if size <= single else math.ceil(size / part)


def _over(
    limit: ProviderLimit, field: str, who: str, chars: int, worst: tuple[bool, int, int] | None
) -> None:
    """Raise when `chars` characters, or `worst` = (GSM-7?, septets or units, parts), exceed
    the limit, saying which limit and by how much."""
    if limit.max_chars is not None and chars > limit.max_chars:
        raise ValidationFailed.field(
            field,
            f"{who}the text has {chars:,} characters; {limit.provider} accepts at most"
            f" {limit.max_chars:,} ({chars - limit.max_chars:,} too many)",
        )
    if limit.max_parts is not None and worst is not None and worst[2] > limit.max_parts:
        gsm, size, parts = worst
        unit = "septets, GSM-7" if gsm else "UTF-16 units, UCS-2"
        raise ValidationFailed.field(
            field,
            f"{who}the text takes {parts} parts ({size:,} {unit}); {limit.provider} accepts"
            f" at most {limit.max_parts} ({parts - limit.max_parts} too many)",
        )


def check(
    limit: ProviderLimit,
    render: RenderPlan,
    longest: Longest | None,
    *,
    field: str = "content",
    audience: str = "audience",
) -> None:
    """422 on `field` when some recipient's text would exceed the provider's limit.
    `longest` is None when the text has no per-recipient field: everyone gets `render.text`."""
    if longest is None:
        check_text(limit, render.text, field=field)
        return
    fixed = render.fixed
    candidates: list[tuple[bool, int]] = []
    if fixed.gsm:
        if longest.gsm_septets is not None:
            candidates.append((True, fixed.septets + longest.gsm_septets))
        if longest.ucs2_units is not None:
            candidates.append((False, fixed.units + longest.ucs2_units))
    elif longest.units is not None:
        candidates.append((False, fixed.units + longest.units))
    worst = max(((g, n, _parts(g, n)) for g, n in candidates), key=lambda c: c[2], default=None)
    who = f"filled in for the longest names in the {audience}, "
    _over(limit, field, who, fixed.chars + (longest.chars or 0), worst)


def check_shortest(limit: ProviderLimit, render: RenderPlan, *, field: str) -> None:
    """422 on `field` when even the shortest text anyone could get exceeds the limit: the
    fixed text alone, every per-recipient field left empty (a lower bound: a name or a default
    only adds characters, and characters never take parts away). For content with no audience
    yet (a template)."""
    who = "even with every name left empty, " if render.fields else ""
    info = count_segments(render.text)
    worst = (info.encoding == "GSM-7", info.units, info.segments)
    _over(limit, field, who, len(render.text), worst)


def check_content_alone(sms_provider: str, church_name: str, content: str, *, field: str) -> None:
    """`check_shortest` for content with the church's name filled in and no audience: a
    template, a welcome text before its group has members, a schedule about to fire."""
    check_shortest(provider_limit(sms_provider), plan(content, church_name), field=field)


def check_text(limit: ProviderLimit, text: str, *, field: str) -> None:
    """422 on `field` when `text`, sent exactly as it is, exceeds the limit (exact count)."""
    info = count_segments(text)
    _over(limit, field, "", len(text), (info.encoding == "GSM-7", info.units, info.segments))


def check_verbatim(sms_provider: str, text: str, *, field: str) -> None:
    """A text sent exactly as written (a reply): 422 on `field` beyond the provider's limit."""
    check_text(provider_limit(sms_provider), text, field=field)


def exceeded(sms_provider: str, text: str) -> str | None:
    """Why the provider would refuse `text` as it is (None when it fits): what the dispatcher
    records instead of sending a text that grew too long after its checks (a recurring send or
    a welcome reaching a member who joined, or renamed, since)."""
    limit = provider_limit(sms_provider)
    if _fits(limit, text):  # the common case: one len(), for Telnyx one segment count
        return None
    try:
        check_text(limit, text, field="text")
    except ValidationFailed as exc:
        return exc.detail
    return None  # pragma: no cover - _fits and check_text count alike


def _fits(limit: ProviderLimit, text: str) -> bool:
    if limit.max_chars is not None and len(text) > limit.max_chars:
        return False
    return limit.max_parts is None or count_segments(text).segments <= limit.max_parts


def clip(sms_provider: str, text: str) -> str:
    """`text`, or its longest prefix followed by "..." that the provider accepts: for relays,
    which carry a member's words and cannot be refused."""
    limit = provider_limit(sms_provider)
    if _fits(limit, text):
        return text
    low, high = 0, len(text)  # text[:low] + "..." fits; text[:high] + "..." does not
    while high - low > 1:
        middle = (low + high) // 2
        if _fits(limit, text[:middle] + "..."):
            low = middle
        else:
            high = middle
    return text[:low] + "..."
