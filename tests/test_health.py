"""The health monitor: percentiles, samples merged across processes, metrics.json of a real batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from renderer import batch
from renderer.ops import health
from renderer.ops.monitor import Aggregator, ServiceStats
from renderer.providers.http import Client
from tests.conftest import BACKWARDS, ROOT, TINY, TWO_SCENES, compose_cfg


@pytest.mark.parametrize("values, expected", [
    (list(range(1, 101)), {50: 50.5, 95: 95.05, 99: 99.01}),
    ([4.0, 1.0, 3.0, 2.0], {50: 2.5, 95: 3.85, 99: 3.97}),
    ([7.0], {50: 7.0, 95: 7.0, 99: 7.0}),
    ([], {50: 0.0, 95: 0.0, 99: 0.0}),
])
def test_percentiles_on_known_samples(values, expected):
    for q, value in expected.items():
        assert health.percentile(values, q) == pytest.approx(value)


@pytest.mark.parametrize("latencies", [[0.2, 0.1], [0.3, 0.1, 0.2, 0.4], [1.5, 0.25, 0.75, 0.5, 2.0, 0.1], [0.42], []])
def test_metrics_json_and_the_script_record_report_the_same_percentiles(latencies):
    """metrics.json (the monitor's service figures) and ``<slug>.json`` (a client's usage among its services)
    give one p50 (p95, p99) for one set of latencies: both take them from ``health.latency_percentiles``."""
    stats = ServiceStats()
    for seconds in latencies:
        stats.add({"service": "runway", "kind": "api", "s": seconds, "ok": True})
    client = Client("runway", "http://127.0.0.1:1", {})
    client.latencies_s = list(latencies)
    usage = client.stats()
    metrics = stats.summary()["latency_s"]
    for p in ("p50", "p95", "p99"):
        assert usage[f"latency_{p}_s"] == metrics[p], p
    assert usage["latency_p50_s"] == round(health.percentile(latencies, 50), 4)


RECORDER = """
import sys
from renderer.ops import health
health.attach(sys.argv[1])
for n in range(int(sys.argv[2]), int(sys.argv[3])):
    health.record("ffmpeg", n / 100, ok=n % 10 != 0, kind="tool", error="exit 1: boom" if n % 10 == 0 else "")
health.record("elevenlabs", 0.0, ok=False, kind="api", error="open", breaker="open", rejected=True)
"""


def test_samples_of_many_processes_are_merged(tmp_path: Path):
    """Two processes record 1..100 ms between them: one service, the percentiles of all their samples."""
    for lo, hi in ((1, 51), (51, 101)):
        subprocess.run([sys.executable, "-c", RECORDER, str(tmp_path), str(lo), str(hi)], cwd=ROOT, check=True)
    agg = Aggregator(tmp_path / "tmp" / "health")
    agg.update()
    assert len(list((tmp_path / "tmp" / "health").glob("*.jsonl"))) == 2
    ffmpeg = agg.services["ffmpeg"].summary()
    assert (ffmpeg["calls"], ffmpeg["successes"], ffmpeg["failures"]) == (100, 90, 10)
    assert ffmpeg["failure_rate"] == 0.1
    assert ffmpeg["latency_s"]["p50"] == pytest.approx(0.505)
    assert ffmpeg["latency_s"]["p95"] == pytest.approx(0.9505)
    assert ffmpeg["latency_s"]["p99"] == pytest.approx(0.9901)
    assert ffmpeg["last_error"] == "exit 1: boom"
    api = agg.services["elevenlabs"].summary()
    assert api["rejected"] == 2 and api["latency_s"]["samples"] == 0 and api["breaker"] == "open"
    agg.update()  # read incrementally: nothing counted twice
    assert agg.services["ffmpeg"].calls == 100


def test_metrics_json_of_a_real_batch(tmp_path: Path):
    """Two scripts in two worker processes (one fails to parse): every service they used, system and job
    figures, in one metrics.json for the run."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "good.txt").write_text(TWO_SCENES, encoding="utf-8")
    (inputs / "bad.txt").write_text(BACKWARDS, encoding="utf-8")
    overrides = [o for o in TINY if not o.startswith(("batch.backend", "cache."))]
    cfg = compose_cfg(*overrides, "voice=espeak", f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=2",
                      f"cache.dir={tmp_path / 'cache'}", "monitor.interval_s=0.2")
    run_dir = tmp_path / "run"
    result = batch.run_batch(cfg, run_dir)
    assert result.manifest["scripts"]["good"]["status"] == "ok"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["final"] is True and metrics["run"] == f"{tmp_path.name}/run"
    services = metrics["services"]
    for name, kind in (("ffmpeg", "tool"), ("espeak-ng", "tool"), ("espeak", "provider"),
                       ("procedural", "provider"), ("cache", "cache")):
        assert services[name]["kind"] == kind, name
        assert services[name]["calls"] > 0 and services[name]["failures"] == 0, (name, services[name])
        assert services[name]["latency_s"]["p50"] > 0, name
        assert services[name]["latency_s"]["p50"] <= services[name]["latency_s"]["p95"] \
            <= services[name]["latency_s"]["p99"] <= services[name]["latency_s"]["max"]
    stages = json.loads((run_dir / "good" / "good.json").read_text())["stages"]
    encodes = sum(1 for s in stages if s["stage"] in ("segment", "soundtrack", "mux"))
    assert services["ffmpeg"]["calls"] >= encodes + 2  # + one procedural clip per scene
    assert services["espeak"]["calls"] == 2  # one narration per scene
    assert services["cache"]["misses"] >= len(stages) and services["cache"].get("hits", 0) == 0
    system = metrics["system"]
    assert 0 < system["memory"]["percent"] <= 100 and system["cpu_count"] >= 1
    assert set(system["disks"]) == {"run", "cache"} and system["disks"]["run"]["free_bytes"] > 0
    jobs = metrics["jobs"]
    assert (jobs["scripts"], jobs["done"], jobs["failed"], jobs["pending"]) == (2, 1, 1, 0)
    assert jobs["in_flight"] == {}
    assert jobs["stages"]["segment"]["nodes"] == 2 and jobs["stages"]["segment"]["ok"] == 2
    assert jobs["stages"]["mux"]["p50_s"] > 0
    assert metrics["status"] == "ok" and metrics["problems"] == []
    assert not (run_dir / "tmp" / "health").exists()  # the samples go with tmp/; metrics.json keeps the figures
