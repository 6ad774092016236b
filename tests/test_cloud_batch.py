"""Cloud providers inside real batches, against the local API doubles: every video delivered, every
fallback recorded, no key anywhere in the run dir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from renderer.devtools.fakes import FakeAPI
from renderer.devtools.stock_fakes import FakeStock
from renderer.media import ffmpeg
from tests.conftest import ROOT, TINY, TWO_SCENES, codecs, ffprobe

EL_KEY = "el-SECRET-batch-key-7f3a9c"
RW_KEY = "rw-SECRET-batch-key-51d0e2"
CLI_TINY = [o for o in TINY if not o.startswith(("batch.backend", "visual."))]


def cloud_overrides(api: FakeAPI) -> list[str]:
    return ["voice=elevenlabs", "visual=runway", f"voice.base_url={api.url}", f"visual.base_url={api.url}",
            "visual.poll_interval_s=0.05", "visual.poll_jitter_s=0.01", "retry.api.wait_s=0.01",
            "retry.api.max_wait_s=0.2", "retry.api.jitter_s=0.01", "limits.api_timeout_s=3"]


def run_batch(api: FakeAPI, inputs: Path, run_dir: Path, *extra: str, keys: bool = True):
    env = {k: v for k, v in os.environ.items() if k not in ("ELEVENLABS_API_KEY", "RUNWAY_API_KEY")}
    if keys:
        env.update(ELEVENLABS_API_KEY=EL_KEY, RUNWAY_API_KEY=RW_KEY)
    return subprocess.run([sys.executable, "-m", "renderer", *CLI_TINY, *cloud_overrides(api),
                           f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=2", f"hydra.run.dir={run_dir}", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def scripts(tmp_path: Path, count: int) -> Path:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for n in range(count):
        (inputs / f"s{n}.txt").write_text(TWO_SCENES.replace("A blue sea.", f"A blue sea, take {n}."),
                                          encoding="utf-8")
    return inputs


def assert_no_key_anywhere(run_dir: Path, output: str) -> None:
    for key in (EL_KEY, RW_KEY):
        assert key not in output
        for path in run_dir.rglob("*"):
            if path.is_file():
                assert key.encode() not in path.read_bytes(), path


def test_cloud_happy_path(tmp_path):
    with FakeAPI(elevenlabs_key=EL_KEY, runway_key=RW_KEY, task_seconds=0.2) as api:
        result = run_batch(api, scripts(tmp_path, 1), tmp_path / "run")
        stats = api.stats()
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "s0" / "s0.json").read_text())
    assert record["providers"]["voice"] == ["elevenlabs"]
    assert record["providers"]["visual"] == ["runway"]
    assert record["fallbacks"] == []
    assert record["services"]["elevenlabs"]["calls"] == 2 and record["services"]["runway"]["calls"] >= 2
    assert codecs(ffprobe(tmp_path / "run" / "s0" / "s0.mp4")) == ["aac", "h264"]
    assert sum(stats["counts"].values()) > 0
    assert_no_key_anywhere(tmp_path / "run", result.stdout + result.stderr)


def test_half_the_requests_failing_still_delivers_every_video(tmp_path):
    with FakeAPI(elevenlabs_key=EL_KEY, runway_key=RW_KEY, task_seconds=0.2, fault_rate=0.5, retry_after_s=0.05,
                 hang_s=4, seed=7) as api:
        result = run_batch(api, scripts(tmp_path, 4), tmp_path / "run")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {s["status"] for s in manifest["scripts"].values()} == {"ok"}
    fallbacks = [f for s in manifest["scripts"].values() for f in s["fallbacks"]]
    for slug in manifest["scripts"]:
        assert codecs(ffprobe(tmp_path / "run" / slug / f"{slug}.mp4")) == ["aac", "h264"]
        record = json.loads((tmp_path / "run" / slug / f"{slug}.json").read_text())
        stages = {s["name"]: s for s in record["stages"]}
        for f in record["fallbacks"]:  # each fallback names the node, its stand-in and why
            assert stages[f["node"]]["status"] == "fallback" and f["to"] and f["reason"]
        assert [n for n, s in stages.items() if s["status"] == "fallback"] == [f["node"] for f in record["fallbacks"]]
    assert fallbacks, "with half the requests failing, some stage should have fallen back"
    assert all(f["to"] in ("piper", "espeak", "silent", "backdrop") or f["to"].startswith("procedural")
               for f in fallbacks)
    assert all(f["breaker"] in ("closed", "open", "half-open") for f in fallbacks)
    assert_no_key_anywhere(tmp_path / "run", result.stdout + result.stderr)


def test_missing_keys_fall_back_offline_and_say_why(tmp_path):
    with FakeAPI(elevenlabs_key=EL_KEY, runway_key=RW_KEY) as api:
        result = run_batch(api, scripts(tmp_path, 1), tmp_path / "run", "visual.sources=[life]", keys=False)
        requests = sum(api.stats()["counts"].values())
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "s0" / "s0.json").read_text())
    by_node = {f["node"]: f for f in record["fallbacks"]}
    assert by_node["voice"]["to"] == "piper" and "ELEVENLABS_API_KEY" in by_node["voice"]["reason"]
    assert by_node["visual"]["to"] == "procedural" and "RUNWAY_API_KEY" in by_node["visual"]["reason"]
    assert record["providers"]["visual"] == ["procedural:life"]  # the stand-in draws what visual.sources says
    assert requests == 0


def test_fallback_off_makes_a_failure_fatal(tmp_path):
    with FakeAPI(elevenlabs_key=EL_KEY, runway_key=RW_KEY) as api:
        result = run_batch(api, scripts(tmp_path, 1), tmp_path / "run", "voice.fallback=false", keys=False)
    assert result.returncode == 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["scripts"]["s0"]["status"] == "failed"
    assert "fallback is off" in manifest["scripts"]["s0"]["error"]


def test_a_malformed_key_is_refused_without_being_shown(tmp_path, monkeypatch):
    from renderer.config import ElevenLabsVoiceConfig
    from renderer.providers.chain import make
    from renderer.providers.http import MissingAPIKey

    monkeypatch.setenv("ELEVENLABS_API_KEY", "el-SECRET-part-one\nel-SECRET-part-two")
    with pytest.raises(MissingAPIKey) as info:
        make(ElevenLabsVoiceConfig, base_url="http://127.0.0.1:9")
    assert "ELEVENLABS_API_KEY" in str(info.value) and "SECRET" not in str(info.value)


def _sigint_default() -> None:
    """In the renderer's process, before exec: a background job of a non-interactive shell ignores SIGINT from
    birth, and Python then installs no KeyboardInterrupt handler; a terminal's Ctrl-C would find one."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _command_now(pid: int, last_seen: str) -> str:
    """What a process is now, if it is still there (it may have exec'd since it was seen), else what it was."""
    try:
        return " ".join(psutil.Process(pid).cmdline()) or last_seen
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return last_seen


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("how, stuck, backend", [("sigterm", False, "loky"), ("ctrl-c", False, "loky"),
                                                 ("sigterm", True, "loky"), ("sigterm", False, "threading")],
                         ids=["sigterm", "ctrl-c", "sigterm-worker-stuck-in-a-request", "sigterm-threading"])
