"""Database failures for tests: a DB-API error with a given SQLSTATE, a real refusal by the
driver."""

from __future__ import annotations

import socket

import asyncpg
from sqlalchemy.exc import DBAPIError


class Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def dbapi_error(state: str, kind: type[DBAPIError] = DBAPIError) -> DBAPIError:
    return kind("SELECT 1", {}, Orig(state))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def driver_refusal() -> OSError:
    """A real refused connection, as asyncpg raises it (SQLAlchemy does not wrap connecting)."""
    try:
        await asyncpg.connect(host="127.0.0.1", port=closed_port(), user="x", timeout=5)
    except OSError as exc:
        return exc
    raise AssertionError("nobody listens on a closed port")
