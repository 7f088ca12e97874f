"""A database that goes away on cue: a TCP proxy in front of the test server whose connections
the test cuts, and which then refuses a counted number of new connections (a restart, a
failover, a network cut, as the worker sees them). Tests wait on counts, never on time."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.engine import URL

from koinonia.config import Settings
from koinonia.db.database import Database


class DatabaseProxy:
    def __init__(self, upstream: URL) -> None:
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._refuse: int | None = 0  # None: refuse until restore()
        self.refused = 0  # connection attempts refused so far
        self._refusals = asyncio.Condition()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.restore()
        self._drop_links()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self) -> URL:
        """The test database's URL, through this proxy."""
        return self._upstream.difference_update_query(["host"]).set(
            host="127.0.0.1", port=self.port
        )

    def database(self, settings: Settings) -> Database:
        """A database reached through this proxy (its own pool; the caller disposes of it)."""
        return Database.open(settings, self.url().render_as_string(hide_password=False))

    def cut(self, *, refuse: int | None) -> None:
        """Drop every open connection and refuse the next `refuse` attempts (None: all, until
        `restore()`)."""
        self._refuse = refuse
        self._drop_links()

    def restore(self) -> None:
        self._refuse = 0

    async def wait_refused(self, n: int) -> None:
        async with self._refusals:
            await self._refusals.wait_for(lambda: self.refused >= n)

    def _drop_links(self) -> None:
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host = self._upstream.query.get("host") or self._upstream.host or "127.0.0.1"
        port = self._upstream.port or 5432
        if isinstance(host, str) and host.startswith("/"):
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(str(host), port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refuse is None or self._refuse > 0:
            if self._refuse is not None:
                self._refuse -= 1
            writer.transport.abort()
            async with self._refusals:
                self.refused += 1
                self._refusals.notify_all()
            return
        up_reader, up_writer = await self._open_upstream()
        self._links.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._links.discard(w)
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
