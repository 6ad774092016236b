"""Progress: ffmpeg's own progress reaches the live view of the node running it; the batch bar names the
scripts in flight and what they are doing, on a terminal only, and not at all with progress=false."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

from renderer.media import ffmpeg
from renderer.ops import health, logs, progress
from renderer.ops.monitor import Aggregator
from tests.conftest import ROOT, THREE_SCENES, TINY


def test_ffmpeg_progress_reaches_the_live_view(tmp_path: Path):
    health.attach(tmp_path)
    seen: list[float] = []
    done = threading.Event()

    def watch() -> None:
        view = Aggregator(tmp_path / "tmp" / "health")
        while not done.is_set():
            view.update()
            fraction = view.live.get("s0", {}).get("nodes", {}).get("segment/0.0")
            if fraction is not None and (not seen or seen[-1] != fraction):
                seen.append(fraction)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with logs.correlate(script="s0"), health.in_flight("s0"), logs.correlate(node="segment/0.0"), \
                health.node_running("segment/0.0", total=5):
            # -re: read at the input's own rate, so this takes 2 s and ffmpeg reports along the way
            ffmpeg.run(["-re", "-f", "lavfi", "-i", "testsrc=size=64x36:rate=10:duration=2", "-f", "null", "-"],
                       duration=2.0)
        time.sleep(health.LIVE_WRITE_S * 2)
    finally:
        done.set()
        watcher.join()
        health.detach()
    assert any(0 < f < 1 for f in seen), seen
    assert seen == sorted(seen)  # it only moves forward
    view = Aggregator(tmp_path / "tmp" / "health")
    view.update()
    assert view.live == {}  # the script left the live view when it was done


def test_describe_names_scripts_their_nodes_and_progress():
    text = progress.describe({
        "b": {"nodes": {"voice/2": 0.0}, "done": 3, "total": 15},
        "a": {"nodes": {"segment/1.0": 0.42, "visual/2": 0.0}, "done": 7, "total": 15},
        "c": {"nodes": {}, "done": 15, "total": 15}, "d": {"nodes": {}, "done": 0, "total": 0}})
    assert text == "a segment/1.0 42% visual/2 [7/15] · b voice/2 [3/15] · c publishing [15/15] · +1 more"
    assert progress.describe({}) == ""


def run_on_terminal(tmp_path: Path, *extra: str, tty: bool = True) -> str:
    """Render a one-script batch with stderr on a pseudo-terminal (or a pipe); return what it showed."""
    inputs = tmp_path / "in"
    inputs.mkdir(exist_ok=True)
    (inputs / "s0.txt").write_text(THREE_SCENES, encoding="utf-8")
    cmd = [sys.executable, "-m", "renderer", *TINY, f"batch.inputs=[{inputs}/*.txt]",
           f"hydra.run.dir={tmp_path / 'run'}-{len(list(tmp_path.iterdir()))}", *extra]
    if not tty:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=True).stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a 160-column terminal
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    out = bytearray()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=300) == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def test_the_bar_shows_scripts_in_flight_on_a_terminal_only(tmp_path: Path):
    shown = run_on_terminal(tmp_path)
    assert "scripts:" in shown and "1/1" in shown
    stages = "voice|visual|terminal|timeline|level|narration|segment|soundtrack|mux|thumbnails"
    assert re.search(rf"s0 ({stages})\S* .*\[\d+/23\]", shown), shown
    assert "scripts:" not in run_on_terminal(tmp_path, "progress=false")
    assert "scripts:" not in run_on_terminal(tmp_path, tty=False)  # a pipe or a log file gets no bar
