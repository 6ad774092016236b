"""The package's shape, as pyproject.toml's [tool.importlinter] contracts state it: layers, a generic engine, a
pure script model, and no import circles (imports inside functions count too)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())", "--no-cache", "--config", str(ROOT / "pyproject.toml")]


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    """import-linter on the ``renderer`` package found in ``package_parent``, with the repo's contracts."""
    return subprocess.run(LINT, cwd=package_parent, capture_output=True, text=True,
                          env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"})


def test_the_import_contracts_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def lint_with(tmp_path: Path, module: str, statement: str) -> subprocess.CompletedProcess:
    """``lint`` on a copy of the package in which ``module`` (renderer/...) runs ``statement`` in a function."""
    shutil.copytree(ROOT / "renderer", tmp_path / "renderer", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "renderer" / module
    path.write_text(path.read_text() + f"\n\ndef _late():\n    {statement}  # noqa\n")
    return lint(tmp_path)


def test_a_layer_importing_upwards_or_a_circle_breaks_them(tmp_path):
    done = lint_with(tmp_path, "script/model.py", "from renderer.batch import BatchResult")
    assert done.returncode == 1
    assert "renderer.script.model -> renderer.batch" in done.stdout  # named, with its line
    assert "1 kept, 3 broken" in done.stdout  # the layers, purity and acyclic contracts all see it


def test_the_engine_reaching_for_logs_or_health_breaks_its_contract(tmp_path):
    """The engine is told what to report through its observer: importing ops (below it by layer) is still out."""
    done = lint_with(tmp_path, "engine/run.py", "from renderer.ops import health")
    assert done.returncode == 1
    assert "renderer.engine.run -> renderer.ops.health" in done.stdout
    assert "3 kept, 1 broken" in done.stdout  # the layers allow it: only the engine's own contract sees it
