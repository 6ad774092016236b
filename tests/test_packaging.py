"""``pip install .`` (not editable) gives a renderer that works from any directory: the config ships inside the
package (conf/ as ``renderer.conf``), every command runs, and a user's own config dir is on the search path."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY, TWO_SCENES, ffprobe


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the renderer's wheel installed; its dependencies come from this interpreter's
    site-packages (nothing is downloaded)."""
    base = tmp_path_factory.mktemp("install")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(base / "dist"), str(ROOT)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(base / "venv")], check=True)
    wheel = next((base / "dist").glob("renderer-*.whl"))
    subprocess.run([str(base / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    return base / "venv"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """A working directory with no clone in sight, and a user config dir of its own."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(venv: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ |= {"PATH": f"{venv / 'bin'}:{environ['PATH']}", "RENDERER_CONFIG_DIR": str(cwd / "myconf"), **env}
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=environ, timeout=300)


def test_the_wheel_holds_every_module_config_and_template(venv):
    wheel = next((venv.parent / "dist").glob("renderer-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "renderer").rglob("*")
                if p.suffix in (".py", ".html")}
    expected |= {"renderer/conf/" + p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*")
                 if p.suffix in (".py", ".yaml")}
    assert expected - names == set()
    assert any(name.endswith("entry_points.txt") for name in names)


def test_the_installed_package_is_the_one_that_runs(venv, elsewhere):
    done = run(venv, "python", "-c", "import renderer, renderer.conf; print(renderer.__file__, renderer.conf.__file__)",
               cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert all(path.startswith(str(venv)) for path in done.stdout.split())


def test_the_renderer_command_renders_from_any_directory(venv, elsewhere):
    (elsewhere / "tiny.txt").write_text(TWO_SCENES, encoding="utf-8")
    done = run(venv, "renderer", *TINY, "batch.inputs=[tiny.txt]", "hydra.run.dir=out", cwd=elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    video = elsewhere / "out" / "tiny" / "tiny.mp4"
    assert {s["codec_type"] for s in ffprobe(video)["streams"]} == {"video", "audio"}


@pytest.mark.parametrize("tool", [["renderer.check", "tiny.txt"], ["renderer.cache", "--dir", "c", "stats"],
                                  ["renderer.clean", "--older-than", "7d", "--dry-run"], ["renderer.themes", "list"],
                                  ["renderer.watch", "--help"], ["renderer.fakes", "--help"]])
def test_every_tool_runs_from_the_installed_package(venv, elsewhere, tool):
    (elsewhere / "tiny.txt").write_text(TWO_SCENES, encoding="utf-8")
    (elsewhere / "outputs").mkdir()
    done = run(venv, "python", "-m", *tool, cwd=elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_theme_imported_into_the_user_config_dir_is_found_by_name(venv, elsewhere):
    (elsewhere / "mine.json").write_text('{"name": "Mine", "background": "#102030", "foreground": "#eeeeee", '
                                         + ", ".join(f'"{c}": "#808080"' for c in (
                                             "black", "red", "green", "yellow", "blue", "purple", "cyan", "white",
                                             "brightBlack", "brightRed", "brightGreen", "brightYellow", "brightBlue",
                                             "brightPurple", "brightCyan", "brightWhite")) + "}")
    imported = run(venv, "python", "-m", "renderer.themes", "import", "mine.json", cwd=elsewhere)
    assert imported.returncode == 0, imported.stderr
    assert (elsewhere / "myconf" / "theme" / "mine.yaml").is_file()
    shown = run(venv, "renderer", "theme=mine", "--cfg", "job", "--package", "theme", cwd=elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert "background: '#102030'" in shown.stdout
