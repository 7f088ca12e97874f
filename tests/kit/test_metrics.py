"""kit.metrics: one process keeps the plain registry; `serve --workers N` (N > 1) gives its
workers a private directory that lives as long as the server (tests/api/test_serve_workers.py
runs the processes)."""

from __future__ import annotations

import os
from pathlib import Path

from koinonia.kit import metrics


def test_one_process_keeps_the_plain_registry() -> None:
    assert not metrics.in_multiprocess_mode()
    with metrics.shared_between_processes(1):
        assert metrics.MULTIPROC_DIR_ENV not in os.environ
    assert b"koinonia_http_requests_total" in metrics.exposition()
    metrics.process_exiting()  # nothing to mark


def test_several_workers_share_a_fresh_private_directory_while_they_run() -> None:
    with metrics.shared_between_processes(2):
        directory = Path(os.environ[metrics.MULTIPROC_DIR_ENV])
        assert directory.is_dir() and not any(directory.iterdir())
        assert directory.stat().st_mode & 0o077 == 0  # private
        (directory / "counter_1.db").write_bytes(b"")
    assert metrics.MULTIPROC_DIR_ENV not in os.environ
    assert not directory.exists()
