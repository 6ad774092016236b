"""Live endpoints during real batches, over HTTP on 127.0.0.1: JSON health, Prometheus text, 503 on trouble."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from renderer.devtools.fakes import FakeAPI
from renderer.ops.endpoints import Endpoints
from renderer.ops.files import RunLayout
from renderer.ops.monitor import Monitor
from tests.conftest import ROOT, THREE_SCENES, TINY, compose_cfg

CLI_TINY = [o for o in TINY if not o.startswith("batch.backend")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def start_batch(tmp_path: Path, port: int, *extra: str, env: dict | None = None) -> subprocess.Popen:
    inputs = tmp_path / "in"
    inputs.mkdir(exist_ok=True)
    for n in range(2):
        (inputs / f"s{n}.txt").write_text(THREE_SCENES.replace("A blue sea.", f"A blue sea {n}."), encoding="utf-8")
    return subprocess.Popen([sys.executable, "-m", "renderer", *CLI_TINY, f"batch.inputs=[{inputs}/*.txt]",
                             "batch.n_jobs=2", f"hydra.run.dir={tmp_path / 'run'}", f"monitor.port={port}",
                             "monitor.interval_s=0.3", "progress=false", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def poll(proc: subprocess.Popen, url: str, until, timeout: float = 240) -> tuple[int, bytes]:
    """GET ``url`` every 0.1 s while the batch runs, until ``until(status, body)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            status, body = get(url)
        except (ConnectionError, urllib.error.URLError):  # not listening yet
            time.sleep(0.1)
            continue
        if until(status, body):
            return status, body
        time.sleep(0.1)
    out, err = proc.communicate(timeout=60)
    raise AssertionError(f"{url} never answered as expected while the batch ran (exit {proc.returncode}):\n{err}")


