"""``python -m renderer.watch``: a real watcher process, real saves, real ffmpeg.

One render at start; a narration edit redoes only that voice, the soundtrack and the mux; a broken save
reports file:line and keeps the last good video; a fix renders again; SIGTERM mid-render exits 130 and
leaves no media tool running."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from renderer.media.ffmpeg import MEDIA_TOOLS
from tests.conftest import ROOT
from tests.test_incremental import THREE_SCENES

TINY = ["format.width=192", "format.height=108", "format.fps=10", "encode.preset=ultrafast", "visual.fps=5"]
FIRST_RENDER_S = 120
EDIT_RENDER_S = 60


class Watch:
    """The watcher process, its stdout and stderr read line by line into queues (reads time out)."""

    def __init__(self, script: Path, out: Path, *overrides: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "renderer.watch", str(script), "--out", str(out),
                                      *overrides], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.out: queue.Queue[str] = queue.Queue()
        self.err: queue.Queue[str] = queue.Queue()
        self.err_seen: list[str] = []
        for stream, q in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, q), daemon=True).start()

    @staticmethod
    def _pump(stream, q: queue.Queue[str]) -> None:
        for line in stream:
            q.put(line.rstrip("\n"))

    def _wait(self, q: queue.Queue[str], wanted: str, timeout: float, seen: list[str]) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = q.get(timeout=min(left, 1.0))
            except queue.Empty:
                if self.proc.poll() is not None and q.empty():
                    break
                continue
            seen.append(line)
            if wanted in line:
                return line
        raise AssertionError(f"no line with {wanted!r} within {timeout} s (exit {self.proc.poll()}); "
                             f"seen: {seen}; stderr so far: {self.drain_err()}")

    def stdout_line(self, wanted: str, timeout: float) -> str:
        return self._wait(self.out, wanted, timeout, [])

    def stderr_line(self, wanted: str, timeout: float) -> str:
        return self._wait(self.err, wanted, timeout, self.err_seen)

    def drain_err(self) -> list[str]:
        while not self.err.empty():
            self.err_seen.append(self.err.get_nowait())
        return self.err_seen

    def media_children(self) -> list[psutil.Process]:
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [c for c in children if _is_media_tool(c)]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _is_media_tool(proc: psutil.Process) -> bool:
    try:
        return proc.name() in MEDIA_TOOLS
    except psutil.Error:
        return False


def media_tools_under(folder: Path) -> list[psutil.Process]:
    """Media tools still running with ``folder`` in their command line (orphans of the watcher, too)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] in MEDIA_TOOLS and str(folder) in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.fixture
def watched(tmp_path: Path):
    script = tmp_path / "tiny.txt"
    script.write_text(THREE_SCENES, encoding="utf-8")
    watch = Watch(script, tmp_path / "out", *TINY, f"cache.dir={tmp_path / 'cache'}")
    try:
        yield watch, script, tmp_path / "out" / "tiny" / "tiny.mp4"
    finally:
        watch.kill()
        for proc in media_tools_under(tmp_path):
            proc.kill()


def save(script: Path, text: str) -> None:
    """Like an editor: write a temp file beside it, then rename it over the script."""
    tmp = script.with_name(f".{script.name}.swp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, script)


def test_renders_on_start_and_on_every_save_and_stops_on_sigterm(watched, tmp_path):
    watch, script, video = watched
    watch.stdout_line("watching", timeout=30)
    first = watch.stdout_line("refreshed", timeout=FIRST_RENDER_S)
    assert "tiny/tiny.mp4 (0:" in first and "segment ×3" in first, first
    assert video.exists()
    before = video.stat().st_mtime_ns

    # (1) one scene's narration: its voice, its burnt-in captions and so its segment (the default draws the words),
    # the soundtrack, the mux and the thumbnails (taken from the segments); no other scene re-encoded
    edited = THREE_SCENES.replace("“And two.”", "“And two, said differently.”")
    save(script, edited)
    line = watch.stdout_line("refreshed", timeout=EDIT_RENDER_S)
    redone = line.split("redone: ")[1].rstrip(")").split(", ")
    assert sorted(redone) == ["captions/1", "join", "level/1", "mux", "narration/1", "segment/1.0", "soundtrack",
                              "thumbnails", "voice/1"], line
    assert video.stat().st_mtime_ns != before
    good = video.read_bytes()

    # (2) a timestamp going backwards: file:line on stderr, the last good video kept as it was
    broken = edited.replace("[0:07 – Three]", "[0:02 – Three]")
    save(script, broken)
    issue = watch.stderr_line("timestamp", timeout=EDIT_RENDER_S)
    assert issue.startswith(f"{script}:{line_of(broken, '[0:02 – Three]')}: "), issue
    assert " — " in issue  # the hint
    watch.stderr_line(f"keeping the last good video: {video}", timeout=10)
    assert video.read_bytes() == good

    # (3) fixed again: refreshed
    save(script, edited)
    assert "nothing changed" in watch.stdout_line("refreshed", timeout=EDIT_RENDER_S)

    # (4) SIGTERM while a save re-encodes every scene (terminal text changed): exit 130, no tool left
    save(script, edited.replace("$ uptime", "$ uptime --pretty").replace("A red sky", "A grey sky"))
    deadline = time.monotonic() + 20
    while not watch.media_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    watch.proc.send_signal(signal.SIGTERM)
    assert watch.proc.wait(timeout=15) == 130
    assert not media_tools_under(tmp_path)
    work = tmp_path / "out" / "tmp"
    assert not work.exists() or not any(work.iterdir()), list(work.iterdir())  # work files removed
    assert not any("Traceback" in line for line in watch.drain_err()), watch.err_seen


def test_what_it_prints_of_a_script_cannot_drive_the_terminal(capsys):
    from renderer.cli import watch

    watch.report_notes({"issues": [{"severity": "warning",
                                    "message": "s.txt:2: scene 1 “Evil\x1b]52;c;eA==\x07\x1b[2J” is empty"}]})
    assert capsys.readouterr().err == "warning: s.txt:2: scene 1 “Evil” is empty\n"


def test_a_bad_override_exits_2_with_hydras_message(tmp_path):
    script = tmp_path / "tiny.txt"
    script.write_text(THREE_SCENES, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "renderer.watch", str(script), "--out", str(tmp_path / "out"),
                           "theme=matirx"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "theme/matirx" in done.stderr
    assert not done.stdout
