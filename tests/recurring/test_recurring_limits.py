"""A recurring message filled in for its audience must fit the church's provider, checked when
it is created and whenever its content or target changes (issue 10: such a text was accepted
and then failed at the carrier at every firing)."""

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

URL = "/api/v1/recurring"
LONG = "x" * 1585 + " {first_name}"  # 1,586 characters + the first name


def body(**over: Any) -> dict[str, Any]:
    return {
        "name": "Weekly",
        "content": "Hi {first_name|friend}!",
        "target": {"type": "all"},
        "frequency": "daily",
        "time_of_day": "09:00",
        **over,
    }


async def test_create_is_422_when_a_name_in_the_audience_makes_it_too_long(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    [short, long_] = await make_members(session, tenant.church_id, 2)  # "Member0", "Member1"
    r = await client.post(URL, json=body(content=LONG), headers=tenant.headers)
    assert r.status_code == 201, r.text  # 1,593 characters
    await rename_member(session, long_, "Bartholomew-Alexander")  # 1,607
    r = await client.post(URL, json=body(content=LONG), headers=tenant.headers)
    assert r.status_code == 422, r.text
    reason = r.json()["fields"]["content"]
    assert "1,607 characters" in reason and "Twilio accepts at most 1,600 (7 too many)" in reason
    # Only the target counts: a target without the long name is fine.
    target = {"type": "members", "ids": [short]}
    r = await client.post(URL, json=body(content=LONG, target=target), headers=tenant.headers)
    assert r.status_code == 201, r.text


async def test_telnyx_parts_are_checked_at_create(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    t = await make_tenant(session, sms_provider="telnyx")
    [mid] = await make_members(session, t.church_id, 1)
    await rename_member(session, mid, "Zoë" + "e" * 70)  # not GSM-7: the text becomes UCS-2
    r = await client.post(URL, json=body(content="x" * 600 + "{first_name}"), headers=t.headers)
    assert r.status_code == 422, r.text
    assert "Telnyx accepts at most 10 (1 too many)" in r.json()["fields"]["content"]


async def test_an_empty_audience_still_refuses_a_text_nobody_could_get(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    t = await make_tenant(session, name="The Church of Grace")  # 19 characters
    gid = await make_group(session, t.church_id, await make_branch(session, t.church_id))
    target = {"type": "groups", "ids": [gid]}  # nobody in it yet
    content = "{church_name}" * 100 + "{first_name}"  # 1,900 characters with no name at all
    r = await client.post(URL, json=body(content=content, target=target), headers=t.headers)
    assert r.status_code == 422, r.text
    reason = r.json()["fields"]["content"]
    assert "even with every name left empty" in reason and "(300 too many)" in reason
    r = await client.post(URL, json=body(content=LONG, target=target), headers=t.headers)
    assert r.status_code == 201, r.text


async def test_patch_checks_new_content_and_new_target(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    branch = await make_branch(session, tenant.church_id)
    small, big = (
        await make_group(session, tenant.church_id, branch),
        await make_group(session, tenant.church_id, branch),
    )
    await make_members(session, tenant.church_id, 2, group_id=small)
    [long_] = await make_members(session, tenant.church_id, 1, group_id=big)
    await rename_member(session, long_, "Bartholomew-Alexander")
    target = {"type": "groups", "ids": [small]}
    created = await client.post(URL, json=body(target=target), headers=tenant.headers)
    assert created.status_code == 201, created.text
    url = f"{URL}/{created.json()['id']}"

    r = await client.patch(url, json={"content": LONG}, headers=tenant.headers)
    assert r.status_code == 200, r.text  # fits the small group
    r = await client.patch(
        url, json={"target": {"type": "groups", "ids": [big]}}, headers=tenant.headers
    )
    assert r.status_code == 422, r.text
    assert "(7 too many)" in r.json()["fields"]["content"]
    r = await client.patch(url, json={"content": "x" * 1601}, headers=tenant.headers)
    assert r.status_code == 422, r.text
    # An edit that changes neither is not refused, and the stored schedule is unchanged.
    r = await client.patch(url, json={"name": "Renamed"}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["content"] == LONG
    assert r.json()["target"] == target


async def test_create_statements_flat_with_merge_fields(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Any
) -> None:
    await make_members(session, tenant.church_id, 10)
    with count_statements() as ten:
        assert (await client.post(URL, json=body(), headers=tenant.headers)).status_code == 201
    await make_members(session, tenant.church_id, 990)
    with count_statements() as thousand:
        assert (await client.post(URL, json=body(), headers=tenant.headers)).status_code == 201
    assert ten.count == thousand.count <= 5, ten.statements
