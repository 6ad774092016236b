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


def test_a_layer_importing_upwards_or_a_circle_breaks_them(tmp_path):
    shutil.copytree(ROOT / "renderer", tmp_path / "renderer", ignore=shutil.ignore_patterns("__pycache__"))
    model = tmp_path / "renderer" / "script" / "model.py"
    model.write_text(model.read_text() + "\n\ndef _late():\n    from renderer.batch import BatchResult  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode == 1
    assert "renderer.script.model -> renderer.batch" in done.stdout  # named, with its line
    assert "1 kept, 3 broken" in done.stdout  # the layers, purity and acyclic contracts all see it
