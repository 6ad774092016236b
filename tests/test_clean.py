"""python -m renderer.clean: old runs go; young, kept, running and non-run folders stay; removal is crash-safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from renderer.cli.clean import DEFAULT_GRACE, InUse, ago, find_runs, main, parse_duration, plan, remove_run
from renderer.ops.files import human

ROOT = Path(__file__).resolve().parent.parent
MIN, HOUR, DAY = 60, 3600, 86400


def iso(seconds_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, timezone.utc).isoformat(timespec="seconds")


def age_tree(path: Path, seconds_ago: float) -> None:
    """Every file and folder in ``path`` (and ``path`` itself) last modified ``seconds_ago``."""
    t = time.time() - seconds_ago
    for dirpath, _, files in os.walk(path, topdown=False):
        for name in files:
            os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)
        os.utime(dirpath, (t, t))


def make_run(outputs: Path, rel: str, *, age: float, finished: float | None | str = "age", size: int = 1000,
             manifest: bool = True, hydra: bool | str = True, **extra) -> Path:
    """A run dir like the renderer's, every file ``age`` seconds old; ``finished``: seconds ago, None for a
    run that has not finished, "age" for the same as its files."""
    run = outputs / rel
    run.mkdir(parents=True)
    if hydra:
        (run / ".hydra").mkdir()
        (run / ".hydra" / "config.yaml").write_text("batch:\n  n_jobs: 1\n")
        job = hydra if isinstance(hydra, str) else "renderer"  # hydra="train": another Hydra app's run
        (run / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  job:\n    name: {job}\n")
    (run / "renderer.log").write_text("started\n")
    (run / "clip").mkdir()
    (run / "clip" / "clip.mp4").write_bytes(b"\0" * size)
    if manifest:
        done = age if finished == "age" else finished
        data = {"run_dir": str(run), "started": iso(age + 60), "finished": None if done is None else iso(done),
                "scripts": {"clip": {"script": "clip.txt", "status": "ok"}}, **extra}
        (run / "manifest.json").write_text(json.dumps(data))
    age_tree(run, age)
    return run


def run_size(run: Path) -> int:
    return sum(p.stat().st_size for p in run.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture
def outputs(tmp_path) -> Path:
    path = tmp_path / "outputs"
    path.mkdir()
    return path


def clean(outputs: Path, *args: str) -> int:
    return main(["--outputs", str(outputs), *args])


# --------------------------------------------------------------------------- age


def test_runs_older_than_the_limit_go_and_newer_ones_stay(outputs, capsys):
    old = make_run(outputs, "2026-11-01/10-00-00", age=10 * DAY, size=3000)
    old_job = make_run(outputs, "multirun/2026-11-01/11-00-00/0", age=9 * DAY)
    (outputs / "multirun/2026-11-01/11-00-00/multirun.yaml").write_text("hydra: {}\n")
    new = make_run(outputs, "2026-11-30/09-00-00", age=1 * DAY)
    new_job = make_run(outputs, "multirun/2026-11-30/09-30-00/0", age=2 * DAY)
    size, job_size = run_size(old), run_size(old_job)

    assert clean(outputs, "--older-than", "7d") == 0

    assert not old.exists() and not old_job.exists()
    assert new.is_dir() and new_job.is_dir() and (new / "clip" / "clip.mp4").stat().st_size == 1000
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"removed {old} ({human(size)}, finished 1w 3d ago)")  # oldest first
    assert out[1].startswith(f"removed {old_job} (")
    assert out[-1] == f"removed 2 runs, {human(size + job_size)}; kept 2"
    assert not list(outputs.rglob("*.deleting"))


def test_age_is_the_finish_time_else_the_newest_file(outputs):
    # finished recently, though its files are old (a resume that only had the last script to do)
    resumed = make_run(outputs, "2026-10-01/10-00-00", age=30 * DAY, finished=1 * DAY)
    # finished long ago, though a file in it was touched since
    touched = make_run(outputs, "2026-10-02/10-00-00", age=30 * DAY)
    os.utime(touched / "clip" / "clip.mp4", (time.time() - DAY,) * 2)
    # no manifest (it stopped before writing one): its newest file decides
    no_manifest_old = make_run(outputs, "2026-10-03/10-00-00", age=10 * DAY, manifest=False)
    no_manifest_new = make_run(outputs, "2026-10-04/10-00-00", age=10 * DAY, manifest=False)
    os.utime(no_manifest_new / "renderer.log", (time.time() - DAY,) * 2)
    # killed long ago: finished is null, nothing written for days
    interrupted = make_run(outputs, "2026-10-05/10-00-00", age=10 * DAY, finished=None)

    assert clean(outputs, "--older-than", "7d") == 0

    assert resumed.exists() and no_manifest_new.exists()
    assert not touched.exists() and not no_manifest_old.exists() and not interrupted.exists()


def test_keep_keeps_the_newest_runs_whatever_their_age(outputs, capsys):
    runs = [make_run(outputs, f"2026-10-{10 + n:02d}/10-00-00", age=(20 - n) * DAY) for n in range(5)]
    assert clean(outputs, "--older-than", "7d", "--keep", "2") == 0
    assert [r.exists() for r in runs] == [False, False, False, True, True]
    assert capsys.readouterr().out.splitlines()[-1].endswith("; kept 2")


# --------------------------------------------------------------------------- runs that may be running


def test_a_running_run_stays(outputs, capsys):
    running = make_run(outputs, "2026-11-30/10-00-00", age=2 * HOUR, finished=None)
    os.utime(running / "renderer.log", (time.time() - 3 * MIN,) * 2)  # it logged 3 minutes ago
    # a finished run that a resume= is starting on: .hydra/resumed written, manifest not yet reset
    resuming = make_run(outputs, "2026-11-01/10-00-00", age=20 * DAY)
    (resuming / ".hydra" / "resumed").mkdir()
    (resuming / ".hydra" / "resumed" / "overrides.yaml").write_text("- resume=...\n")
    interrupted = make_run(outputs, "2026-11-30/08-00-00", age=2 * HOUR, finished=None)

    assert clean(outputs, "--older-than", "1m") == 0

    assert running.exists() and resuming.exists()
    assert not interrupted.exists()
    captured = capsys.readouterr()
    assert f"kept {running}: may be running: written to 3m" in captured.err
    assert f"kept {resuming}: may be running" in captured.err
    assert f"removed {interrupted} (" in captured.out and "interrupted, last written 2h" in captured.out
    assert captured.out.splitlines()[-1].endswith("; kept 2")


def test_a_run_a_process_has_open_stays_however_quiet(outputs, capsys):
    quiet = make_run(outputs, "2026-11-29/10-00-00", age=DAY, finished=None)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'a'); "
                               "print('open', flush=True); time.sleep(120)", str(quiet / "renderer.log")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        age_tree(quiet, DAY)
        assert clean(outputs, "--older-than", "1h") == 0
        assert quiet.exists()
        assert f"kept {quiet}: in use: process {holder.pid} " in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert clean(outputs, "--older-than", "1h") == 0
    assert not quiet.exists()


def _lock_holder(run: Path) -> subprocess.Popen:
    """A renderer process owning ``run`` (as a batch, a resume or a watcher does) until killed."""
    code = ("import sys, time; from pathlib import Path; from renderer.ops import run_lock; "
            "run_lock.acquire(Path(sys.argv[1]), 'batch'); print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_run_whose_lock_is_held_stays_and_the_holder_is_named(outputs, capsys):
    """A run on another host of a shared disk: no process here, nothing written for hours; its lock says."""
    quiet = make_run(outputs, "2026-11-29/10-00-00", age=DAY, finished=None)
    holder = _lock_holder(quiet)
    try:
        age_tree(quiet, DAY)
        assert clean(outputs, "--older-than", "1h") == 0
        assert quiet.exists()
        assert f"kept {quiet}: in use: held by batch (pid {holder.pid} on " in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert clean(outputs, "--older-than", "1h") == 0
    assert not quiet.exists()


def test_a_run_taken_after_the_plan_is_kept_at_its_removal(outputs):
    """The plan is made first, the removals follow (they may take long): each one checks again."""
    run = make_run(outputs, "2026-11-01/10-00-00", age=10 * DAY)
    (decided,) = plan(find_runs(outputs), time.time(), 7 * DAY, 0, DEFAULT_GRACE)
    assert decided.decision == "remove"
    holder = _lock_holder(run)  # a resume= starts now
    try:
        age_tree(run, 10 * DAY)
        with pytest.raises(InUse, match=f"pid {holder.pid}"):
            remove_run(run)
        assert (run / "clip" / "clip.mp4").exists()
    finally:
        holder.kill()
        holder.wait()
    (run / "renderer.log").write_text("resumed\n")  # a run written to within --grace: kept too
    with pytest.raises(InUse, match="may be running"):
        remove_run(run)
    assert run.exists()


def test_a_run_holding_a_stage_cache_stays(outputs, capsys):
    run = outputs / "2026-11-01/10-00-00"
    holder = make_run(outputs, "2026-11-01/10-00-00", age=20 * DAY, cache_dir=str(run / "cache"))
    assert clean(outputs, "--older-than", "7d") == 0
    assert holder.exists() and "holds the stage cache" in capsys.readouterr().err


# --------------------------------------------------------------------------- what is never touched


def test_dry_run_deletes_nothing(outputs, capsys):
    old = make_run(outputs, "2026-11-01/10-00-00", age=11 * DAY)
    job = make_run(outputs, "multirun/2026-11-01/11-00-00/0", age=10 * DAY)
    leftover = outputs / "2026-11-02" / ".10-00-00.deleting"
    (leftover / "clip").mkdir(parents=True)
    (leftover / "clip" / "clip.mp4").write_bytes(b"x" * 10)
    young = make_run(outputs, "2026-11-30/10-00-00", age=HOUR)
    before = sorted(str(p) for p in outputs.rglob("*"))

    assert clean(outputs, "--older-than", "7d", "--dry-run") == 0

    assert sorted(str(p) for p in outputs.rglob("*")) == before
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"would finish removing {leftover} (10 B, left by an interrupted clean)"
    assert out[1].startswith(f"would remove {old} (") and out[2].startswith(f"would remove {job} (")
    assert out[-1] == (f"would remove 2 runs, {human(run_size(old) + run_size(job))}; would keep 1; "
                       "would finish 1 interrupted removal (10 B)")
    assert young.exists()


def test_cache_watch_and_other_folders_are_never_touched(outputs, tmp_path):
    cache_entry = outputs / ".cache" / "voice" / "ab" / ("ab" + "0" * 62)
    cache_entry.mkdir(parents=True)
    (cache_entry / "entry.json").write_text("{}")
    make_run(outputs, ".cache/2026-11-01/10-00-00", age=30 * DAY)  # even one shaped like a run
    make_run(outputs, "watch/descent", age=30 * DAY)  # the watch dir, even with run markers
    (outputs / "watch" / "renderer.log").write_text("watching\n")
    notes = outputs / "2026-11-01" / "notes"
    notes.mkdir(parents=True)
    (notes / "todo.txt").write_text("not a run")
    other = outputs / "2026-11-01" / "other-tool"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"name": "some web app", "version": 1}))
    (outputs / "2026-11-01" / "stray.txt").write_text("a file")
    nested = make_run(outputs, "2026-11-01/deeper/still/10-00-00", age=30 * DAY)  # not at a run position
    elsewhere = make_run(tmp_path, "elsewhere/10-00-00", age=30 * DAY)
    (outputs / "2026-11-01" / "linked").symlink_to(elsewhere, target_is_directory=True)
    top_run = make_run(outputs, "10-00-00", age=30 * DAY)  # a run directly in outputs/ (hydra.run.dir=...)
    # another Hydra app's runs share outputs/: a .hydra/ folder alone is not a renderer run
    training = make_run(outputs, "2026-11-01/09-00-00", age=30 * DAY, manifest=False, hydra="train")
    (training / "model.ckpt").write_bytes(b"weights")
    age_tree(outputs, 30 * DAY)
    before = sorted(str(p) for p in outputs.rglob("*"))

    assert clean(outputs, "--older-than", "0m") == 0

    assert sorted(str(p) for p in outputs.rglob("*")) == before
    assert elsewhere.exists() and nested.exists() and top_run.exists()


# --------------------------------------------------------------------------- crash safety and tidying


def test_a_leftover_deleting_dir_is_finished(outputs, capsys):
    leftover = outputs / "2026-11-01" / ".10-00-00.deleting"
    (leftover / "clip").mkdir(parents=True)
    (leftover / "clip" / "clip.mp4").write_bytes(b"x" * 2048)
    job_leftover = outputs / "multirun" / "2026-11-02" / "09-00-00" / ".1.deleting"
    job_leftover.mkdir(parents=True)
    (job_leftover.parent / "multirun.yaml").write_text("hydra: {}\n")
    young = make_run(outputs, "2026-11-30/10-00-00", age=HOUR)

    assert clean(outputs, "--older-than", "7d") == 0

    assert not (outputs / "2026-11-01").exists() and not (outputs / "multirun" / "2026-11-02").exists()
    assert young.exists() and (outputs / "multirun").is_dir()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"finished removing {leftover} (2.0 KiB, left by an interrupted clean)"
    assert out[-1] == "removed 0 runs, 0 B; kept 1; finished 2 interrupted removals (2.0 KiB)"


def test_a_removal_is_a_rename_then_a_delete(outputs, monkeypatch):
    """Killed between the two steps, a run is a hidden .deleting dir, never half a run under its name."""
    import shutil  # the stdlib's rmtree stands in for a crash: Ctrl-C at the worst moment

    old = make_run(outputs, "2026-11-01/10-00-00", age=10 * DAY)
    seen = []

    def crash(path, **kwargs):  # the process dies just after the rename
        seen.append(Path(path))
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", crash)
    assert clean(outputs, "--older-than", "7d") == 130
    assert seen == [outputs / "2026-11-01" / ".10-00-00.deleting"]
    assert not old.exists() and seen[0].is_dir()
    monkeypatch.undo()
    assert clean(outputs, "--older-than", "7d") == 0
    assert not (outputs / "2026-11-01").exists()


def test_empty_date_folders_left_behind_are_removed(outputs):
    make_run(outputs, "2026-11-01/10-00-00", age=10 * DAY)
    make_run(outputs, "2026-11-01/11-00-00", age=10 * DAY)
    mixed_old = make_run(outputs, "2026-11-02/10-00-00", age=10 * DAY)
    mixed_young = make_run(outputs, "2026-11-02/23-00-00", age=HOUR)
    make_run(outputs, "multirun/2026-11-03/10-00-00/0", age=10 * DAY)
    make_run(outputs, "multirun/2026-11-03/10-00-00/1", age=10 * DAY)
    (outputs / "multirun/2026-11-03/10-00-00/multirun.yaml").write_text("hydra: {}\n")
    half_sweep = make_run(outputs, "multirun/2026-11-04/10-00-00/0", age=10 * DAY)
    running_job = make_run(outputs, "multirun/2026-11-04/10-00-00/1", age=MIN, finished=None)
    (outputs / "multirun/2026-11-04/10-00-00/multirun.yaml").write_text("hydra: {}\n")

    assert clean(outputs, "--older-than", "7d") == 0

    assert sorted(p.name for p in outputs.iterdir()) == ["2026-11-02", "multirun"]
    assert not mixed_old.exists() and mixed_young.exists()
    assert sorted(p.name for p in (outputs / "multirun").iterdir()) == ["2026-11-04"]
    assert not half_sweep.exists() and running_job.exists()
    assert (running_job.parent / "multirun.yaml").exists()


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("text, seconds", [("7d", 7 * DAY), ("12h", 12 * HOUR), ("30m", 30 * MIN),
                                           ("2w", 14 * DAY), ("90s", 90), ("1.5d", 1.5 * DAY), ("0m", 0),
                                           (" 3H ", 3 * HOUR)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_ago():
    assert ([ago(s) for s in (0, 59, 3725, 7205, 10 * DAY + 5, 2 * DAY + 30, -4)]
            == ["0s", "59s", "1h 2m", "2h", "1w 3d", "2d", "0s"])


@pytest.mark.parametrize("value", ["7x", "7", "d", "-1d", "", "7 days", "1d2h"])
def test_a_bad_older_than_is_exit_2_with_a_clear_message(outputs, capsys, value):
    with pytest.raises(SystemExit) as exc:
        clean(outputs, f"--older-than={value}")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --older-than: not a duration: {value!r} (use a number and a unit: 30m, 12h, 7d, 2w)" in err


def test_other_bad_arguments_are_exit_2(outputs, tmp_path, capsys):
    make_run(outputs, "2026-11-01/10-00-00", age=10 * DAY)
    for argv in (["--keep", "-1"], ["--keep", "two"], []):  # [] : --older-than is required
        with pytest.raises(SystemExit) as exc:
            clean(outputs, *argv)
        assert exc.value.code == 2
    assert main(["--older-than", "7d", "--outputs", str(tmp_path / "nope")]) == 2
    assert f"error: no outputs folder at {tmp_path / 'nope'}" in capsys.readouterr().err
    assert (outputs / "2026-11-01" / "10-00-00").exists()


def test_cli(outputs):
    old = make_run(outputs, "2026-11-01/10-00-00", age=10 * DAY)
    size = run_size(old)
    young = make_run(outputs, "2026-11-30/10-00-00", age=HOUR)
    command = [sys.executable, "-m", "renderer.clean", "--older-than", "7d", "--outputs", str(outputs)]

    # `| head -0`: the reader is gone before the first line; the listing ends quietly, without a traceback
    piped = subprocess.Popen([*command, "--dry-run"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    piped.stdout.close()
    _, err = piped.communicate(timeout=60)
    # (0 when the output fitted the pipe before it closed; else the shell's status for a broken pipe)
    assert piped.returncode in (0, 128 + signal.SIGPIPE) and b"Traceback" not in err and b"Error" not in err
    assert old.exists()

    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"removed {old} ({human(size)}, finished 1w 3d ago)",
                                        f"removed 1 run, {human(size)}; kept 1"]
    assert not old.exists() and young.exists()
