from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_branch, make_group, make_members, make_tenant
from koinonia.db import observe
from koinonia.members.import_repository import ImportRepository


async def _group(session: AsyncSession, t: Tenant, **kw: Any) -> int:
    return await make_group(session, t.church_id, await make_branch(session, t.church_id), **kw)


def _csv(rows: int, *, start: int = 0) -> bytes:
    lines = ["First Name,Last Name,Phone Number,E-mail,Favourite Hymn"]
    lines += [
        f"Person{i},Test,(303) {300 + (i // 10_000) % 600:03d}-{i % 10_000:04d},p{i}@example.org,x"
        for i in range(start, start + rows)
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


async def _import(
    client: httpx.AsyncClient, t: Tenant, group_id: int, data: bytes, **params: str
) -> httpx.Response:
    return await client.post(
        f"/api/v1/groups/{group_id}/members/import",
        files={"file": ("members.csv", data, "text/csv")},
        params=params,
        headers=t.headers,
    )


async def test_import_report_and_idempotent_reimport(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await _group(session, tenant)
    r = await _import(client, tenant, gid, _csv(25))
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["total_rows"], report["created"], report["added_to_group"]) == (25, 25, 25)
    assert report["rejected"] == 0 and report["errors"] == []
    again = (await _import(client, tenant, gid, _csv(25))).json()
    assert (again["created"], again["already_members"], again["added_to_group"]) == (0, 25, 0)
    assert again["already_in_group"] == 25
    count = await session.execute(
        text("SELECT count(*) FROM members WHERE church_id = :c"), {"c": tenant.church_id}
    )
    assert count.scalar_one() == 25


async def test_bad_rows_reported_good_rows_imported(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await _group(session, tenant)
    data = (
        "\ufeffphone;first_name;surname\n"
        "303-555-0101;José;García\n"
        "\n"
        "not a phone;Bad;Row\n"
        "303-555-0101;Dup;Licate\n"
        ";NoPhone;Here\n"
    ).encode("cp1252", errors="ignore")
    r = await _import(client, tenant, gid, data)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] == 1 and body["rejected"] == 3
    rows = {(e["row"], e["column"]) for e in body["errors"]}
    assert rows == {(4, "phone"), (5, "phone"), (6, "phone")}
    dup = next(e for e in body["errors"] if e["row"] == 5)
    assert "duplicate of row 2" in dup["reason"]
    member = await session.execute(
        text("SELECT first_name, last_name FROM members WHERE church_id = :c"),
        {"c": tenant.church_id},
    )
    assert member.one() == ("José", "García")
    csv_report = await _import(client, tenant, gid, data, report="csv")
    assert csv_report.headers["content-type"].startswith("text/csv")
    assert csv_report.text.splitlines()[0] == "row,column,value,reason,severity"


async def test_existing_opted_out_member_stays_opted_out(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await _group(session, tenant)
    await session.execute(
        text(
            "INSERT INTO members (church_id, first_name, phone, consent)"
            " VALUES (:c, 'Quiet', '+13033000001', 'opted_out')"
        ),
        {"c": tenant.church_id},
    )
    await session.commit()
    body = (await _import(client, tenant, gid, _csv(3))).json()
    assert (body["created"], body["already_members"], body["added_to_group"]) == (2, 1, 3)
    consent = await session.execute(
        text("SELECT consent FROM members WHERE church_id = :c AND phone = '+13033000001'"),
        {"c": tenant.church_id},
    )
    assert consent.scalar_one() == "opted_out"


async def test_file_level_errors(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await _group(session, tenant)
    r = await _import(client, tenant, gid, b"first,last,email\nA,B,a@b.org\n")
    assert r.status_code == 422 and "phone" in r.json()["detail"].lower()
    r = await _import(client, tenant, gid, b"")
    assert r.status_code == 422
    r = await _import(client, tenant, gid, b"\x00\x01\x02PK\x03\x04 binary")
    assert r.status_code == 422
    r = await client.post(f"/api/v1/groups/{gid}/members/import", headers=tenant.headers)
    assert r.status_code == 422 and "file" in r.json()["fields"]


async def test_plan_member_limit(client: httpx.AsyncClient, session: AsyncSession) -> None:
    starter = await make_tenant(session, plan="starter", status="active")  # 500 members
    gid = await _group(session, starter)
    await make_members(session, starter.church_id, 490)
    r = await _import(client, starter, gid, _csv(20))
    assert r.status_code == 402
    body = r.json()
    assert (body["limit"], body["usage"], body["requested"], body["remaining"]) == (
        500,
        490,
        20,
        10,
    )
    count = await session.execute(
        text("SELECT count(*) FROM members WHERE church_id = :c"), {"c": starter.church_id}
    )
    assert count.scalar_one() == 490


async def test_crash_mid_import_leaves_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gid = await _group(session, tenant)
    original = ImportRepository.upsert

    async def upsert_then_crash(self: ImportRepository, *args: Any, **kw: Any) -> Any:
        await original(self, *args, **kw)  # members and memberships written...
        raise RuntimeError("worker died")  # ...then the process fails before commit

    monkeypatch.setattr(ImportRepository, "upsert", upsert_then_crash)
    transport = httpx.ASGITransport(app=client._transport.app, raise_app_exceptions=False)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await _import(c, tenant, gid, _csv(50))
    assert r.status_code == 500
    count = await session.execute(
        text("SELECT count(*) FROM members WHERE church_id = :c"), {"c": tenant.church_id}
    )
    assert count.scalar_one() == 0


async def test_file_error_after_the_first_piece_leaves_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A big file's first piece is upserted while the rest is parsed; a file error found in the
    rest (here an unclosed quote near the end) still imports nothing."""
    upserted: list[int] = []
    original = ImportRepository.upsert

    async def spy(self: ImportRepository, *args: Any, **kw: Any) -> Any:
        result = await original(self, *args, **kw)
        upserted.append(result[0])
        return result

    monkeypatch.setattr(ImportRepository, "upsert", spy)
    gid = await _group(session, tenant)
    data = _csv(200) + b'Late,"Unclosed,(303) 300-9999,late@example.org,x\r\nLast,Row,,,\r\n'
    r = await _import(client, tenant, gid, data)
    assert r.status_code == 422 and "never closed" in r.json()["detail"]
    assert upserted == [30]  # the first piece was written before the error was found
    count = await session.execute(
        text("SELECT count(*) FROM members WHERE church_id = :c"), {"c": tenant.church_id}
    )
    assert count.scalar_one() == 0


async def test_statements_flat_10_vs_10000_rows(
    client: httpx.AsyncClient,
    session: AsyncSession,
    tenant: Tenant,
    count_statements: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    copies = [0]
    timed = observe.timed

    def counting_timed(statement: str, conn: Any) -> Any:  # COPY bypasses the cursor events
        copies[0] += statement.startswith("COPY")
        return timed(statement, conn)

    monkeypatch.setattr(observe, "timed", counting_timed)
    gid = await _group(session, tenant)
    with count_statements() as small:
        r = await _import(client, tenant, gid, _csv(10))
    assert r.json()["created"] == 10
    small_copies, copies[0] = copies[0], 0
    with count_statements() as big:
        r = await _import(client, tenant, gid, _csv(10_000, start=10))
    assert r.json()["created"] == 10_000
    assert small.count + small_copies == big.count + copies[0] <= 10


async def test_a_header_beyond_the_csv_field_limit_is_422(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await _group(session, tenant)
    r = await _import(client, tenant, gid, b"n" * 131_073 + b",phone\nA,+13035550100\n")
    assert r.status_code == 422, r.text
    assert "longer than 131,072 characters" in r.json()["fields"]["header"]
