"""`python -m bench --quick | --full [--only NAME]`: measure SPEC §5, write bench/results/*.json
and refresh the results table in BENCHMARKS.md (between its markers)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("KOINONIA_ENV", "production")  # JSON logs, no dev shortcuts
# Production refuses the public development secrets: the bench makes its own for the run (the
# servers and workers it starts inherit them; the sandbox is given the Twilio token).
os.environ.setdefault("KOINONIA_JWT_SECRET", secrets.token_urlsafe(32))
os.environ.setdefault("KOINONIA_TWILIO_AUTH_TOKEN", secrets.token_urlsafe(32))
os.environ.setdefault("KOINONIA_TELNYX_API_KEY", "")  # no bench church uses Telnyx
os.environ.setdefault("KOINONIA_CHURCH_RATE_LIMIT_PER_MIN", "100000000")

import httpx

from bench import scenarios as sc
from bench.harness import SIZES, prepare
from koinonia.app import create_app
from koinonia.config import get_settings
from koinonia.kit.logging import configure_logging
from koinonia.kit.store import init_store

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"


def markers(mode: str) -> tuple[str, str]:
    """Each mode rewrites its own table in BENCHMARKS.md."""
    return f"<!-- bench:{mode}:begin -->", f"<!-- bench:{mode}:end -->"


def log(msg: str) -> None:
    print(msg, flush=True)


async def run_size(
    size_name: str, runs: int, only: str | None, load_seconds: float
) -> list[dict[str, Any]]:
    settings = get_settings()
    size = SIZES[size_name]
    database = await prepare(settings, size, log)
    init_store(settings.redis_url, settings.store_prefix)
    app = create_app(settings, database=database)
    rows: list[dict[str, Any]] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        api = await sc.Api.login(client)
        plan = sc.registry(database, api, size, runs)
        for name, make in plan:
            if only and only not in name:
                continue
            log(f"[{size.name}] {name} ...")
            started = time.perf_counter()
            made = await make()
            for row in made if isinstance(made, list) else [made]:
                row["size"] = size.name
                row["seconds"] = round(time.perf_counter() - started, 1)
                rows.append(row)
                log(f"    {row['operation']}: ours {row['ours']}")
                if "naive" in row:
                    log(f"    naive {row['naive']}")
    if size.name != "S" and (not only or "delivery" in only):
        from bench import delivery

        members = 10_000
        log(f"[{size.name}] broadcast delivery through the sandbox ({members:,} texts) ...")
        for row in await delivery.scenarios(members):
            row["size"] = size.name
            rows.append(row)
            log(f"    {row['operation']}: {row['ours']}")
    if size.name != "S" and (not only or "load" in only):
        log(f"[{size.name}] load against a real API process ({load_seconds:.0f} s per run) ...")
        for row in await sc.load_scenarios(database, size, load_seconds):
            row["size"] = size.name
            rows.append(row)
            log(f"    {row['operation']}: {row['ours']}")
            if "anchor" in row:
                log(f"    anchor {row['anchor']}")
                log(f"    ours/anchor {_vs_anchor(row)}")
    await database.dispose()
    return rows


def _fmt(r: dict[str, Any] | None, key: str = "p95_ms") -> str:
    if not r:
        return "—"
    parts = []
    if "statements" in r:
        parts.append(f"{r['statements']} stmts")
    if key in r:
        parts.append(f"p50 {r['p50_ms']} / p95 {r['p95_ms']} ms")
    for extra in (
        "status",
        "created",
        "handed_s",
        "per_s",
        "error_pct",
        "errors",
        "note",
        "api_peak_rss_mb",
        "worker_peak_rss_mb",
        "api_cpu_us_per_request",
        "cpu_s",
        "projected_s",
    ):
        if extra in r:
            parts.append(f"{extra}={r[extra]}" if extra not in ("per_s", "note") else str(r[extra]))
    return ", ".join(parts)


def _vs_anchor(r: dict[str, Any]) -> str:
    """ours/anchor in requests per second, against the goal when the row has one."""
    if "ratio_to_anchor" not in r:
        return "—"
    ratio = f"{r['ratio_to_anchor']}×"
    if "ratio_goal" in r:
        ratio += f" (goal ≥ {r['ratio_goal']}×: {'met' if r['ratio_met'] else '**not met**'})"
    if "cpu_ratio_anchor_over_ours" in r:
        ratio += f"; anchor CPU/request ÷ ours {r['cpu_ratio_anchor_over_ours']}"
    return ratio


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| size | operation | seed current → target | our goal | ours | naive | naive/ours (p50) "
        "| anchor (same run) | ours/anchor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        anchor = r.get("anchor")
        shown = f"{anchor['app']}: {_fmt(anchor)}" if anchor else "—"
        out.append(
            f"| {r['size']} | {r['operation']} | {r['seed']} | {r['goal']} | {_fmt(r['ours'])} "
            f"| {_fmt(r.get('naive'))} | {r.get('ratio_p50', '—')} | {shown} | {_vs_anchor(r)} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="S + L/10 (default), < 10 min")
    mode.add_argument("--full", action="store_true", help="S + L (SPEC §5 sizes)")
    parser.add_argument("--only", help="run scenarios whose name contains this")
    args = parser.parse_args()
    configure_logging(json=True, level="ERROR")
    sizes = ["S", "L"] if args.full else ["S", "quick"]
    runs = 50 if args.full else 30
    command = "make bench-full" if args.full else "make bench"
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for size in sizes:
        rows += asyncio.run(run_size(size, runs, args.only, 60 if args.full else 10))
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "database": "DATABASE_URL" if get_settings().database_url else "embedded PostgreSQL 18",
        "redis": bool(get_settings().redis_url),
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    name = ("full" if args.full else "quick") + ("-partial" if args.only else "")
    (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = table(rows)
    print("\n" + md)
    if not args.only:
        mark_begin, mark_end = markers(name)
        bench_md = ROOT.parent / "BENCHMARKS.md"
        if bench_md.exists() and mark_begin in bench_md.read_text():
            section = (
                f"{mark_begin}\n`{command}` on {meta['date']} ({meta['machine']}, "
                f"{meta['database']}, Redis: {meta['redis']}), {meta['seconds']} s:"
                f"\n\n{md}\n{mark_end}"
            )
            text = re.sub(
                re.escape(mark_begin) + ".*?" + re.escape(mark_end),
                lambda _: section,
                bench_md.read_text(),
                flags=re.S,
            )
            bench_md.write_text(text)


if __name__ == "__main__":
    main()
