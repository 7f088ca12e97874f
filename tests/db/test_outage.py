"""db.outage: the one answer to "is this a database outage, and why?" for the API and the
worker. The end-to-end behaviour (503s, worker backoff) is in tests/api/test_database_outage.py
and tests/delivery/test_outage.py; here, what counts and what does not."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from db.outages import Orig, closed_port, dbapi_error, driver_refusal
from koinonia.db.outage import outage_cause, sqlstate


@pytest.mark.parametrize(
    ("state", "cause"),
    [
        ("57P01", "sqlstate_57P01"),  # terminating connection due to administrator command
        ("57P03", "sqlstate_57P03"),  # starting up / shutting down
        ("08006", "sqlstate_08006"),  # connection failure
        ("53300", "sqlstate_53300"),  # too many connections
        ("40P01", None),  # a deadlock: retried as a conflict, not an outage
        ("23505", None),  # a constraint
    ],
)
def test_sqlstates(state: str, cause: str | None) -> None:
    assert outage_cause(dbapi_error(state)) == cause


def test_wrapped_sqlstate_under_the_adapter() -> None:
    """asyncpg's error under the DB-API adapter's (`raise adapted from asyncpg_error`)."""
    adapted = Exception("adapted")
    adapted.__cause__ = Orig("57P01")
    assert outage_cause(DBAPIError("SELECT 1", {}, adapted)) == "sqlstate_57P01"
    assert sqlstate(DBAPIError("SELECT 1", {}, adapted)) == "57P01"


def test_an_error_raised_while_handling_an_outage_is_not_one() -> None:
    constraint = dbapi_error("23505", IntegrityError)
    constraint.__context__ = dbapi_error("57P01")
    assert outage_cause(constraint) is None and sqlstate(constraint) == "23505"


def test_pool_timeout_and_lost_connection() -> None:
    assert outage_cause(PoolTimeoutError("QueuePool limit reached")) == "pool_timeout"
    lost = DBAPIError("SELECT 1", {}, ConnectionResetError(), connection_invalidated=True)
    assert outage_cause(lost) == "connection_lost"


async def test_an_oserror_counts_only_when_the_driver_raised_it() -> None:
    assert outage_cause(await driver_refusal()) == "connect_failed"
    # The same error from anywhere else says nothing about the database: a carrier or webhook
    # that refuses, a socket of our own.
    try:
        raise ConnectionRefusedError(111, "refused")
    except OSError as exc:
        assert outage_cause(exc) is None
    try:
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{closed_port()}/")
    except httpx.ConnectError as exc:
        assert outage_cause(exc) is None
    assert outage_cause(ValueError("bug")) is None


def test_a_driver_sqlstate_unwrapped_counts_only_from_the_driver() -> None:
    """asyncpg's server errors at connect time are unwrapped: their `sqlstate` counts only
    when asyncpg raised them."""
    assert outage_cause(Orig("57P03")) is None