def test_endpoints_answer_during_a_real_run(tmp_path: Path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_batch(tmp_path, port)
    try:
        # a script in flight, its stage shown, while the batch runs
        _, body = poll(proc, f"{base}/health/stats", lambda s, b: s == 200 and json.loads(b)["in_flight"])
        stats = json.loads(body)
        assert stats["scripts"] == 2 and set(stats["in_flight"]) <= {"s0", "s1"}
        # services seen so far, with their figures
        _, body = poll(proc, f"{base}/health/services",
                       lambda s, b: json.loads(b)["services"].get("ffmpeg", {}).get("calls", 0) > 0)
        ffmpeg = json.loads(body)["services"]["ffmpeg"]
        assert ffmpeg["kind"] == "tool" and ffmpeg["latency_s"]["p50"] > 0
        status, body = get(f"{base}/health/system")
        system = json.loads(body)
        assert status == 200 and system["status"] in ("ok", "degraded") and system["memory"]["total_bytes"] > 0
        status, body = get(f"{base}/metrics")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        calls = {s.labels["service"]: s.value for s in families["renderer_service_calls"].samples
                 if s.name.endswith("_total")}
        assert status == 200 and calls["ffmpeg"] > 0
        assert {s.labels["status"] for s in families["renderer_scripts"].samples} >= {"done", "pending"}
        assert get(f"{base}/health/nope")[0] == 404
        live = json.loads((tmp_path / "run" / "metrics.json").read_text())  # rewritten during the run
        assert live["final"] is False
        assert proc.wait(timeout=240) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert final["final"] is True and final["jobs"]["done"] == 2
    try:
        get(f"{base}/health/stats")
        raise AssertionError("the endpoints outlive the batch")
    except (ConnectionError, urllib.error.URLError):
        pass


@pytest.mark.parametrize("backend", [["batch.backend=loky"], ["batch.backend=dask", "batch.dask.workers=2"]],
                         ids=["loky", "dask"])
def test_system_answers_503_while_a_breaker_is_open(tmp_path: Path, backend: list[str]):
    """ElevenLabs (a local double) fails every request; one failure opens its breaker, which stays open: the
    probe says 503, and Prometheus sees the open breaker (kept in files, or on the Dask cluster)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ELEVENLABS_API_KEY": "el-test-key-0000"}
    with FakeAPI(elevenlabs_key="el-test-key-0000", fault_rate=1.0, faults=["500"]) as api:
        proc = start_batch(tmp_path, port, "voice=elevenlabs", f"voice.base_url={api.url}", "retry.api.attempts=1",
                           "breaker.elevenlabs.fail_max=1", "breaker.elevenlabs.reset_timeout_s=600", *backend, env=env)
        try:
            status, body = poll(proc, f"{base}/health/system", lambda s, b: s == 503)
            system = json.loads(body)
            assert system["status"] == "unhealthy" and system["breakers"]["elevenlabs"] == "open"
            assert any("elevenlabs: circuit breaker open" in p for p in system["problems"])
            metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for f in text_string_to_metric_families(get(f"{base}/metrics")[1].decode()) for s in f.samples}
            assert metrics[("renderer_breaker_state", (("service", "elevenlabs"), ("state", "open")))] == 1.0
            assert metrics[("renderer_healthy", ())] == 0.0
            assert proc.wait(timeout=240) == 0, proc.stderr.read()  # the videos still come out (espeak)
        finally:
            proc.kill()
            proc.wait()
    el = json.loads((tmp_path / "run" / "metrics.json").read_text())["services"]["elevenlabs"]
    assert el["kind"] == "api" and el["failures"] == el["calls"] >= 2 and el["rejected"] >= 1
    assert el["failure_rate"] == 1.0 and el["breaker"] == "open" and "500" in el["last_error"]


def test_a_port_in_use_stops_the_run_before_rendering(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_batch(tmp_path, port)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert f"monitor.port={port}: 127.0.0.1:{port} is already in use" in err and "monitor.port=0" in err
    assert not list((tmp_path / "run").rglob("*.mp4")) and not (tmp_path / "run" / "manifest.json").exists()


def test_system_answers_503_when_the_disk_is_past_its_limit(tmp_path: Path):
    cfg = compose_cfg(*TINY, "monitor.port=0", "monitor.min_free_disk_gb=1000000", f"cache.dir={tmp_path}/c")
    cfg.monitor.port = free_port()
    monitor = Monitor(cfg, RunLayout(tmp_path / "run"), {"scripts": {}})
    try:
        status, body = get(f"http://127.0.0.1:{cfg.monitor.port}/health/system")
        assert status == 503 and "run disk" in json.loads(body)["problems"][0]
        assert get(f"http://127.0.0.1:{cfg.monitor.port}/health/services")[0] == 200
    finally:
        monitor.close()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "unhealthy"


# --------------------------------------------------------------------------- the server guards itself

SNAP = {"run": "r", "status": "ok", "problems": []}


def _ask(port: int, host: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health", headers={} if host is None else {"Host": host})
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_foreign_host_is_refused_and_this_machine_s_names_are_not():
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""
    server = Endpoints(lambda: SNAP, "127.0.0.1", 0, allowed_hosts=["renderer.internal"])
    port = server.httpd.server_address[1]
    try:
        assert _ask(port, f"evil.example:{port}") == 421
        assert _ask(port, "localhost.evil.example") == 421
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", socket.gethostname(),
                     f"RENDERER.internal:{port}", f"10.1.2.3:{port}"):
            assert _ask(port, host) == 200, host
    finally:
        server.close()


def test_an_idle_connection_is_dropped_and_does_not_hold_the_server():
    server = Endpoints(lambda: SNAP, "127.0.0.1", 0, timeout_s=0.5)
    port = server.httpd.server_address[1]
    try:
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        with idle:
            assert _ask(port, None) == 200  # others are served meanwhile
            started = time.monotonic()
            assert idle.recv(1) == b""  # closed by the server, not by our 5 s timeout
            assert time.monotonic() - started < 3
    finally:
        server.close()
