"""The process service: timeouts with kill escalation, progress, kill_all, binary selection, feature check,
and a Ctrl-C/SIGTERM to a running batch that leaves no process and no temp file behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from renderer.media import ffmpeg
from tests.conftest import ROOT, TINY, TWO_SCENES

STUBBORN = """#!/usr/bin/env python3
import signal, sys, time, os
signal.signal(signal.SIGTERM, signal.SIG_IGN)   # ignores the polite request
open(sys.argv[-1], "w").write(str(os.getpid()))
time.sleep(600)
"""

POLITE = """#!/usr/bin/env python3
import sys, time, os
open(sys.argv[-1], "w").write(str(os.getpid()))
time.sleep(600)
"""


def fake_tool(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-ffmpeg"
    path.write_text(body)
    path.chmod(0o755)
    return path


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("body, escalates", [(POLITE, False), (STUBBORN, True)])
def test_timeout_stops_the_process_group(tmp_path, body, escalates):
    tool = fake_tool(tmp_path, body)
    pid_file = tmp_path / "pid"
    with pytest.raises(ffmpeg.FFmpegError, match="timed out after 1 s") as info:
        ffmpeg.run_tool([str(tool), str(pid_file)], timeout=1)
    pid = int(pid_file.read_text())
    assert gone(pid)
    assert ffmpeg.live_pids() == []
    expected_signal = signal.SIGKILL if escalates else signal.SIGTERM
    assert info.value.returncode == -expected_signal


def test_kill_all_stops_running_tools_from_another_thread(tmp_path):
    tool = fake_tool(tmp_path, STUBBORN)
    errors: list[Exception] = []
    pid_files = [tmp_path / f"pid{i}" for i in range(2)]

    def call(pid_file: Path) -> None:
        try:
            ffmpeg.run_tool([str(tool), str(pid_file)], timeout=120)
        except ffmpeg.FFmpegError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(p,)) for p in pid_files]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while not all(p.exists() and p.read_text() for p in pid_files) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(ffmpeg.live_pids()) == 2
    assert ffmpeg.kill_all(grace=0.5) == 2
    for t in threads:
        t.join(timeout=20)
    assert len(errors) == 2 and all("stopped by signal" in str(e) for e in errors)
    assert all(gone(int(p.read_text())) for p in pid_files)


def test_failure_carries_exit_code_and_stderr_tail():
    with pytest.raises(ffmpeg.FFmpegError) as info:
        ffmpeg.run(["-f", "lavfi", "-i", "nosuchsource=x", "-f", "null", "-"])
    assert info.value.returncode not in (0, None)
    assert "nosuchsource" in info.value.stderr_tail
    assert info.value.cmd[0].endswith("ffmpeg")


def test_secrets_are_redacted_from_errors(monkeypatch):
    monkeypatch.setenv("RUNWAY_API_KEY", "key_supersecretvalue123")
    with pytest.raises(ffmpeg.FFmpegError) as info:
        ffmpeg.run(["-i", "https://127.0.0.1:9/x?token=key_supersecretvalue123", "-f", "null", "-"], timeout=20)
    assert "key_supersecretvalue123" not in str(info.value)
    assert "key_supersecretvalue123" not in " ".join(info.value.cmd)


def test_progress_reports_fractions_up_to_one(tmp_path):
    seen: list[float] = []
    ffmpeg.run(["-f", "lavfi", "-i", "testsrc2=s=160x90:r=25:d=4", "-c:v", "libx264", "-preset", "ultrafast",
                "-f", "mp4", str(tmp_path / "p.mp4")], duration=4.0, on_progress=seen.append)
    assert seen and seen[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in seen)
    assert seen == sorted(seen)
    assert ffmpeg.probe(tmp_path / "p.mp4").resolution == (160, 90)


def test_binary_selection_order(tmp_path, monkeypatch):
    tool = fake_tool(tmp_path, POLITE)
    monkeypatch.delenv("FFMPEG_PATH", raising=False)
    ffmpeg.configure(ffmpeg_path=str(tool))
    try:
        assert ffmpeg.binary("ffmpeg") == str(tool)
        monkeypatch.setenv("FFMPEG_PATH", "/usr/bin/ffmpeg")
        assert ffmpeg.binary("ffmpeg") == "/usr/bin/ffmpeg"  # the environment wins over config
        monkeypatch.setenv("FFMPEG_PATH", str(tmp_path / "missing"))
        with pytest.raises(ffmpeg.FFmpegError, match="FFMPEG_PATH"):
            ffmpeg.binary("ffmpeg")
    finally:
        ffmpeg.configure()


def test_feature_check_names_what_is_missing(tmp_path, monkeypatch):
    ffmpeg.check_features()  # the real one has everything
    lacking = tmp_path / "ffmpeg"
    lacking.write_text("#!/bin/sh\necho ' V..... libx264   H.264'\necho ' A..... aac   AAC'\n")
    lacking.chmod(0o755)
    monkeypatch.setenv("FFMPEG_PATH", str(lacking))
    with pytest.raises(ffmpeg.FFmpegError, match=r"lacks .*ass.*apt-get install ffmpeg"):
        ffmpeg.check_features()


def test_cli_without_usable_ffmpeg_exits_2_with_the_fix(tmp_path):
    script = tmp_path / "one.txt"
    script.write_text(TWO_SCENES, encoding="utf-8")
    env = {**os.environ, "FFMPEG_PATH": str(tmp_path / "nope")}
    result = subprocess.run([sys.executable, "-m", "renderer", f"batch.inputs=[{script}]",
                             f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "FFMPEG_PATH" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_batch_leaves_nothing_behind(tmp_path, sig):
    inputs = tmp_path / "in"
    inputs.mkdir()
    long_script = TWO_SCENES.replace("[0:03 – Two]", "[0:40 – Two]")  # 40 s of video: still encoding when hit
    for name in ("a", "b", "c"):
        (inputs / f"{name}.txt").write_text(long_script, encoding="utf-8")
    run_dir = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith(("batch.backend", "format.width", "format.height"))]
    proc = subprocess.Popen([sys.executable, "-m", "renderer", *overrides, "format.width=640",
                             "format.height=360", f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=2",
                             f"hydra.run.dir={run_dir}"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    deadline = time.monotonic() + 90
    assembling = False
    while time.monotonic() < deadline and proc.poll() is None and not assembling:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for child in children:
            try:  # processes come and go while we look
                if child.name() == "ffmpeg":
                    seen.add(child.pid)
                    assembling = assembling or "-filter_complex_script" in child.cmdline()
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    assert proc.poll() is None, "the batch finished before it could be interrupted"
    assert seen, "no ffmpeg was started"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert all(gone(pid) for pid in seen)
    assert list((run_dir / "tmp").iterdir()) == []
    assert not list(run_dir.rglob("*.part"))
    assert not any(p.suffix == ".mp4" for p in run_dir.rglob("*.mp4") if p.stat().st_size == 0)


def test_a_worker_killed_mid_batch_costs_no_script(tmp_path):
    """kill -9 of one joblib worker (as the OOM killer would): its media tools are stopped, the scripts it
    took down are rendered again, the batch finishes with every video."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    long_script = TWO_SCENES.replace("[0:03 – Two]", "[0:30 – Two]")
    for name in ("a", "b", "c"):
        (inputs / f"{name}.txt").write_text(long_script, encoding="utf-8")
    run_dir = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith(("batch.backend", "format.width", "format.height"))]
    proc = subprocess.Popen([sys.executable, "-m", "renderer", *overrides, "format.width=640", "format.height=360",
                             f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=2", f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, tools = None, []
    deadline = time.monotonic() + 90
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if child.name() == "ffmpeg" and "-filter_complex_script" in child.cmdline():
                    victim = child.parent()  # the worker running this encode
                    tools = victim.children(recursive=True)
                    break
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    assert victim is not None, "no encode was seen running"
    victim.kill()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "a worker died" in err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {s["status"] for s in manifest["scripts"].values()} == {"ok"}
    assert all(gone(t.pid) for t in tools)
    assert list((run_dir / "tmp").iterdir()) == []


def _tools_of(pid: int) -> list[psutil.Process]:
    out = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name() in ffmpeg.MEDIA_TOOLS or child.name() == "sleep":
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def _cmdlines(procs: list[psutil.Process]) -> list[str]:
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            out.append(" ".join(proc.cmdline()))
    return out


def _wait_gone(procs: list[psutil.Process], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(gone(p.pid) for p in procs):
        time.sleep(0.05)
    return [p.pid for p in procs if not gone(p.pid)]


def test_a_tool_dies_with_the_process_that_started_it():
    """SIGKILL leaves no chance to clean up: the tool must go by itself (its parent-death signal)."""
    parent = subprocess.Popen([sys.executable, "-c", "from renderer.media import ffmpeg; ffmpeg.run_tool(['sleep', '60'])"],
                              cwd=ROOT)
    try:
        deadline = time.monotonic() + 10
        while not (tools := _tools_of(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert tools, "the tool never started"
        parent.kill()
        parent.wait(timeout=5)
        assert _wait_gone(tools, 3) == []
    finally:
        parent.kill()


def test_kill_9_of_the_whole_renderer_leaves_no_media_tool_running(tmp_path):
    script = tmp_path / "long.txt"
    script.write_text(TWO_SCENES.replace("[0:03 – Two]", "[0:40 – Two]"), encoding="utf-8")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "renderer", f"batch.inputs=[{script}]", "batch.n_jobs=1",
                             "encode.chunk_s=0", "script.min_last_scene_s=40", "cache.enabled=false",
                             f"hydra.run.dir={run_dir}"], cwd=ROOT,  # every encode runs for seconds
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, tools = time.monotonic() + 90, []
        while time.monotonic() < deadline and not any("-frames:v" in line for line in _cmdlines(tools)):
            assert proc.poll() is None, "the batch ended before an encode was seen"
            tools = _tools_of(proc.pid)
            time.sleep(0.05)
        assert tools, "no encode was seen running"
        os.killpg(proc.pid, signal.SIGKILL)  # the renderer and its workers, as `kill -9 -PGID` does
        proc.wait(timeout=10)
        assert _wait_gone(tools, 3) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_tool_started_in_the_background_runs_niced_from_its_start():
    """The soundtrack's tools yield the cores to the encodes: niced before their first instruction (no window at
    the renderer's priority), the renderer's own priority untouched, and tools started outside it not niced."""
    ask = [sys.executable, "-c", "import os; print(os.nice(0))"]
    ours = os.nice(0)
    with ffmpeg.in_background():
        niced = int(ffmpeg.run_tool(ask))
    assert niced == min(19, ours + ffmpeg.BACKGROUND_NICE)
    assert int(ffmpeg.run_tool(ask)) == ours == os.nice(0)


def test_a_complete_ffmpeg_is_noted_and_not_asked_again(tmp_path, monkeypatch):
    """Listing the encoders and filters costs two runs of ffmpeg (~0.25 s) at every start; once a binary has
    them all, that is noted per machine and binary, and read back by the next process."""
    calls = tmp_path / "calls"
    counting = tmp_path / "bin" / "ffmpeg"
    counting.parent.mkdir()
    counting.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {ffmpeg.binary("ffmpeg")} "$@"\n')
    counting.chmod(0o755)
    monkeypatch.setenv("FFMPEG_PATH", str(counting))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    check = [sys.executable, "-c", "from renderer.media import ffmpeg; ffmpeg.check_features()"]
    for _ in range(2):
        subprocess.run(check, check=True, cwd=ROOT, env=os.environ, timeout=60)
    assert calls.read_text().split() == ["-hide_banner", "-encoders", "-hide_banner", "-filters"]  # the first only
    counting.write_text(counting.read_text() + "\n")  # another binary at that path: asked again
    subprocess.run(check, check=True, cwd=ROOT, env=os.environ, timeout=60)
    assert calls.read_text().split().count("-encoders") == 2