def test_interrupting_a_cloud_batch_cancels_every_runway_task(tmp_path, how, stuck, backend):
    """SIGTERM to the renderer (or a terminal's Ctrl-C, which reaches its whole process group): the workers get
    a grace period to DELETE every Runway task they created, nothing new starts, the renderer exits 130 within
    5 s, the scripts are marked cancelled, and no process or temp file is left behind. A worker still stuck in
    a request when the grace is over (here: a poll the service answers after a minute) is killed, as before;
    its tasks are DELETEd all the same."""
    inputs, run_dir = scripts(tmp_path, 3), tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("ELEVENLABS_API_KEY", "RUNWAY_API_KEY")}
    env["RUNWAY_API_KEY"] = RW_KEY
    log = tmp_path / "stderr.txt"
    with FakeAPI(runway_key=RW_KEY, task_seconds=600, latency={"task": 60 if stuck else 0}) as api, \
            open(log, "w") as err:  # tasks that never end
        proc = subprocess.Popen(
            [sys.executable, "-m", "renderer", *CLI_TINY, "voice=silent", "visual=runway", f"visual.base_url={api.url}",
             "visual.poll_interval_s=0.05", "visual.poll_jitter_s=0.01", f"limits.api_timeout_s={60 if stuck else 3}",
             "limits.memory_gb=0", f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=2", f"batch.backend={backend}",
             f"hydra.run.dir={run_dir}"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True, start_new_session=True,
            preexec_fn=_sigint_default)
        seen: dict[int, str] = {}  # pid -> command line of every process the renderer started
        deadline = time.monotonic() + 120
        try:
            while api.count("create") < 4 and proc.poll() is None and time.monotonic() < deadline:  # 2 jobs, 2 scenes
                try:
                    children = psutil.Process(proc.pid).children(recursive=True)
                except psutil.NoSuchProcess:
                    children = []
                for child in children:
                    try:  # processes come and go while we look
                        seen[child.pid] = " ".join(child.cmdline())  # the latest: a child just forked still
                        # shows the renderer's own command line until it execs
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        continue
                time.sleep(0.05)
            time.sleep(0.3)  # no create request still in flight
            assert proc.poll() is None, f"the batch ended before it could be interrupted:\n{log.read_text()}"
            created, creates = set(api.tasks), api.count("create")
            assert creates == len(created) == 4, f"{creates} task(s) created:\n{log.read_text()}"
            assert not api.deleted and all(status in ("PENDING", "RUNNING") for status in api.stats()["tasks"].values())
            interrupted = time.monotonic()
            if how == "sigterm":
                proc.send_signal(signal.SIGTERM)
            else:
                os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=30)
            seconds = time.monotonic() - interrupted
            stats = api.stats()
        finally:
            if proc.poll() is None:  # the test failed: stop the whole batch, workers included
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    stderr = log.read_text()
    deleted = created & set(stats["deleted"])
    figures = f"exit {proc.returncode} after {seconds:.2f} s; {len(created)} task(s) created, {len(deleted)} deleted"
    print(figures)
    assert proc.returncode == 130, f"{figures}\n{stderr}"
    assert "interrupted" in stderr
    assert seconds < 5, figures
    if stuck:  # the grace ran out (CANCEL_GRACE_S in renderer/batch.py): the stuck workers were killed
        assert seconds > 2.5 and "still in flight after" in stderr, figures
    assert deleted == created, f"{figures}: tasks left running at Runway: {sorted(created - deleted)}"
    assert {stats["tasks"][t] for t in created} == {"CANCELLED"}
    assert stats["counts"]["create"] == creates, "a task was created after the signal"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {slug: s["status"] for slug, s in manifest["scripts"].items()} == dict.fromkeys(["s0", "s1", "s2"],
                                                                                           "cancelled")
    seen = {pid: _command_now(pid, cmd) for pid, cmd in seen.items()}
    workers_and_tools = {pid: cmd for pid, cmd in seen.items() if "loky" in cmd and "resource_tracker" not in cmd
                         or Path(cmd.split(" ")[0]).name in ffmpeg.MEDIA_TOOLS or "setpriv" in cmd}
    assert {pid: cmd for pid, cmd in workers_and_tools.items() if not _gone(pid)} == {}
    settle = time.monotonic() + 3  # the rest (loky's resource tracker) goes once it sees the renderer gone
    while time.monotonic() < settle and not all(_gone(pid) for pid in seen):
        time.sleep(0.05)
    assert {pid: cmd for pid, cmd in seen.items() if not _gone(pid)} == {}
    assert list((run_dir / "tmp").iterdir()) == []
    assert not list(run_dir.rglob("*.part"))


