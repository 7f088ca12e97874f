"""`koinonia` command line: serve, worker, dev, migrate, demo, sms-sandbox."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from koinonia.config import Settings, get_settings
from koinonia.kit.errors import KoinoniaError

app = typer.Typer(help="Koinonia: texting for churches.", no_args_is_help=True)
console = Console(stderr=True)


def load_settings() -> Settings:
    """Settings, or one clear line and exit 2 on a misconfiguration."""
    try:
        return get_settings()
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
        # One line, unwrapped, so a log collector keeps it whole.
        console.print(f"[red]configuration error:[/] {problems}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _problem(loc: tuple[int | str, ...], msg: str) -> str:
    # A field's error names its variable; a check across fields names it in its message.
    msg = msg.removeprefix("Value error, ")
    if not loc:
        return msg
    name = ".".join(str(part) for part in loc).upper()
    known = name.lower() in Settings.model_fields and name not in ("DATABASE_URL", "REDIS_URL")
    return f"{'KOINONIA_' if known else ''}{name}: {msg}"


def require_sandbox(command: str) -> None:
    """One clear line and exit 1 unless the SMS sandbox can be imported: it is development
    tooling (src/koinonia_sandbox and the dev extra's aiohttp), not part of a product install."""
    try:
        import koinonia_sandbox  # noqa: F401
    except ModuleNotFoundError as exc:
        console.print(
            f"[red]koinonia {command} needs the SMS sandbox[/] (development tooling, not "
            f"installed here: no module {exc.name!r}): run it from a source checkout with the "
            "dev extra (`make run`, or `pip install -e '.[dev]'`)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


async def _prepare(settings: Settings, *, seed: bool) -> bool:
    from koinonia.db.process import process_database
    from koinonia.demo import seed_demo

    async with process_database(settings) as database:
        if not seed:
            return False
        async with database.session() as session:
            return await seed_demo(session)


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = load_settings()
    asyncio.run(_prepare(settings, seed=False))
    console.print("migrations applied")


@app.command()
def demo() -> None:
    """Seed the demo church if the database is empty."""
    settings = load_settings()
    seeded = asyncio.run(_prepare(settings, seed=True))
    console.print("demo church seeded" if seeded else "database not empty: nothing seeded")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the API: `workers` uvicorn processes on one socket; with more than one, their metrics
    are kept in a private directory and /metrics answers for all of them (kit.metrics)."""
    import uvicorn

    from koinonia.kit.metrics import shared_between_processes
    from koinonia.kit.server import uvicorn_options

    settings = load_settings()
    with shared_between_processes(workers):
        uvicorn.run(
            "koinonia.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            **uvicorn_options(settings),
        )


@app.command()
def dev() -> None:
    """API + delivery worker + SMS sandbox in one process, on the embedded database, with demo
    data. This is what `make run` starts."""
    require_sandbox("dev")
    settings = load_settings()
    try:
        seeded = asyncio.run(_prepare(settings, seed=True))
    except Exception as exc:
        console.print(f"[red]database not ready:[/] {exc}")
        raise typer.Exit(1) from None
    from koinonia.demo import DEMO_EMAIL, DEMO_PASSWORD
    from koinonia.devserver import run_dev

    console.print(
        f"\n[bold]Koinonia[/] on http://{settings.host}:{settings.port}  "
        f"(API docs: http://{settings.host}:{settings.port}/docs)\n"
        f"demo login: {DEMO_EMAIL} / {DEMO_PASSWORD}"
        + ("  (demo church just seeded)" if seeded else "")
        + f"\nSMS sandbox on {settings.sandbox_url}\n",
        highlight=False,
    )
    run_dev(settings)


@app.command()
def worker() -> None:
    """Run a delivery worker: claims due texts, sends them through each church's provider within
    the per-number rate limit, records the results. Run as many as you like, on any hosts;
    SIGTERM finishes the batch in flight and exits."""
    from koinonia.delivery.worker import serve_worker
    from koinonia.kit.loop import new_event_loop

    settings = load_settings()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve_worker(settings))


@app.command("sms-sandbox")
def sms_sandbox(
    port: Annotated[
        int | None, typer.Option(help="default: the port of KOINONIA_SANDBOX_URL")
    ] = None,
    latency_ms: Annotated[float, typer.Option(help="delay per send")] = 0.0,
    rate_limit_mps: Annotated[
        float | None, typer.Option(help="messages/s per number before 429s")
    ] = None,
    transient_failure_rate: Annotated[float, typer.Option(help="share answered 5xx")] = 0.0,
    permanent_failure_rate: Annotated[float, typer.Option(help="share refused for good")] = 0.0,
) -> None:
    """The loopback fake carrier: Twilio and Telnyx send APIs, signed delivery reports back to
    KOINONIA_PUBLIC_URL, and POST /sandbox/inbound to text in as a member."""
    from dataclasses import replace
    from urllib.parse import urlparse

    require_sandbox("sms-sandbox")
    from koinonia_sandbox import DEFAULT_PORT, run_sandbox, sandbox_config

    settings = load_settings()
    config = replace(
        sandbox_config(settings),
        latency_ms=latency_ms,
        rate_limit_mps=rate_limit_mps,
        transient_failure_rate=transient_failure_rate,
        permanent_failure_rate=permanent_failure_rate,
    )
    run_sandbox(config, port=port or urlparse(settings.sandbox_url).port or DEFAULT_PORT)


@app.command("import")
def import_csv(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    church: Annotated[int, typer.Option(help="church id")],
    group: Annotated[int, typer.Option(help="group id (of that church)")],
    errors_to: Annotated[
        Path | None, typer.Option(help="write the rejected rows to this CSV")
    ] = None,
) -> None:
    """Import members from a CSV file into a group (same rules as the API endpoint)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    settings = load_settings()

    async def run() -> None:
        from koinonia.billing.plans import effective_plan
        from koinonia.churches.repository import ChurchRepository
        from koinonia.db.process import process_database
        from koinonia.members.importer import import_members

        async with process_database(settings) as database:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task(f"importing {file.name}", total=None)
                async with database.session() as session:
                    found = await ChurchRepository(session, church_id=church).get()
                    if found is None:
                        raise typer.BadParameter(f"no church {church}", param_hint="--church")
                    report = await import_members(
                        session,
                        church_id=church,
                        plan=effective_plan(found.plan, found.subscription_status),
                        group_id=group,
                        data=file.read_bytes(),
                        region=settings.default_region,
                        progress=lambda phase: bar.update(task, description=phase),
                    )
        console.print(
            f"{report.total_rows} rows: {report.created} created, "
            f"{report.already_members} already members, {report.added_to_group} added to the "
            f"group, {report.rejected} rejected, {report.warnings} warnings"
        )
        if errors_to is not None and report.errors:
            errors_to.write_text(report.errors_csv())
            console.print(f"rejected rows written to {errors_to}")

    try:
        asyncio.run(run())
    except KoinoniaError as exc:
        console.print(f"[red]{exc.code}:[/] {exc.detail}", highlight=False)
        raise typer.Exit(1) from None


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - `python -m koinonia.cli`
    main()
