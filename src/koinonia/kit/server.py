"""How uvicorn serves the API: connection timeouts that uvicorn itself does not have.

uvicorn closes an idle keep-alive connection only after a response (`timeout_keep_alive`), and
any byte received disarms that timer. Nothing times out a connection that was opened and never
sent a request, or that sends its headers a byte at a time (slowloris): each such connection
was held for as long as its client liked. `HttpProtocol` adds a header deadline: from the
moment a connection opens, or the first byte of a request after a response, the request's
headers must be complete within `header_timeout_s`, or the connection is closed (there is no
request to answer yet). The body then has the request pipeline's deadline (`kit.http`), and an
idle connection between requests the keep-alive timeout.

uvicorn logs through our structlog pipeline (`kit.logging.logging_config`, applied by uvicorn in
each process), at KOINONIA_LOG_LEVEL. Its access log stays off: the request pipeline already
writes one `request` event per request (`kit.http`), with the request id, route, church and
duration that uvicorn's line lacks, on a path kept cheap on purpose (`kit.logging.log_request`);
a second line per request would double the log volume and its cost for nothing new.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from koinonia.config import Settings
from koinonia.kit.deadlines import Deadlines
from koinonia.kit.logging import logging_config


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on reading each request's headers."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        header_timeout_s: float,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.header_timeout_s = header_timeout_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _header_deadlines.add(self, self.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        # Bytes between requests start the next one's headers (even bare CRLFs, which the
        # parser skips without beginning a message but which disarm uvicorn's keep-alive timer).
        between_requests = self.cycle is None or self.cycle.response_complete
        if between_requests and self not in _header_deadlines.due:
            _header_deadlines.add(self, self.header_timeout_s)
        super().data_received(data)

    def on_headers_complete(self) -> None:
        _header_deadlines.discard(self)
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        _header_deadlines.discard(self)
        super().connection_lost(exc)

    def headers_too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


# One watcher for every connection's header deadline (a timer per request cost ~4 µs of CPU).
_header_deadlines: Deadlines[HttpProtocol] = Deadlines(HttpProtocol.headers_too_slow)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` / `uvicorn.Config` besides the app, host and port:
    the header deadline, the keep-alive timeout, our logging set-up, and our request log instead
    of uvicorn's access log. (A partial of a module-level class pickles, and the logging set-up
    is plain data, so `--workers` processes get both.)"""
    http = partial(HttpProtocol, header_timeout_s=settings.header_timeout_s)
    return {
        "http": cast(type[asyncio.Protocol], http),
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "log_config": logging_config(json=settings.json_logs, level=settings.log_level),
        "access_log": False,
    }
