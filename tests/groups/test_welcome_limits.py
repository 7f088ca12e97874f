"""A group's welcome text, {group_name} filled in, must fit the church's provider for the
group's members: checked when the group is created and when its welcome text, name or
switch changes (issue 10: such a welcome was accepted and failed at the carrier)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import (
    Tenant,
    make_branch,
    make_group,
    make_members,
    make_tenant,
    rename_member,
)

URL = "/api/v1/groups"
REPEATED = "{group_name}" * 36  # 432 characters, within the 480 a welcome text may have
# UCS-2 (ā): 300 units + the group name + the first name; Telnyx takes 10 parts = 670 units.
UCS2 = "ā" * 300 + "{group_name}{first_name}"


async def test_create_is_422_when_the_group_name_makes_the_welcome_too_long(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    branch = await make_branch(session, tenant.church_id)
    group = {"branch_id": branch, "welcome_enabled": True, "welcome_text": REPEATED}
    r = await client.post(URL, json={**group, "name": "N" * 45}, headers=tenant.headers)
    assert r.status_code == 422, r.text  # 36 × 45 = 1,620 characters
    reason = r.json()["fields"]["welcome_text"]
    assert "1,620 characters" in reason and "(20 too many)" in reason
    r = await client.post(URL, json={**group, "name": "N" * 44}, headers=tenant.headers)
    assert r.status_code == 201, r.text  # 1,584


async def test_patch_checks_the_welcome_against_the_members_names(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    t = await make_tenant(session, sms_provider="telnyx")
    gid = await make_group(session, t.church_id, await make_branch(session, t.church_id), "ā" * 200)
    [member] = await make_members(session, t.church_id, 1, group_id=gid)
    url = f"{URL}/{gid}"
    r = await client.patch(url, json={"welcome_text": UCS2}, headers=t.headers)
    assert r.status_code == 200, r.text  # 300 + 200 + "Member0": 507 units, 8 parts
    await rename_member(session, member, "😀" * 90)  # 180 UTF-16 units: 680, 11 parts
    r = await client.patch(url, json={"welcome_text": UCS2 + "!"}, headers=t.headers)
    assert r.status_code == 422, r.text
    reason = r.json()["fields"]["welcome_text"]
    assert "longest names in the group" in reason
    assert "11 parts (681 UTF-16 units, UCS-2)" in reason and "(1 too many)" in reason
    assert (await client.get(url, headers=t.headers)).json()["welcome_text"] == UCS2


async def test_a_rename_is_checked_while_welcomes_are_on(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    branch = await make_branch(session, tenant.church_id)
    gid = await make_group(session, tenant.church_id, branch, "N" * 40, welcome_text=REPEATED)
    url = f"{URL}/{gid}"
    # Welcomes off: the stored text is not sent, a rename is not refused for it.
    r = await client.patch(url, json={"name": "M" * 45}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    # Switching them on with that name would send 1,620 characters.
    r = await client.patch(url, json={"welcome_enabled": True}, headers=tenant.headers)
    assert r.status_code == 422 and "(20 too many)" in r.json()["fields"]["welcome_text"]
    r = await client.patch(
        url, json={"welcome_enabled": True, "name": "M" * 44}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    r = await client.patch(url, json={"name": "L" * 45}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert (await client.get(url, headers=tenant.headers)).json()["name"] == "M" * 44


async def test_welcome_patch_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Any
) -> None:
    gid = await make_group(session, tenant.church_id, await make_branch(session, tenant.church_id))
    url = f"{URL}/{gid}"
    change = {"welcome_text": "Hi {first_name}, welcome to {group_name}!"}
    await make_members(session, tenant.church_id, 10, group_id=gid)
    with count_statements() as ten:
        assert (await client.patch(url, json=change, headers=tenant.headers)).status_code == 200
    await make_members(session, tenant.church_id, 990, group_id=gid)
    with count_statements() as thousand:
        assert (await client.patch(url, json=change, headers=tenant.headers)).status_code == 200
    assert ten.count == thousand.count <= 6, ten.statements
