"""Schemathesis over every operation of /openapi.json (DESIGN §8, issue 10).

Each operation gets its own church with one of everything (so a logout or a delete in one
operation's run cannot starve another's), a valid access token, and a bounded, derandomized run
of generated requests: valid ones (positive mode) and ones that break the document (negative
mode), about half of them aimed at the seeded objects' ids so that the success answers are
checked too. Every answer must pass schemathesis' checks: no 5xx, a documented status code,
the documented content type, body schema and headers, and input that breaks the document
rejected (`negative_data_rejection`: what lax coercion used to let through).

Webhooks are fuzzed like the rest: without a valid signature (which generated requests cannot
carry) they must answer their documented 400/403; their success answers are tested with signed
requests in tests/webhooks.

The app runs on the test's event loop (its database connection lives there); hypothesis and
schemathesis run in a worker thread and hand each request to the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from argon2 import PasswordHasher
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis import checks as sc
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from conversations.support import church_number, text_in
from fixtures.factories import Tenant, make_branch, make_group, make_members, make_tenant
from koinonia.app import create_app
from koinonia.auth import security
from koinonia.config import get_settings
from koinonia.models import Conversation, Member, Template

EXAMPLES_PER_MODE = 15
CHECKS = [
    sc.not_a_server_error,
    sc.status_code_conformance,
    sc.content_type_conformance,
    sc.response_schema_conformance,
    sc.response_headers_conformance,
    sc.negative_data_rejection,
]
BASE_URL = "http://test"


def _operations() -> list[str]:
    document = create_app(get_settings()).openapi()
    return [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
    ]


OPERATIONS = _operations()


async def _seed(client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant) -> dict[str, int]:
    """One of everything in the tenant's church; the ids by the path parameter naming them."""
    church_id = tenant.church_id
    branch_id = await make_branch(session, church_id)
    group_id = await make_group(session, church_id, branch_id)
    [member_id] = await make_members(session, church_id, 1, group_id=group_id)
    template = insert(Template).values(
        church_id=church_id, name="Hi", content="Hi", category="event"
    )
    template_id = (await session.execute(template.returning(Template.id))).scalar_one()
    co_admin = await make_tenant(session, church_id=church_id, role="CO_ADMIN")
    # Messages and schedules through the API: they carry recipients and a computed next firing.
    message = {"content": "Hello {first_name}", "target": {"type": "all"}}
    r = await client.post("/api/v1/messages", json=message, headers=tenant.headers)
    assert r.status_code == 202, r.text
    schedule = {
        "name": "Weekly",
        "content": "Service at 10",
        "target": {"type": "groups", "ids": [group_id]},
        "frequency": "weekly",
        "day_of_week": 6,
        "time_of_day": "09:00",
    }
    r2 = await client.post("/api/v1/recurring", json=schedule, headers=tenant.headers)
    assert r2.status_code == 201, r2.text
    phone = await session.scalar(select(Member.phone).where(Member.id == member_id))
    await text_in(session, to=await church_number(session, church_id), sender=phone, body="Hi")
    conversation_id = await session.scalar(
        select(Conversation.id).where(Conversation.church_id == church_id)
    )
    return {
        "branch_id": branch_id,
        "group_id": group_id,
        "member_id": member_id,
        "template_id": template_id,
        "message_id": r.json()["id"],
        "recurring_id": r2.json()["id"],
        "admin_id": co_admin.admin_id,
        "conversation_id": conversation_id,
    }


def _fuzz(
    operation: schemathesis.APIOperation,
    known_ids: dict[str, int],
    headers: dict[str, str],
    send: Callable[[requests.PreparedRequest], httpx.Response],
) -> None:
    path_names = {p.name for p in operation.path_parameters}
    seeded = {name: known_ids[name] for name in path_names if name in known_ids}
    modes = [GenerationMode.POSITIVE]
    if operation.body or operation.query or operation.path_parameters:
        modes.append(GenerationMode.NEGATIVE)
    for mode in modes:
        strategy = operation.as_strategy(generation_mode=mode)
        if seeded and len(seeded) == len(path_names):
            strategy = st.one_of(strategy, operation.as_strategy(mode, path_parameters=seeded))

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_MODE,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @hypothesis.given(case=strategy)
        def run(case: schemathesis.Case) -> None:
            kwargs = case.as_transport_kwargs(base_url=BASE_URL, headers=headers)
            request = requests.Request(**kwargs).prepare()
            response = send(request)
            case.validate_response(response, checks=CHECKS)

        run()


@pytest.fixture(scope="module")
def schema() -> schemathesis.BaseSchema:
    # Explicit configuration (no schemathesis.toml discovered from the working directory).
    # Unknown query parameters are ignored by design, as by most HTTP APIs: not generated.
    config = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
    return schemathesis.openapi.from_dict(create_app(get_settings()).openapi(), config=config)


@pytest.fixture
def cheap_passwords() -> Iterator[None]:
    """Registrations, invitations and logins hash with argon2 at its production cost, ~0.1-1 s
    each on a busy machine: conformance does not depend on the cost, so it is the minimum here."""
    production = security.use_password_hasher(
        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    yield
    security.use_password_hasher(production)


@pytest.mark.parametrize("label", OPERATIONS)
async def test_every_operation_conforms_to_the_document(
    label: str,
    schema: schemathesis.BaseSchema,
    client: httpx.AsyncClient,
    session: AsyncSession,
    cheap_passwords: None,
) -> None:
    tenant = await make_tenant(session)
    known_ids = await _seed(client, session, tenant)
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    loop = asyncio.get_running_loop()

    def send(request: requests.PreparedRequest) -> httpx.Response:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        coroutine = client.request(
            request.method or "GET",
            request.url or "",
            headers=dict(request.headers),
            content=body,
        )
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)

    await asyncio.to_thread(_fuzz, operation, known_ids, tenant.headers, send)
