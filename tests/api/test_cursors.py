"""Every cursor-paginated list validates its cursor completely, with one decoder
(kit/pagination.CursorSpec): a cursor that is not exactly one this list issued for this query is
a 422 on `cursor`, never a 500 and never a silently misread page (issue 10)."""

from __future__ import annotations

import base64
import string
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from conversations.support import church_number, member_phone, text_in
from fixtures.factories import Tenant, make_branch, make_group, make_members
from koinonia.conversations.service import CONVERSATIONS_CURSOR, THREAD_CURSOR
from koinonia.kit.errors import ValidationFailed
from koinonia.kit.pagination import ID, CursorSpec, TextField
from koinonia.members.service import MEMBERS_CURSOR, search_cursor
from koinonia.messages.service import MESSAGES_CURSOR, RECIPIENTS_CURSOR

API = "/api/v1"
MALFORMED = {"cursor": "malformed cursor"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _tag(spec: CursorSpec, query: str = "") -> int:
    """The tag a cursor of `spec` carries: the first element of an issued cursor."""
    raw = base64.urlsafe_b64decode(spec.encode([], query=query) + "==")
    return int(orjson.loads(raw)[0])


def _raw(spec: CursorSpec, *key: Any, query: str = "") -> str:
    """A cursor tagged for `spec` holding exactly `key` (bypassing the encoder's typing)."""
    return _b64(orjson.dumps([_tag(spec, query), *key]))


# --- the decoder ----------------------------------------------------------------------------


def test_a_cursor_round_trips_through_its_spec() -> None:
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert MESSAGES_CURSOR.decode(MESSAGES_CURSOR.encode([at, 7])) == (at, 7)
    q = "garcia jo"
    spec = search_cursor(q)
    assert spec.decode(spec.encode([3, "garcia jose", 2**63 - 1], query=q), query=q) == (
        3,
        "garcia jose",
        2**63 - 1,
    )


@pytest.mark.parametrize(
    ("spec", "cursor"),
    [
        # wrong arity, wrong types, out of range
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR)),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, 1, 2)),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, "1")),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, 1.0)),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, True)),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, None)),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, 0)),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, -1)),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, 2**63)),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, 2**64 - 1)),
        # not canonical: a trailing NUL, whitespace, padding, stray characters
        (MEMBERS_CURSOR, _b64(orjson.dumps([_tag(MEMBERS_CURSOR), 5]) + b"\x00")),
        (MEMBERS_CURSOR, _b64(b"[%d, 5]" % _tag(MEMBERS_CURSOR))),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, 5) + "="),
        (MEMBERS_CURSOR, _raw(MEMBERS_CURSOR, 5) + "\x00"),
        (MEMBERS_CURSOR, "!" + _raw(MEMBERS_CURSOR, 5)),
        (MEMBERS_CURSOR, "é"),
        # a cursor of another list, or without a tag (the format before the tag)
        (MEMBERS_CURSOR, _raw(CursorSpec("templates", (ID,)), 5)),
        (MEMBERS_CURSOR, _b64(b"[5]")),
        # times: naive, non-canonical (a NUL or another separator), beyond UTC
        (MESSAGES_CURSOR, _raw(MESSAGES_CURSOR, "2026-01-01T00:00:00", 1)),
        (MESSAGES_CURSOR, _raw(MESSAGES_CURSOR, "2026-01-01T00:00:00+00:00\x00", 1)),
        (MESSAGES_CURSOR, _raw(MESSAGES_CURSOR, "2026-01-01\x0000:00:00+00:00", 1)),
        (MESSAGES_CURSOR, _raw(MESSAGES_CURSOR, "2026-01-01 00:00:00+00:00", 1)),
        (MESSAGES_CURSOR, _raw(MESSAGES_CURSOR, "0001-01-01T00:00:00+05:00", 1)),
        (MESSAGES_CURSOR, _raw(MESSAGES_CURSOR, "9999-12-31T23:59:59-05:00", 1)),
        (MESSAGES_CURSOR, _raw(MESSAGES_CURSOR, 1, "2026-01-01T00:00:00+00:00")),
        # text: NUL, too long
        (CursorSpec("t", (TextField(5),)), _raw(CursorSpec("t", (TextField(5),)), "a\x00b")),
        (CursorSpec("t", (TextField(5),)), _raw(CursorSpec("t", (TextField(5),)), "abcdef")),
    ],
)
def test_anything_but_an_issued_cursor_is_malformed(spec: CursorSpec, cursor: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        spec.decode(cursor)
    assert caught.value.fields == MALFORMED


def test_a_search_cursor_belongs_to_its_query() -> None:
    pager = search_cursor("pager")
    cursor = pager.encode([1, "pager", 1], query="pager")
    with pytest.raises(ValidationFailed):
        search_cursor("ab").decode(cursor, query="ab")
    # The substring tier exists only for 3+ characters, the phone tier only for 4+ digits:
    # even a cursor tagged for "ab" may not name them.
    for tier in (1, 4):
        with pytest.raises(ValidationFailed):
            search_cursor("ab").decode(_raw(search_cursor("ab"), tier, "x", 1, query="ab"))


_JSON_ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.datetimes(timezones=st.timezones()).map(datetime.isoformat),
    st.datetimes().map(datetime.isoformat),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.lists(_JSON_ATOMS, max_size=5),
    tagged=st.booleans(),
    junk=st.text(alphabet=string.printable + "\x00é", max_size=40),
    use_junk=st.booleans(),
)
# Found by this test: a time with another offset than UTC decoded to a cursor we never wrote.
@example(key=["0001-01-01T00:00:00-00:01", 1], tagged=True, junk="", use_junk=False)
def test_random_cursors_decode_or_are_malformed(
    key: list[Any], tagged: bool, junk: str, use_junk: bool
) -> None:
    for spec, query in [
        (MEMBERS_CURSOR, ""),
        (MESSAGES_CURSOR, ""),
        (search_cursor("jo"), "jo"),
        (search_cursor("5551234 ann"), "5551234 ann"),
    ]:
        if use_junk:
            cursor = junk
        else:
            cursor = _raw(spec, *key, query=query) if tagged else _b64(orjson.dumps(key))
        try:
            decoded = spec.decode(cursor, query=query)
        except ValidationFailed as exc:
            assert exc.fields == MALFORMED
            continue
        # Whatever is accepted re-encodes to the very same cursor.
        assert decoded is None or spec.encode(decoded, query=query) == cursor


