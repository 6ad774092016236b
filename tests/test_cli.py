"""`python -m renderer` end to end in a subprocess: batches, exit codes, multirun, experiments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil

from tests.conftest import (
    BACKWARDS,
    ROOT,
    TINY,
    TWO_SCENES,
    codecs,
    ffprobe,
    run_cli,
    video_size,
)

CLI_TINY = [o for o in TINY if not o.startswith("batch.backend")]  # the CLI tests use real joblib workers


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_one_bad_script_does_not_stop_the_batch(tmp_path):
    inputs = tmp_path / "in"
    write(inputs, "good.txt", TWO_SCENES)
    write(inputs, "broken.txt", BACKWARDS)
    write(inputs, "empty.txt", "")
    run_dir = tmp_path / "run"
    result = run_cli(*CLI_TINY, f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=2", f"hydra.run.dir={run_dir}")
    assert result.returncode == 1, result.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    status = {slug: s["status"] for slug, s in manifest["scripts"].items()}
    assert status == {"good": "ok", "broken": "failed", "empty": "failed"}
    assert "broken.txt:5" in manifest["scripts"]["broken"]["error"]
    assert "empty" in manifest["scripts"]["empty"]["error"].lower()
    assert manifest["finished"] is not None
    info = ffprobe(run_dir / "good" / "good.mp4")
    assert codecs(info) == ["aac", "h264"] and video_size(info) == (192, 108)
    assert (run_dir / "broken" / "broken.json").exists() and not (run_dir / "broken" / "broken.mp4").exists()
    assert list((run_dir / "tmp").iterdir()) == []
    assert not list(run_dir.rglob("*.part"))
    page = (run_dir / "report.html").read_text()
    assert 'data-slug="good" data-status="ok"' in page and 'data-slug="broken" data-status="failed"' in page
    assert '<video controls preload="none" src="good/good.mp4" poster="good/thumbs/scene-01.jpg">' in page
    assert "broken.txt:5" in page
    log = (run_dir / "renderer.log").read_text()
    assert "good" in log and "broken.txt:5" in log
    lines = [json.loads(line) for line in (run_dir / "renderer.jsonl").read_text().splitlines()]
    assert any(line["record"]["extra"].get("script") == "broken" for line in lines)


def test_clean_batch_exits_zero_and_unmatched_input_exits_nonzero(tmp_path):
    script = write(tmp_path, "one.txt", TWO_SCENES)
    ok = run_cli(*CLI_TINY, f"batch.inputs=[{script}]", "assembly=audio_only", f"hydra.run.dir={tmp_path / 'a'}")
    assert ok.returncode == 0, ok.stderr
    missing = run_cli(*CLI_TINY, f"batch.inputs=[{tmp_path}/nothing/*.txt]", f"hydra.run.dir={tmp_path / 'b'}")
    assert missing.returncode == 2
    assert "matches" in missing.stderr or "matched" in missing.stderr


def test_multirun_sweep_renders_one_job_per_theme(tmp_path):
    script = write(tmp_path, "one.txt", TWO_SCENES)
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "theme=dark,matrix", *CLI_TINY, f"batch.inputs=[{script}]", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr
    for job in ("0", "1"):
        manifest = json.loads((sweep / job / "manifest.json").read_text())
        assert manifest["scripts"]["one"]["status"] == "ok"
        assert (sweep / job / "one" / "one.mp4").exists()
    themes = {json.loads((sweep / j / "manifest.json").read_text())["settings"]["theme"] for j in ("0", "1")}
    assert themes == {"dark", "matrix"}
    assert "theme=dark" in result.stderr and "theme=matrix" in result.stderr


def test_experiment_preset(tmp_path):
    script = write(tmp_path, "one.txt", TWO_SCENES)
    run_dir = tmp_path / "run"
    result = run_cli("+experiment=draft", f"batch.inputs=[{script}]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert video_size(ffprobe(run_dir / "one" / "one.mp4")) == (640, 360)
    assert json.loads((run_dir / "manifest.json").read_text())["experiment"] == "draft"
    saved = (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert "+experiment=draft" in saved


def test_free_memory_caps_the_number_of_jobs(tmp_path):
    inputs = tmp_path / "in"
    for name in ("a", "b"):
        write(inputs, f"{name}.txt", TWO_SCENES)
    run_dir = tmp_path / "run"
    one_job = round(psutil.virtual_memory().available / 1024**3 * 0.6, 3)  # room for one job, not two
    result = run_cli(*CLI_TINY, "assembly=audio_only", f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=2",
                     f"limits.memory_gb={one_job}", "limits.admission_wait_s=0", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["n_jobs"] == 1, result.stderr
    assert f"allows 1 job(s) at limits.memory_gb={one_job} each" in result.stderr  # as given: 13.82, not 13.820
    storage = manifest["storage"]  # the run's and the cache's totals, for the morning after
    assert storage["run_dir"]["path"] == str(run_dir) and storage["run_dir"]["free_bytes"] > 0
    assert storage["run_dir"]["bytes"] >= sum(p.stat().st_size for p in run_dir.rglob("*.mp4")) > 0
    assert storage["cache_dir"]["files"] > 0
    relaxed = run_cli(*CLI_TINY, "assembly=audio_only", f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=2",
                      "limits.memory_gb=0.001", f"hydra.run.dir={tmp_path / 'run2'}")
    assert json.loads((tmp_path / "run2" / "manifest.json").read_text())["n_jobs"] == 2, relaxed.stderr


def test_a_memory_limit_no_job_can_meet_stops_the_batch_before_it_starts(tmp_path):
    inputs = tmp_path / "in"
    write(inputs, "a.txt", TWO_SCENES)
    run_dir = tmp_path / "run"
    result = run_cli(*CLI_TINY, f"batch.inputs=[{inputs}/*.txt]", "limits.memory_gb=100000",
                     f"hydra.run.dir={run_dir}")
    assert result.returncode == 2, result.stderr
    assert "limits.memory_gb=100000 is more than this machine's" in result.stderr
    assert "limits.memory_gb=0" in result.stderr  # the fix
    assert not (run_dir / "manifest.json").exists()  # nothing to resume


def test_a_tool_whose_reader_goes_away_ends_quietly_and_media_tools_stopped_mid_feed_do_not_end_it():
    """`renderer.themes list | head -1`: no traceback, the Unix exit status; and SIGPIPE is not made fatal
    for the tool's own process (frames fed to an ffmpeg that is stopped are that ffmpeg's error)."""
    import subprocess as sp

    proc = sp.Popen([sys.executable, "-m", "renderer.themes", "list"], stdout=sp.PIPE, stderr=sp.PIPE, cwd=ROOT)
    proc.stdout.readline()
    proc.stdout.close()  # the reader goes away after one line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141) and "Traceback" not in stderr, stderr
    probe = ("import signal, renderer.cli as c; c.run(lambda: print(signal.getsignal(signal.SIGPIPE) == "
             "signal.SIG_IGN) or 0)")
    assert sp.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "True"