# --------------------------------------------------------------------------- stock footage
PX_KEY, PB_KEY = "px-SECRET-batch-key-4c1d", "pb-SECRET-batch-key-9e7a"


def run_stock_batch(stock: FakeStock, inputs: list[str], run_dir: Path, *extra: str):
    env = {k: v for k, v in os.environ.items() if k not in ("PEXELS_API_KEY", "PIXABAY_API_KEY")}
    env.update(PEXELS_API_KEY=PX_KEY, PIXABAY_API_KEY=PB_KEY)
    return subprocess.run([sys.executable, "-m", "renderer", *CLI_TINY, "visual=stock", f"visual.pexels_url={stock.url}",
                           f"visual.pixabay_url={stock.url}", "voice=silent", "limits.memory_gb=0",
                           f"cache.dir={run_dir.parent / 'cache'}", "retry.api.wait_s=0.01", "retry.api.max_wait_s=0.2",
                           "retry.api.jitter_s=0.01", f"batch.inputs=[{','.join(inputs)}]", f"hydra.run.dir={run_dir}",
                           *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def test_the_sample_batch_with_stock_footage_keeps_the_rate_limits_with_three_jobs(tmp_path):
    """The sample batch (scripts/) with visual=stock against the doubles, three scripts at once, the services'
    limits small enough to be reached: no request over a limit, every video out, every clip credited."""
    with FakeStock(pexels_key=PX_KEY, pixabay_key=PB_KEY, limits={"pexels": (15, 1.0), "pixabay": (10, 1.0)}) as stock:
        result = run_stock_batch(stock, ["scripts/*.txt", "scripts/*.md"], tmp_path / "run", "batch.n_jobs=3",
                                 "limits.max_jobs=3", "visual.shot_s=12")  # fewer shots: test_stock_pipeline has them
        stats = stock.stats()
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"stock requests {stats['counts']}, over a limit {stats['refused']}, downloads {len(stats['downloads'])}")
    assert stats["refused"] == {}, stats["refused"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {s["status"] for s in manifest["scripts"].values()} == {"ok"}
    for slug in manifest["scripts"]:
        record = json.loads((tmp_path / "run" / slug / f"{slug}.json").read_text())
        shots = {(s["scene"], s["provider"]) for s in record["stages"]
                 if s["stage"] == "visual" and s["provider"].startswith("stock:")}
        assert shots and len(record["credits"]) == len(shots)  # each clip credited once per scene showing it
        credits = (tmp_path / "run" / slug / f"{slug}.credits.txt").read_text()
        assert all(c["page_url"] in credits for c in record["credits"])
        clips = [(c["service"], c["id"]) for c in record["credits"]]
        assert len(clips) == len(set(clips))  # no clip in two scenes of a video
    assert "Footage credits" in (tmp_path / "run" / "report.html").read_text()
    for key in (PX_KEY, PB_KEY):
        assert key not in result.stdout + result.stderr
        assert not [p for p in (tmp_path / "run").rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
        assert not [p for p in (tmp_path / "cache").rglob("*.json") if key in p.read_text()]


def test_a_429_storm_degrades_to_the_next_source_without_failing_a_script(tmp_path):
    with FakeStock(pexels_key=PX_KEY, pixabay_key=PB_KEY, fault_rate=1.0, faults=("429",)) as stock:
        result = run_stock_batch(stock, [f"{scripts(tmp_path, 3)}/*.txt"], tmp_path / "run", "batch.n_jobs=3")
        stats = stock.stats()
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert {s["status"] for s in manifest["scripts"].values()} == {"ok"}
    fallbacks = [f for s in manifest["scripts"].values() for f in s["fallbacks"]]
    assert len(fallbacks) == 6 and all(f["to"].startswith("procedural") for f in fallbacks)
    assert all("HTTP 429" in f["reason"] or "circuit breaker open" in f["reason"] for f in fallbacks)
    # each service saw its storm once or twice, then the run's shared budget let it rest
    assert sum(stats["injected"].values()) <= 2 * 3 * 2, stats
