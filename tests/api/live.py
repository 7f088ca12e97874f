"""Raw-socket HTTP/1.1 clients for the API served by a real uvicorn (the `serve_api` fixture):
they can misbehave the way attackers and broken networks do (stall a body, dribble headers,
vanish mid-request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

# Each test's guard against a hang: far longer than any deadline the tests configure, so it
# fires only when the behaviour under test is missing (the request is never answered).
HANG_S = 10.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class Conn:
    """One raw HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> Response:
        async with asyncio.timeout(HANG_S):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Response(status, headers, body)

    async def closed_by_server(self) -> bool:
        """True when the server closes the connection (EOF or reset) before HANG_S."""
        async with asyncio.timeout(HANG_S):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionResetError:
                pass
        return True

    def close(self) -> None:
        self.writer.close()


async def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition` to hold (at most HANG_S)."""
    for _ in range(int(HANG_S / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


def request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LiveServer:
    app: FastAPI
    port: int
    server: uvicorn.Server

    def requests_in_progress(self) -> int:
        """Requests whose headers the server has read and that are not finished."""
        return len(self.server.server_state.tasks)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Conn]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        conn = Conn(reader, writer)
        try:
            yield conn
        finally:
            conn.close()

    async def fetch(self, raw: bytes) -> Response:
        async with self.connect() as conn:
            await conn.send(raw)
            return await conn.response()


ServeApi = Callable[..., Any]
