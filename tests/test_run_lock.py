"""A run dir's owner (renderer/ops/run_lock.py) and what its commands do with a dir that is owned: `python -m
renderer`, `resume=` and `python -m renderer.watch` refuse it with exit code 2 naming the holder; timestamped
dirs are made unique; the leftovers clean-up removes only what the renderer names."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from renderer.batch import clean_leftovers
from renderer.cli.run_dir import fresh_dir
from renderer.media.ffmpeg import kill_strays
from renderer.ops import run_lock
from renderer.ops.files import RunLayout, atomic_path
from tests.conftest import ROOT, THREE_SCENES, TINY, run_cli


def _holder(run_dir: Path, what: str = "batch") -> subprocess.Popen:
    """Another process owning ``run_dir`` until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from renderer.ops import run_lock
        run_lock.acquire(Path({str(run_dir)!r}), {what!r})
        print("held", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def held(tmp_path):
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    try:
        yield run_dir, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_held_dir_is_refused_naming_its_holder_and_free_once_the_holder_is_killed(held):
    run_dir, proc = held
    with pytest.raises(run_lock.RunDirInUse) as refused:
        run_lock.acquire(run_dir, "batch", patience=0.1)
    assert f"pid {proc.pid} on {socket.gethostname()}" in str(refused.value) and "batch" in str(refused.value)
    assert str(proc.pid) in run_lock.in_use(run_dir)
    proc.send_signal(signal.SIGKILL)  # no clean-up of its own: the kernel lets go of the lock
    proc.wait()
    assert run_lock.in_use(run_dir) == ""
    with run_lock.hold(run_dir, "batch"):
        assert json.loads(RunLayout(run_dir).lock.read_text())["pid"] == os.getpid()
        with run_lock.hold(run_dir, "batch"):  # nested in one process: counted, not refused
            pass
        assert run_lock.in_use(run_dir)  # still held after the inner one let go


def test_batch_and_resume_of_a_dir_in_use_exit_2_and_touch_nothing(held):
    run_dir, proc = held
    saved = RunLayout(run_dir).saved_config
    saved.parent.mkdir(parents=True)
    saved.write_text("the running batch's config\n")
    RunLayout(run_dir).manifest.write_text('{"started": "x", "scripts": {}}')
    for args in ([f"hydra.run.dir={run_dir}"], [f"resume={run_dir}"]):
        done = run_cli(*TINY, "batch.inputs=[nothing.txt]", *args, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert f"pid {proc.pid}" in done.stderr, done.stderr
    assert saved.read_text() == "the running batch's config\n"
    assert RunLayout(run_dir).manifest.read_text() == '{"started": "x", "scripts": {}}'
    assert not (run_dir / "renderer.log").exists() and not RunLayout(run_dir).hydra.joinpath("resumed").exists()


def test_a_second_watcher_on_the_same_out_exits_2(held):
    run_dir, proc = held
    script = run_dir.parent / "tiny.txt"
    script.write_text(THREE_SCENES, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "renderer.watch", str(script), "--out", str(run_dir), *TINY],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"pid {proc.pid}" in done.stderr
    assert not (run_dir / "renderer.log").exists()


def test_runs_started_in_the_same_timestamp_get_a_dir_each(tmp_path):
    """The default dir is named after the second the run started: a second run in that second gets a suffix
    (here the timestamp is the year, so the runs need not race)."""
    for _ in range(2):
        done = run_cli(*TINY, "batch.inputs=[nothing.txt]", "hydra.run.dir=out/${now:%Y}", cwd=tmp_path, timeout=60)
        assert done.returncode == 2
    runs = sorted(p.name for p in (tmp_path / "out").iterdir())
    year = runs[0]
    assert runs == [year, f"{year}-2"]
    assert all((tmp_path / "out" / name / "manifest.json").exists() for name in runs)


def test_sweeps_started_in_the_same_timestamp_get_a_dir_each(tmp_path):
    """A sweep's jobs compose their config afresh: they land in the sweep's own dir, where its summary looks."""
    for _ in range(2):
        done = run_cli("-m", "theme=dark,matrix", *TINY, "batch.inputs=[nothing.txt]", "hydra.sweep.dir=out/${now:%Y}",
                       cwd=tmp_path, timeout=120)
        assert done.returncode == 2
        assert done.stderr.count("FAILED  theme=") == 2, done.stderr
    year = min(p.name for p in (tmp_path / "out").iterdir())
    for sweep in (year, f"{year}-2"):
        assert sorted(p.name for p in (tmp_path / "out" / sweep).iterdir()) == ["0", "1", "multirun.yaml"]


def test_fresh_dir_never_gives_one_dir_twice(tmp_path):
    base = tmp_path / "outputs" / "10-31-07"
    assert [fresh_dir(base).name for _ in range(3)] == ["10-31-07", "10-31-07-2", "10-31-07-3"]


def test_leftovers_clean_up_removes_only_what_the_renderer_names(tmp_path):
    """A run pointed at an existing folder (hydra.run.dir=~/project): the user's tmp/ and files stay."""
    layout = RunLayout(tmp_path / "project")
    mine = [layout.tmp / "notes.txt", layout.tmp / "build" / "a.o", layout.run_dir / "draft.part",
            layout.run_dir / "docs" / ".report.part", layout.tmp / "Draft.1"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the user's")
    ours = [layout.workdir("tiny") / "voice.wav", layout.health / "host-1.jsonl", layout.breakers / "b.json",
            layout.workers / "123"]
    for path in ours:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("work")
    with pytest.raises(RuntimeError):
        with atomic_path(layout.output("tiny", ".mp4")) as part:  # a write that never finished
            part.write_text("half")
            os.link(part, part.with_name(part.name.replace(".part", ".kept")))  # its name, kept to check
            raise RuntimeError
    left_part = next(layout.script_dir("tiny").glob("*.kept"))
    os.rename(left_part, left_part.with_name(left_part.name.replace(".kept", ".part")))  # a killed write's leftover

    clean_leftovers(layout)
    assert all(path.read_text() == "the user's" for path in mine)
    assert not any(path.exists() for path in ours)
    assert not list(layout.script_dir("tiny").iterdir())


def _tool_working_in(folder: Path) -> subprocess.Popen:
    return subprocess.Popen(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
                             "-i", "anullsrc", "-t", "60", "-f", "null", str(folder / "w" / "out.nut")],
                            stdin=subprocess.DEVNULL)


def test_kill_strays_spares_a_tool_whose_parent_lives(tmp_path):
    """Another run's (or a winding-down worker's) encode is its parent's to stop, not the clean-up's."""
    tool = _tool_working_in(tmp_path / "run" / "tmp")
    try:
        psutil.Process(tool.pid).cmdline()  # started
        assert kill_strays(tmp_path / "run" / "tmp") == 0
        assert kill_strays(tmp_path / "run" / "tm") == 0  # a path that only starts like it
        assert tool.poll() is None
    finally:
        tool.kill()
        tool.wait()


def test_kill_strays_stops_an_orphaned_tool(tmp_path):
    work = tmp_path / "run" / "tmp"
    launcher = subprocess.run(["sh", "-c", 'ffmpeg -nostdin -loglevel error -re -f lavfi -i anullsrc -t 60 -f null '
                               f'"{work}/w/out.nut" </dev/null >/dev/null 2>&1 & echo $!'],
                              capture_output=True, text=True, check=True)
    orphan = psutil.Process(int(launcher.stdout))  # its parent, the shell, has exited
    try:
        if orphan.ppid() not in (0, 1) and psutil.Process(orphan.ppid()).create_time() < orphan.create_time():
            pytest.skip("orphans are adopted by a live subreaper here: setpriv --pdeathsig covers those")
        assert kill_strays(work) == 1
        assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
    finally:
        if orphan.is_running():
            orphan.kill()