# --- the API --------------------------------------------------------------------------------


async def _get(client: httpx.AsyncClient, tenant: Tenant, path: str, **params: Any) -> Any:
    return await client.get(f"{API}{path}", params=params, headers=tenant.headers)


async def test_the_issues_search_cursors_are_422_not_500(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await make_members(session, tenant.church_id, 3, first_name="Pager")
    cases = [
        ("ab", "WzEsICJ4IiwgMV0"),  # the issue's cursors, as reported
        ("pager", "WzMsICJhXHUwMDAwYiIsIDFd"),
        ("ab", _raw(search_cursor("ab"), 1, "x", 1, query="ab")),  # substring tier for "ab"
        ("pager", _raw(search_cursor("pager"), 3, "a\x00b", 1, query="pager")),  # NUL in key
        ("pager", search_cursor("pag").encode([3, "pager", 1], query="pag")),  # other q
        ("pager", MEMBERS_CURSOR.encode([1])),  # the plain list's cursor
    ]
    for q, cursor in cases:
        r = await _get(client, tenant, "/members", q=q, cursor=cursor)
        assert r.status_code == 422, (q, cursor, r.text)
        assert r.json()["fields"] == MALFORMED and r.json()["error"]


async def test_a_conversation_cursor_with_a_trailing_nul_is_422(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    [member] = await make_members(session, tenant.church_id, 1)
    to, sender = await church_number(session, tenant.church_id), await member_phone(session, member)
    await text_in(session, to=to, sender=sender, body="hello")
    at = datetime.now(UTC).isoformat()
    good = CONVERSATIONS_CURSOR.encode([datetime.fromisoformat(at), 1])
    assert (await _get(client, tenant, "/conversations", cursor=good)).status_code == 200
    for bad in [
        _b64(orjson.dumps([_tag(CONVERSATIONS_CURSOR), at, 1]) + b"\x00"),
        _raw(CONVERSATIONS_CURSOR, at + "\x00", 1),
        good + "\x00",
    ]:
        r = await _get(client, tenant, "/conversations", cursor=bad)
        assert r.status_code == 422 and r.json()["fields"] == MALFORMED, r.text


async def test_a_cursor_from_another_list_is_422(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await make_members(session, tenant.church_id, 3)
    page = (await _get(client, tenant, "/members", limit=1)).json()
    assert page["next_cursor"]
    for path in ["/branches", "/groups", "/templates", "/recurring", "/admins"]:
        r = await _get(client, tenant, path, cursor=page["next_cursor"])
        assert r.status_code == 422 and r.json()["fields"] == MALFORMED, (path, r.text)
    # messages and conversations share a (time, id) shape, not a list
    at = datetime.now(UTC)
    r = await _get(client, tenant, "/conversations", cursor=MESSAGES_CURSOR.encode([at, 1]))
    assert r.status_code == 422 and r.json()["fields"] == MALFORMED


async def _cursor_paths(session: AsyncSession, tenant: Tenant, client: httpx.AsyncClient) -> Any:
    """(path, params, spec, query) of every cursor-paginated list, with an existing parent."""
    branch = await make_branch(session, tenant.church_id)
    group = await make_group(session, tenant.church_id, branch)
    [member] = await make_members(session, tenant.church_id, 1, group_id=group)
    to, sender = await church_number(session, tenant.church_id), await member_phone(session, member)
    conversation = (await text_in(session, to=to, sender=sender, body="hi")).conversation_id
    sent = await client.post(
        f"{API}/messages",
        json={"content": "hi", "target": {"type": "all"}},
        headers=tenant.headers,
    )
    assert sent.status_code == 202, sent.text
    message = sent.json()["id"]
    from koinonia.branches.service import BRANCHES_CURSOR
    from koinonia.churches.service import ADMINS_CURSOR
    from koinonia.groups.service import GROUP_MEMBERS_CURSOR, GROUPS_CURSOR
    from koinonia.recurring.service import RECURRING_CURSOR
    from koinonia.templates.service import TEMPLATES_CURSOR

    return [
        ("/branches", {}, BRANCHES_CURSOR, ""),
        ("/admins", {}, ADMINS_CURSOR, ""),
        ("/groups", {}, GROUPS_CURSOR, ""),
        (f"/groups/{group}/members", {}, GROUP_MEMBERS_CURSOR, str(group)),
        ("/members", {}, MEMBERS_CURSOR, ""),
        ("/members", {"q": "ab"}, search_cursor("ab"), "ab"),
        ("/members", {"q": "5551234 me"}, search_cursor("5551234 me"), "5551234 me"),
        ("/templates", {}, TEMPLATES_CURSOR, ""),
        ("/recurring", {}, RECURRING_CURSOR, ""),
        ("/messages", {}, MESSAGES_CURSOR, ""),
        (f"/messages/{message}/recipients", {}, RECIPIENTS_CURSOR, str(message)),
        ("/conversations", {}, CONVERSATIONS_CURSOR, ""),
        (f"/conversations/{conversation}/messages", {}, THREAD_CURSOR, str(conversation)),
    ]


async def test_random_cursors_never_5xx_on_any_list(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    """Hypothesis draws the cursors (tagged for the list so they reach the field checks, or
    not), the API answers each: 200 or a 422 on `cursor`, on every cursor-paginated list."""
    drawn: list[tuple[list[Any], bool]] = []

    @settings(max_examples=40, deadline=None, database=None)
    @given(key=st.lists(_JSON_ATOMS, min_size=1, max_size=4), tagged=st.booleans())
    def draw(key: list[Any], tagged: bool) -> None:
        drawn.append((key, tagged))

    draw()
    for path, params, spec, query in await _cursor_paths(session, tenant, client):
        for key, tagged in drawn:
            cursor = _raw(spec, *key, query=query) if tagged else _b64(orjson.dumps(key))
            if len(cursor) > 2000:
                continue
            r = await _get(client, tenant, path, cursor=cursor, **params)
            assert r.status_code in (200, 422), (path, key, r.text)
            if r.status_code == 422:
                assert r.json()["fields"] == MALFORMED, (path, key, r.text)
