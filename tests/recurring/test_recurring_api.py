from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_branch, make_group, make_members
from koinonia.recurring import service

URL = "/api/v1/recurring"


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Set the instant schedules are computed from."""

    def set_now(now: datetime) -> None:
        monkeypatch.setattr(service, "utcnow", lambda: now)

    return set_now


def body(**over: Any) -> dict[str, Any]:
    return {
        "name": "Sunday reminder",
        "content": "Hi {first_name|friend}, service at 10!",
        "target": {"type": "all"},
        "frequency": "daily",
        "time_of_day": "09:00",
        **over,
    }


async def _post(client: httpx.AsyncClient, t: Tenant, **over: Any) -> httpx.Response:
    return await client.post(URL, json=body(**over), headers=t.headers)


async def test_crud_roundtrip(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    group = await make_group(
        session, tenant.church_id, await make_branch(session, tenant.church_id)
    )
    r = await _post(
        client,
        tenant,
        frequency="weekly",
        day_of_week=6,
        time_of_day="9:05",
        target={"type": "groups", "ids": [group]},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["target"] == {"type": "groups", "ids": [group]}
    assert (created["frequency"], created["day_of_week"], created["day_of_month"]) == (
        "weekly",
        6,
        None,
    )
    assert created["time_of_day"] == "09:05" and created["timezone"] == "America/New_York"
    assert created["is_active"] is True and created["last_sent_at"] is None
    assert created["created_by"] == tenant.admin_id
    next_at = datetime.fromisoformat(created["next_send_at"])
    local = datetime.fromisoformat(created["next_send_local"])
    assert next_at == local and next_at > datetime.now(UTC)
    assert local.weekday() == 6 and (local.hour, local.minute) == (9, 5)
    rid = created["id"]

    got = await client.get(f"{URL}/{rid}", headers=tenant.headers)
    assert got.status_code == 200 and got.json() == created

    # Monthly now: the weekday goes away by itself.
    r = await client.patch(
        f"{URL}/{rid}",
        json={"name": "Monthly", "frequency": "monthly", "day_of_month": 31},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert (patched["name"], patched["day_of_week"], patched["day_of_month"]) == (
        "Monthly",
        None,
        31,
    )
    assert patched["content"] == created["content"]

    r = await client.patch(f"{URL}/{rid}", json={"is_active": False}, headers=tenant.headers)
    assert r.json()["is_active"] is False
    assert r.json()["next_send_at"] is None and r.json()["next_send_local"] is None

    assert (await client.delete(f"{URL}/{rid}", headers=tenant.headers)).status_code == 204
    assert (await client.get(f"{URL}/{rid}", headers=tenant.headers)).status_code == 404
    assert (await client.delete(f"{URL}/{rid}", headers=tenant.headers)).status_code == 404


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"frequency": "weekly"}, "day_of_week"),
        ({"frequency": "weekly", "day_of_week": 7}, "day_of_week"),
        ({"frequency": "daily", "day_of_week": 1}, "day_of_week"),
        ({"frequency": "monthly"}, "day_of_month"),
        ({"frequency": "monthly", "day_of_month": 32}, "day_of_month"),
        ({"frequency": "monthly", "day_of_month": 0}, "day_of_month"),
        ({"frequency": "hourly"}, "frequency"),
        ({"time_of_day": "25:00"}, "time_of_day"),
        ({"time_of_day": "9am"}, "time_of_day"),
        ({"time_of_day": "09:00:00"}, "time_of_day"),
        ({"content": "Hi {nickname}"}, "content"),
        ({"content": ""}, "content"),
        ({"content": "x" * 1601}, "content"),
        ({"name": ""}, "name"),
        ({"target": {"type": "groups"}}, "target"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, tenant: Tenant, over: dict[str, Any], field: str
) -> None:
    r = await _post(client, tenant, **over)
    assert r.status_code == 422, r.text
    assert field in r.json()["fields"], r.json()


async def test_targets_must_be_this_churchs(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    other_group = await make_group(
        session, other_tenant.church_id, await make_branch(session, other_tenant.church_id)
    )
    r = await _post(client, tenant, target={"type": "groups", "ids": [other_group]})
    assert r.status_code == 422 and "target.ids" in r.json()["fields"]
    mine = await _post(client, tenant)
    r = await client.patch(
        f"{URL}/{mine.json()['id']}",
        json={"target": {"type": "groups", "ids": [other_group]}},
        headers=tenant.headers,
    )
    assert r.status_code == 422 and "target.ids" in r.json()["fields"]
    listed = (await client.get(URL, headers=tenant.headers)).json()["items"]
    assert [x["id"] for x in listed] == [mine.json()["id"]]


async def test_patch_validation(client: httpx.AsyncClient, tenant: Tenant) -> None:
    rid = (await _post(client, tenant)).json()["id"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"frequency": "monthly"}, "day_of_month"),
        ({"day_of_week": 2}, "day_of_week"),  # the schedule is daily
        ({"name": None}, "name"),
        ({"is_active": None}, "is_active"),
        ({"time_of_day": "24:00"}, "time_of_day"),
        ({"content": "{pastor}"}, "content"),
    ]
    for patch, field in cases:
        r = await client.patch(f"{URL}/{rid}", json=patch, headers=tenant.headers)
        assert r.status_code == 422 and field in r.json()["fields"], (patch, r.text)
    r = await client.patch(
        f"{URL}/{rid}", json={"frequency": "weekly", "day_of_week": 0}, headers=tenant.headers
    )
    assert r.status_code == 200 and r.json()["day_of_week"] == 0


async def test_auth_and_other_churches(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert (await client.get(URL)).status_code == 401
    assert (await client.post(URL, json=body())).status_code == 401
    rid = (await _post(client, other_tenant)).json()["id"]
    assert (await client.get(f"{URL}/{rid}", headers=tenant.headers)).status_code == 404
    r = await client.patch(f"{URL}/{rid}", json={"name": "Mine"}, headers=tenant.headers)
    assert r.status_code == 404
    assert (await client.delete(f"{URL}/{rid}", headers=tenant.headers)).status_code == 404
    assert (await client.get(URL, headers=tenant.headers)).json()["items"] == []
    assert (await client.get(f"{URL}/{rid}", headers=other_tenant.headers)).status_code == 200


async def test_cursor_pagination_and_active_filter(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ids = [(await _post(client, tenant, name=f"R{i}")).json()["id"] for i in range(5)]
    await client.patch(f"{URL}/{ids[1]}", json={"is_active": False}, headers=tenant.headers)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(URL, params=params, headers=tenant.headers)).json()
        seen += [x["id"] for x in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids and pages == 3
    active = (await client.get(URL, params={"active": True}, headers=tenant.headers)).json()
    assert [x["id"] for x in active["items"]] == [ids[0], *ids[2:]]
    paused = (await client.get(URL, params={"active": False}, headers=tenant.headers)).json()
    assert [x["id"] for x in paused["items"]] == [ids[1]]
    r = await client.get(URL, params={"cursor": "%%%"}, headers=tenant.headers)
    assert r.status_code == 422 and "cursor" in r.json()["fields"]


async def _insert_schedules(session: AsyncSession, church_id: int, n: int) -> None:
    await session.execute(
        text(
            "INSERT INTO recurring_messages (church_id, name, content, target_type, frequency,"
            " time_of_day, next_send_at)"
            " SELECT :c, 'R' || i, 'hi', 'all', 'daily', '09:00', now() + interval '1 day'"
            " FROM generate_series(1, :n) i"
        ),
        {"c": church_id, "n": n},
    )
    await session.commit()


async def test_list_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Any
) -> None:
    await _insert_schedules(session, tenant.church_id, 1)
    with count_statements() as one:
        r = await client.get(URL, headers=tenant.headers)
    assert len(r.json()["items"]) == 1
    await _insert_schedules(session, tenant.church_id, 99)
    with count_statements() as hundred:
        r = await client.get(URL, params={"limit": 200}, headers=tenant.headers)
    assert len(r.json()["items"]) == 100
    assert one.count == hundred.count <= 3


# --- next_send_at in the church's timezone (America/New_York), as the API returns it ----------


@pytest.mark.parametrize(
    ("now", "over", "expected_utc", "expected_local"),
    [
        # The day before spring-forward (EST, -05:00) and the day of it (EDT, -04:00).
        (utc(2026, 3, 6, 15), {}, "2026-03-07T14:00:00Z", "2026-03-07T09:00:00-05:00"),
        (utc(2026, 3, 7, 15), {}, "2026-03-08T13:00:00Z", "2026-03-08T09:00:00-04:00"),
        # 02:30 doesn't exist on 2026-03-08: it fires when the clocks reach 03:00 EDT.
        (
            utc(2026, 3, 7, 12),
            {"time_of_day": "02:30"},
            "2026-03-08T07:00:00Z",
            "2026-03-08T03:00:00-04:00",
        ),
        # Weekly on Sunday across the change.
        (
            utc(2026, 3, 2, 12),
            {"frequency": "weekly", "day_of_week": 6},
            "2026-03-08T13:00:00Z",
            "2026-03-08T09:00:00-04:00",
        ),
        # Fall-back, 2026-11-01: 09:00 is EST again; 01:30 happens twice and fires the first time.
        (utc(2026, 10, 31, 14), {}, "2026-11-01T14:00:00Z", "2026-11-01T09:00:00-05:00"),
        (
            utc(2026, 10, 31, 14),
            {"time_of_day": "01:30"},
            "2026-11-01T05:30:00Z",
            "2026-11-01T01:30:00-04:00",
        ),
        # Monthly on the 31st: February's last day, then April's.
        (
            utc(2026, 2, 1),
            {"frequency": "monthly", "day_of_month": 31, "time_of_day": "10:00"},
            "2026-02-28T15:00:00Z",
            "2026-02-28T10:00:00-05:00",
        ),
        (
            utc(2026, 4, 1, 12),
            {"frequency": "monthly", "day_of_month": 31, "time_of_day": "10:00"},
            "2026-04-30T14:00:00Z",
            "2026-04-30T10:00:00-04:00",
        ),
        # The 31st itself once it comes round; past today's time, so the next month's.
        (
            utc(2026, 1, 31, 16),
            {"frequency": "monthly", "day_of_month": 31, "time_of_day": "10:00"},
            "2026-02-28T15:00:00Z",
            "2026-02-28T10:00:00-05:00",
        ),
    ],
)
async def test_next_send_at_dst_and_month_end(
    client: httpx.AsyncClient,
    tenant: Tenant,
    clock: Callable[[datetime], None],
    now: datetime,
    over: dict[str, Any],
    expected_utc: str,
    expected_local: str,
) -> None:
    clock(now)
    r = await _post(client, tenant, **over)
    assert r.status_code == 201, r.text
    assert (r.json()["next_send_at"], r.json()["next_send_local"]) == (
        expected_utc,
        expected_local,
    )


async def test_changes_recompute_from_now_and_resume_skips_missed(
    client: httpx.AsyncClient, tenant: Tenant, clock: Callable[[datetime], None]
) -> None:
    clock(utc(2026, 3, 1, 12))
    rid = (await _post(client, tenant)).json()["id"]
    r = await client.patch(f"{URL}/{rid}", json={"is_active": False}, headers=tenant.headers)
    assert r.json()["next_send_at"] is None
    # Ten days pass while paused; resuming schedules the next occurrence after now, not the
    # ten that were missed.
    clock(utc(2026, 3, 11, 16))
    r = await client.patch(f"{URL}/{rid}", json={"is_active": True}, headers=tenant.headers)
    assert r.json()["next_send_at"] == "2026-03-12T13:00:00Z"
    # Any change recomputes: a new time of day on the same day.
    clock(utc(2026, 3, 12, 12))
    r = await client.patch(f"{URL}/{rid}", json={"time_of_day": "20:15"}, headers=tenant.headers)
    assert r.json()["next_send_local"] == "2026-03-12T20:15:00-04:00"


async def test_church_timezone_is_used(
    client: httpx.AsyncClient,
    session: AsyncSession,
    tenant: Tenant,
    clock: Callable[[datetime], None],
) -> None:
    await session.execute(
        text("UPDATE churches SET timezone = 'Europe/London' WHERE id = :c"),
        {"c": tenant.church_id},
    )
    await session.commit()
    clock(utc(2026, 3, 28, 12))  # London springs forward on 2026-03-29
    r = await _post(client, tenant)
    assert r.json()["timezone"] == "Europe/London"
    assert r.json()["next_send_local"] == "2026-03-29T09:00:00+01:00"
    assert r.json()["next_send_at"] == "2026-03-29T08:00:00Z"


async def test_reschedule_church_after_timezone_change(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    rid = (await _post(client, tenant)).json()["id"]
    await session.execute(
        text("UPDATE churches SET timezone = 'Asia/Tokyo' WHERE id = :c"), {"c": tenant.church_id}
    )
    assert await service.reschedule_church(session, tenant.church_id, "Asia/Tokyo") == 1
    await session.commit()
    r = (await client.get(f"{URL}/{rid}", headers=tenant.headers)).json()
    local = datetime.fromisoformat(r["next_send_local"])
    assert local.utcoffset() == timedelta(hours=9) and (local.hour, local.minute) == (9, 0)


async def test_members_target_ids_are_checked(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    members = await make_members(session, tenant.church_id, 2)
    r = await _post(client, tenant, target={"type": "members", "ids": [members[1], members[0]]})
    assert r.status_code == 201 and r.json()["target"]["ids"] == sorted(members)
    r = await _post(client, tenant, target={"type": "members", "ids": [members[0], 2**62]})
    assert r.status_code == 422 and str(2**62) in r.json()["fields"]["target.ids"]


async def test_changing_the_church_timezone_reschedules_its_recurring_messages(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    rid = (await _post(client, tenant)).json()["id"]
    r = await client.patch(
        "/api/v1/church", json={"timezone": "Asia/Tokyo"}, headers=tenant.headers
    )
    assert r.status_code == 200, r.text
    r = (await client.get(f"{URL}/{rid}", headers=tenant.headers)).json()
    local = datetime.fromisoformat(r["next_send_local"])
    assert local.utcoffset() == timedelta(hours=9) and (local.hour, local.minute) == (9, 0)
