"""The sandbox is development tooling beside the product: `koinonia` runs without it (and
without aiohttp), and the commands that start it say so in one line when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import koinonia
from koinonia import cli

# Imports every module of the product (but its Alembic scripts, koinonia.migrations: they run only
# under Alembic), then names any sandbox or aiohttp module loaded.
_IMPORT_THE_PRODUCT = """
import importlib, pkgutil, sys
import koinonia
names = [m.name for m in pkgutil.walk_packages(koinonia.__path__, "koinonia.")]
for name in names:
    if ".migrations" not in name:
        importlib.import_module(name)
loaded = [m for m in sys.modules if m.split(".")[0] in ("koinonia_sandbox", "aiohttp")]
print(len(names), sorted(loaded))
"""


def test_the_product_imports_neither_the_sandbox_nor_aiohttp() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(koinonia.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_THE_PRODUCT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules, loaded = result.stdout.split(" ", 1)
    assert int(modules) > 100  # the walk did import the product
    assert loaded.strip() == "[]"


@pytest.mark.parametrize("command", ["dev", "sms-sandbox"])
def test_its_commands_say_in_one_line_when_it_is_not_installed(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "koinonia_sandbox", None)  # as in a product install
    result = CliRunner().invoke(cli.app, [command])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"koinonia {command} needs the SMS sandbox")
    assert "no module 'koinonia_sandbox'" in lines[0]
