"""The anchors the load rows of SPEC §5 are judged against: bare FastAPI apps, measured in the
same run, the same way as ours (same aiohttp load generator and concurrency, one uvicorn
process started by `koinonia serve` itself, same database and data). Absolute rates vary ~3x
between machines and with a neighbour's load; a ratio to an anchor measured a moment apart
does not.

The anchors are written the way the FastAPI and SQLAlchemy tutorials write such an app, with
no tuning of our own (they are what "a plain FastAPI app" costs, not a second optimised
product):

- `json`: `GET /json` answers a small JSON document (a dict of a dozen fields, the size of
  our `/stats/summary`) through FastAPI's default JSON response.
- `members`: `GET /members?limit=50` serves church 1's first 50 members by id with one query:
  a mapped class, an `AsyncSession` per request from a dependency, and a pydantic response
  model of the same fields and page shape as ours (`{"items": [...], "next_cursor": ...}`).
  The engine has our pool size; the session's transaction is the default (BEGIN, SELECT,
  ROLLBACK at close).
- `reports`: `POST /status` takes a Twilio status callback form and stores it with one
  UPDATE of the recipient by provider id, committed before answering (no signature check,
  no forward-only rule, no group commit: one transaction per report).

Each has `/healthz`. The bench runs them as `python -m bench.anchors NAME --port N`, which
calls `koinonia.cli.serve` with `uvicorn.run` pointed at the anchor's factory instead of ours,
so every uvicorn setting (loop, HTTP parser, timeouts, log level, worker count) is the one our
API runs with, now and after any change to `serve`.

No `from __future__ import annotations` here: FastAPI evaluates the endpoints' annotations,
and the session dependency they name is local to the app factory.
"""

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any
from unittest import mock

from fastapi import Depends, FastAPI, Form
from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

CHURCH = 1  # the church every scenario measures (bench.scenarios.CHURCH)
APPS = {
    "json": "bench.anchors:json_app",
    "members": "bench.anchors:members_app",
    "reports": "bench.anchors:reports_app",
}


def json_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/json")
    async def document() -> dict[str, Any]:
        return {
            "members": {"total": 20000, "opted_in": 19600, "opted_out": 400},
            "branches": 10,
            "groups": 100,
            "month": "2026-12",
            "texts": 12345,
            "segments": 13000,
            "messages": 42,
            "sent": 120,
            "delivered": 12000,
            "undelivered": 150,
            "failed": 75,
            "delivery_rate": 0.9719,
        }

    return app


class Base(DeclarativeBase):
    pass


class Member(Base):
    """The columns of `members` the list shows (the table is ours; nothing else is mapped)."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    church_id: Mapped[int] = mapped_column(BigInteger)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(320))
    consent: Mapped[str] = mapped_column(String(16))
    consent_changed_at: Mapped[datetime | None]
    consent_source: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]


class Recipient(Base):
    __tablename__ = "message_recipients"

    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(64))


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    first_name: str
    last_name: str
    phone: str
    email: str | None
    consent: str
    consent_changed_at: datetime | None
    consent_source: str | None
    created_at: datetime


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None


def _database_app() -> tuple[FastAPI, Any]:
    """An app with an engine of our pool size on DATABASE_URL, and its session dependency."""
    from koinonia.config import get_settings

    settings = get_settings()
    engine = create_async_engine(
        os.environ["DATABASE_URL"],
        pool_size=settings.pool_size,
        max_overflow=settings.pool_max_overflow,
        pool_timeout=settings.pool_timeout_s,
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    async def session() -> AsyncIterator[AsyncSession]:
        async with sessions() as s:
            yield s

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app, session


def members_app() -> FastAPI:
    app, session = _database_app()

    @app.get("/members", response_model=MemberPage)
    async def members(
        db: Annotated[AsyncSession, Depends(session)], limit: int = 50, after: int = 0
    ) -> Any:
        stmt = (
            select(Member)
            .where(Member.church_id == CHURCH, Member.id > after)
            .order_by(Member.id)
            .limit(limit + 1)
        )
        rows = (await db.scalars(stmt)).all()
        more = len(rows) > limit
        return {"items": rows[:limit], "next_cursor": str(rows[limit - 1].id) if more else None}

    return app


def reports_app() -> FastAPI:
    app, session = _database_app()
    statuses = {"sent": "sent", "delivered": "delivered", "undelivered": "undelivered"}

    @app.post("/status")
    async def status(
        db: Annotated[AsyncSession, Depends(session)],
        message_sid: Annotated[str, Form(alias="MessageSid")],
        message_status: Annotated[str, Form(alias="MessageStatus")],
    ) -> dict[str, bool]:
        new = statuses.get(message_status)
        if new is not None:
            await db.execute(
                update(Recipient)
                .where(Recipient.provider_message_id == message_sid)
                .values(status=new)
            )
            await db.commit()
        return {"ok": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.anchors")
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    import uvicorn

    from koinonia import cli

    run = uvicorn.run

    def run_anchor(_app: Any, **kwargs: Any) -> None:
        run(APPS[args.app], **kwargs)

    # `serve` calls uvicorn.run("koinonia.app:create_app", factory=True, ...): the same call,
    # the anchor's factory instead.
    with mock.patch.object(uvicorn, "run", run_anchor):
        cli.serve(host=None, port=args.port)


if __name__ == "__main__":
    main()
