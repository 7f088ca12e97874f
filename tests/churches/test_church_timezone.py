"""A church's timezone: only canonical IANA names that both zoneinfo and PostgreSQL know.

`right/...`, `posix/...`, `localtime` and `posixrules` opened in zoneinfo but not in the
embedded PostgreSQL: a church saved with one answered 500 on its stats and on every inbound
text (a STOP never applied)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Text

from conversations.support import church_number, member_consent, member_phone, text_in
from fixtures.factories import Tenant, make_members
from koinonia.conversations.inbound import InboundResult
from koinonia.conversations.keywords import Keyword
from koinonia.kit.schemas import canonical_timezones

NOT_CANONICAL = [
    "right/America/New_York",
    "posix/America/New_York",
    "posix/UTC",
    "localtime",
    "posixrules",
    "Factory",
]
REGISTER = {
    "church_name": "St. Zone",
    "email": "zone@example.org",
    "password": "a-long-enough-password",
    "first_name": "Zoe",
}


@pytest.mark.parametrize("name", NOT_CANONICAL)
async def test_patch_refuses_a_name_that_is_no_canonical_zone(
    client: httpx.AsyncClient, tenant: Tenant, name: str
) -> None:
    r = await client.patch("/api/v1/church", json={"timezone": name}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert set(r.json()["fields"]) == {"timezone"}
    for path in ("/api/v1/stats/messages", "/api/v1/stats/branches"):
        assert (await client.get(path, headers=tenant.headers)).status_code == 200


@pytest.mark.parametrize("name", NOT_CANONICAL)
async def test_registration_refuses_a_name_that_is_no_canonical_zone(
    client: httpx.AsyncClient, name: str
) -> None:
    r = await client.post("/api/v1/auth/register", json={**REGISTER, "timezone": name})
    assert r.status_code == 422, r.text
    assert set(r.json()["fields"]) == {"timezone"}


@pytest.mark.parametrize("name", ["Etc/UTC", "UTC", "America/Argentina/Buenos_Aires", "EST5EDT"])
async def test_canonical_names_are_accepted(
    client: httpx.AsyncClient, tenant: Tenant, name: str
) -> None:
    r = await client.patch("/api/v1/church", json={"timezone": name}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json()["timezone"] == name
    assert (await client.get("/api/v1/stats/messages", headers=tenant.headers)).status_code == 200


async def test_every_accepted_name_is_a_zone_postgresql_knows(session: AsyncSession) -> None:
    names = sorted(canonical_timezones())
    assert "America/New_York" in names and len(names) > 400
    params = {"names": names}
    unknown = (
        await session.execute(
            text(
                "SELECT n FROM unnest(:names) AS n"
                " WHERE n NOT IN (SELECT name FROM pg_timezone_names)"
                " OR NOT koinonia_is_timezone(n)"
            ).bindparams(bindparam("names", type_=ARRAY(Text))),
            params,
        )
    ).scalars()
    assert list(unknown) == []


async def test_the_database_refuses_to_store_what_the_api_refuses(
    session: AsyncSession, tenant: Tenant
) -> None:
    refused = (
        await session.execute(
            text("SELECT n FROM unnest(:names) AS n WHERE NOT koinonia_is_timezone(n)").bindparams(
                bindparam("names", type_=ARRAY(Text))
            ),
            {"names": [*NOT_CANONICAL, "Nowhere/City"]},
        )
    ).scalars()
    assert sorted(refused) == sorted([*NOT_CANONICAL, "Nowhere/City"])
    with pytest.raises(IntegrityError, match="ck_churches_timezone"):
        await session.execute(
            text("UPDATE churches SET timezone = 'right/America/New_York' WHERE id = :c"),
            {"c": tenant.church_id},
        )
    await session.rollback()


async def test_a_stop_is_applied_even_if_the_stored_zone_were_unusable(
    session: AsyncSession, tenant: Tenant
) -> None:
    # The CHECK keeps such a name out; inbound handling must not depend on it all the same.
    # (Dropped inside the test's transaction, which is rolled back.)
    number = await church_number(session, tenant.church_id)
    (alice,) = await make_members(session, tenant.church_id, 1)
    phone = await member_phone(session, alice)
    await session.execute(text("ALTER TABLE churches DROP CONSTRAINT ck_churches_timezone"))
    await session.execute(
        text("UPDATE churches SET timezone = 'Nowhere/City' WHERE id = :c"),
        {"c": tenant.church_id},
    )
    out = await text_in(session, to=number, sender=phone, body="STOP")
    assert out.outcome is InboundResult.KEYWORD and out.keyword is Keyword.STOP
    assert out.consent_changed and out.reply_message_id is not None
    assert (await member_consent(session, alice)).consent == "opted_out"
    unknown = await text_in(session, to=number, sender="+12025550143", body="hello")
    assert unknown.outcome is InboundResult.UNKNOWN_SENDER
    assert unknown.reply_message_id is not None
