"""Cloud providers inside real batches, against the local API doubles: every video delivered, every
fallback recorded, no key anywhere in the run dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from renderer.fakes import FakeAPI
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
    assert all(f["to"] in ("espeak", "silent", "backdrop") or f["to"].startswith("procedural") for f in fallbacks)
    assert all(f["breaker"] in ("closed", "open", "half-open") for f in fallbacks)
    assert_no_key_anywhere(tmp_path / "run", result.stdout + result.stderr)


def test_missing_keys_fall_back_offline_and_say_why(tmp_path):
    with FakeAPI(elevenlabs_key=EL_KEY, runway_key=RW_KEY) as api:
        result = run_batch(api, scripts(tmp_path, 1), tmp_path / "run", keys=False)
        requests = sum(api.stats()["counts"].values())
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "run" / "s0" / "s0.json").read_text())
    by_node = {f["node"]: f for f in record["fallbacks"]}
    assert by_node["voice"]["to"] == "espeak" and "ELEVENLABS_API_KEY" in by_node["voice"]["reason"]
    assert by_node["visual"]["to"] == "procedural" and "RUNWAY_API_KEY" in by_node["visual"]["reason"]
    assert requests == 0


def test_fallback_off_makes_a_failure_fatal(tmp_path):
    with FakeAPI(elevenlabs_key=EL_KEY, runway_key=RW_KEY) as api:
        result = run_batch(api, scripts(tmp_path, 1), tmp_path / "run", "voice.fallback=false", keys=False)
    assert result.returncode == 1
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["scripts"]["s0"]["status"] == "failed"
    assert "fallback is off" in manifest["scripts"]["s0"]["error"]


def test_a_malformed_key_is_refused_without_being_shown(tmp_path, monkeypatch):
    from renderer.providers.elevenlabs import ElevenLabsVoice
    from renderer.providers.http import MissingAPIKey

    monkeypatch.setenv("ELEVENLABS_API_KEY", "el-SECRET-part-one\nel-SECRET-part-two")
    with pytest.raises(MissingAPIKey) as info:
        ElevenLabsVoice(base_url="http://127.0.0.1:9")
    assert "ELEVENLABS_API_KEY" in str(info.value) and "SECRET" not in str(info.value)
