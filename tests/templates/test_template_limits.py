"""A template has no audience, so only its fixed part is checked: with the church name filled
in and every name left empty it must already fit the church's provider (issue 10)."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import make_tenant

URL = "/api/v1/templates"


async def test_telnyx_refuses_a_template_beyond_10_parts(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    t = await make_tenant(session, sms_provider="telnyx")
    body = {"name": "Long", "category": "event", "content": "x" * 1530}
    r = await client.post(URL, json=body, headers=t.headers)
    assert r.status_code == 201, r.text  # 10 parts of 153 septets
    template = r.json()["id"]
    r = await client.post(
        URL, json={**body, "name": "Longer", "content": "x" * 1531}, headers=t.headers
    )
    assert r.status_code == 422, r.text
    assert "Telnyx accepts at most 10 (1 too many)" in r.json()["fields"]["content"]
    r = await client.patch(f"{URL}/{template}", json={"content": "ā" * 671}, headers=t.headers)
    assert r.status_code == 422, r.text
    assert "11 parts (671 UTF-16 units, UCS-2)" in r.json()["fields"]["content"]


async def test_the_church_name_counts_and_names_count_as_empty(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    t = await make_tenant(session, name="The Church of Grace")  # 19 characters
    over = {"name": "Over", "category": "event", "content": "{church_name}" * 85}
    r = await client.post(URL, json=over, headers=t.headers)
    assert r.status_code == 422, r.text  # 85 × 19 = 1,615 characters whoever gets it
    assert "1,615 characters" in r.json()["fields"]["content"]
    # Names could make it longer, but that depends on who it is sent to (checked then).
    fits = {"name": "Fits", "category": "event", "content": "x" * 1580 + "{first_name|friend}"}
    r = await client.post(URL, json=fits, headers=t.headers)
    assert r.status_code == 201, r.text
