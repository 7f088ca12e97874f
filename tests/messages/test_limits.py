"""The provider's limit on one text, applied to the text as filled in for each recipient
(issue 10: a text accepted with 202 then failed at the carrier)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_members, make_tenant
from koinonia.conversations.inbound import relay_text
from koinonia.kit.errors import ValidationFailed
from koinonia.kit.segments import count_segments, render
from koinonia.messages import limits


def test_plan_splits_fixed_text_from_per_recipient_fields() -> None:
    render_plan = limits.plan("Hi {first_name|friend} {last_name}! {church_name} {x}", "Grace")
    assert render_plan.fixed == limits.Measure.of("Hi  ! Grace {x}")
    assert [(f.name, f.copies, f.blank.chars) for f in render_plan.fields] == [
        ("first_name", 1, 6),
        ("last_name", 1, 0),
    ]
    assert limits.plan("Hello {church_name}", "Grace").fields == ()


@pytest.mark.parametrize(
    ("provider", "body", "fits"),
    [
        ("twilio", "x" * 1600, True),
        ("twilio", "x" * 1601, False),
        ("sandbox", "x" * 1601, False),
        ("telnyx", "x" * 1530, True),  # 10 parts of 153
        ("telnyx", "x" * 1531, False),
        ("telnyx", "ā" * 670, True),  # 10 parts of 67
        ("telnyx", "ā" * 671, False),
        ("telnyx", "x" * 1600, False),  # within Twilio's, not within Telnyx's
    ],
)
def test_a_verbatim_text_against_each_provider(provider: str, body: str, fits: bool) -> None:
    if fits:
        limits.check_verbatim(provider, body, field="body")
        return
    with pytest.raises(ValidationFailed) as caught:
        limits.check_verbatim(provider, body, field="body")
    reason = caught.value.fields["body"]
    assert ("Telnyx accepts at most 10" if provider == "telnyx" else "at most 1,600") in reason
    assert "1 too many" in reason or "(71 too many)" in reason


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("twilio", "x" * 1600),
        ("twilio", "ā" * 1600),
        ("telnyx", "x" * 1600),
        ("telnyx", "ā" * 1600),
        ("telnyx", "x" * 1000 + "😀" * 300),
        ("telnyx", "€" * 900),
    ],
)
def test_a_relay_is_cut_to_what_the_provider_takes(provider: str, body: str) -> None:
    relay = relay_text("Ann", body, provider)
    assert relay.startswith("Ann: ") and relay.endswith("...")
    limits.check_verbatim(provider, relay, field="body")  # fits
    # and it is the longest prefix that fits
    full = "Ann: " + body
    longer = relay[:-3] + full[len(relay) - 3] + "..."
    with pytest.raises(ValidationFailed):
        limits.check_verbatim(provider, longer, field="body")


def test_a_short_relay_is_untouched() -> None:
    assert relay_text("Ann", "Amen {first_name}", "telnyx") == "Ann: Amen {first_name}"


# --- POST /messages ---------------------------------------------------------------------------


async def _post(client: httpx.AsyncClient, t: Tenant, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/v1/messages", json=body, headers=t.headers)


async def _member(
    session: AsyncSession, t: Tenant, first: str, last: str = "", consent: str = "opted_in"
) -> None:
    [mid] = await make_members(session, t.church_id, 1, consent=consent)
    await session.execute(
        text("UPDATE members SET first_name = :f, last_name = :l WHERE id = :m"),
        {"f": first, "l": last, "m": mid},
    )
    await session.commit()


async def test_twilio_rejects_a_text_too_long_once_names_are_filled(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await make_members(session, tenant.church_id, 5)  # "Member0".."Member4": 7 characters
    content = "x" * 1585 + " {first_name}"  # 1,586 + name
    ok = await _post(
        client, tenant, {"content": content, "target": {"type": "all"}, "dry_run": True}
    )
    assert ok.status_code == 200, ok.text  # 1,593 characters: fits
    await _member(session, tenant, "Bartholomew-Alexander")  # 21 characters: 1,607
    await _member(session, tenant, "Maximiliana-Josephine-Augusta", consent="opted_out")
    for dry_run in (False, True):
        r = await _post(
            client, tenant, {"content": content, "target": {"type": "all"}, "dry_run": dry_run}
        )
        assert r.status_code == 422, r.text
        reason = r.json()["fields"]["content"]
        assert (
            "1,607 characters" in reason and "Twilio accepts at most 1,600 (7 too many)" in reason
        )
    history = (await client.get("/api/v1/messages", headers=tenant.headers)).json()
    assert history["items"] == []


async def test_the_default_of_a_blank_name_and_the_church_name_count(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    name = "The First Congregational Church of Greater Springfield"  # 54 characters
    t = await make_tenant(session, name=name)
    content = "{church_name} " + "x" * 1540 + "{last_name|our dear friend}"
    await _member(session, t, "Al", last="Li")  # 54 + 1 + 1,540 + 2: fits
    r = await _post(client, t, {"content": content, "target": {"type": "all"}, "dry_run": True})
    assert r.status_code == 200, r.text
    await _member(session, t, "Al", last=" ")  # blank: the 15-character default, 1,610
    r = await _post(client, t, {"content": content, "target": {"type": "all"}})
    assert r.status_code == 422, r.text
    assert "1,610 characters" in r.json()["fields"]["content"]
    assert "(10 too many)" in r.json()["fields"]["content"]


async def test_telnyx_counts_parts_per_recipient_encoding(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    t = await make_tenant(session, sms_provider="telnyx")
    await _member(session, t, "Ann", "Lee")
    # 1,500 GSM-7 characters + a 3-letter name: 1,503 septets, 10 parts.
    gsm = "x" * 1500 + "{first_name}"
    assert (await _post(client, t, {"content": gsm, "target": {"type": "all"}})).status_code == 202
    # 600 + name: 603 septets as GSM-7 (4 parts), but a name outside GSM-7 makes the text UCS-2.
    ucs = "x" * 600 + "{last_name}"
    assert (await _post(client, t, {"content": ucs, "target": {"type": "all"}})).status_code == 202
    await _member(session, t, "Bo", "Zoë" + "e" * 70)  # 73 characters, not GSM-7: 673 units
    r = await _post(client, t, {"content": ucs, "target": {"type": "all"}})
    assert r.status_code == 422, r.text
    reason = r.json()["fields"]["content"]
    assert "11 parts (673 UTF-16 units, UCS-2)" in reason
    assert "Telnyx accepts at most 10 (1 too many)" in reason
    # Two long names of two people are not added up: Ann Lee's text stays GSM-7 and short.
    r = await _post(client, t, {"content": gsm, "target": {"type": "all"}})
    assert r.status_code == 202, r.text
    # An emoji counts two UTF-16 units.
    await _member(session, t, "😀" * 40)
    emoji = "ā" * 600 + "{first_name}"  # 600 + 80 units: 11 parts
    r = await _post(client, t, {"content": emoji, "target": {"type": "all"}, "dry_run": True})
    assert r.status_code == 422 and "680 UTF-16 units" in r.json()["fields"]["content"]


async def test_the_check_matches_what_the_dispatcher_renders(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """Just within and just beyond Telnyx's 10 parts with an extension character in a name
    (2 septets), checked against render + count_segments of the actual longest recipient."""
    t = await make_tenant(session, sms_provider="telnyx")
    content = "y" * 1520 + "{first_name}"
    for name, fits in [("Jonathan[]", False), ("Jonathan^", True), ("Jonathan€€", False)]:
        await session.execute(text("DELETE FROM members WHERE church_id = :c"), {"c": t.church_id})
        await session.commit()
        await _member(session, t, name)
        rendered = render(content, {"first_name": name, "last_name": "", "church_name": ""})
        assert (count_segments(rendered).segments <= 10) is fits
        r = await _post(client, t, {"content": content, "target": {"type": "all"}, "dry_run": True})
        assert r.status_code == (200 if fits else 422), (name, r.text)


async def test_statements_flat_with_merge_fields(
    client: httpx.AsyncClient, session: AsyncSession, count_statements: Any
) -> None:
    for provider in ("sandbox", "telnyx"):
        t = await make_tenant(session, sms_provider=provider)
        body = {"content": "Hi {first_name} {last_name|}", "target": {"type": "all"}}
        await make_members(session, t.church_id, 10)
        with count_statements() as ten:
            assert (await _post(client, t, body)).status_code == 202
        await make_members(session, t.church_id, 990)
        with count_statements() as thousand:
            assert (await _post(client, t, body)).status_code == 202
        assert ten.count == thousand.count <= 5, (provider, ten.statements)
        with count_statements() as dry:
            assert (await _post(client, t, {**body, "dry_run": True})).status_code == 200
        assert dry.count <= 6


async def test_a_reply_beyond_telnyx_parts_is_422_on_body(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    from conversations.support import church_number, member_phone, text_in

    t = await make_tenant(session, sms_provider="telnyx")
    [member] = await make_members(session, t.church_id, 1)
    to, sender = await church_number(session, t.church_id), await member_phone(session, member)
    conversation = (await text_in(session, to=to, sender=sender, body="hi")).conversation_id
    url = f"/api/v1/conversations/{conversation}/reply"
    # Group chat (the default) sends "{church name}: {body}": within 1,600 characters, but
    # beyond Telnyx's 1,530 GSM-7 characters (10 parts).
    r = await client.post(url, json={"body": "x" * 1560}, headers=t.headers)
    assert r.status_code == 422, r.text
    assert "11 parts" in r.json()["fields"]["body"]
    r = await client.post(url, json={"body": "x" * 1500}, headers=t.headers)
    assert r.status_code in (201, 202), r.text
