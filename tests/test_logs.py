"""Correlated logs: every record of a worker carries its run, script, node, stage, scene and provider; stdlib
logging goes through loguru with the same ids; secrets never reach a sink."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from loguru import logger

from renderer.devtools.fakes import FakeAPI
from renderer.ops import logs
from tests.conftest import ROOT, THREE_SCENES, TINY

KEY = "el-SECRET-log-key-93c1"


def records(path: Path) -> list[dict]:
    return [json.loads(line)["record"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_worker_records_carry_their_ids(tmp_path: Path):
    """Two scripts in two loky workers, the voice failing at a local double (so its guard logs inside the
    node) and falling back to espeak: each record names where it came from."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for n in range(2):
        (inputs / f"s{n}.txt").write_text(THREE_SCENES.replace("A blue sea.", f"Sea {n}."), encoding="utf-8")
    run_dir = tmp_path / "2026-12-01" / "10-00-00"
    env = {**os.environ, "ELEVENLABS_API_KEY": KEY}
    with FakeAPI(elevenlabs_key=KEY, fault_rate=1.0, faults=["500"]) as api:
        done = subprocess.run([sys.executable, "-m", "renderer", *[o for o in TINY if "backend" not in o],
                               f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=2", f"hydra.run.dir={run_dir}",
                               "voice=elevenlabs", f"voice.base_url={api.url}", "retry.api.attempts=1",
                               "progress=false"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    recs = records(run_dir / "renderer.jsonl")
    assert all(r["extra"]["run"] == "2026-12-01/10-00-00" for r in recs)
    workers = [r for r in recs if r["process"]["name"] != "MainProcess"]
    assert len({r["process"]["id"] for r in workers}) == 2  # both workers logged, into the one run log
    for slug in ("s0", "s1"):
        mine = [r for r in workers if r["extra"]["script"] == slug]
        nodes = {r["extra"].get("node") for r in mine}
        assert {"voice/0", "visual/2", "segment/1.0", "soundtrack", "mux"} <= nodes, nodes
        # a record in a stage thread: node, stage, scene; the guard's failure names its provider too
        seg = next(r for r in mine if r["extra"].get("node") == "segment/1.0")
        assert seg["extra"]["stage"] == "segment" and seg["extra"]["scene"] == "1"
        assert seg["thread"]["name"].startswith("stage")
        failed = [r for r in mine if "failed after 1 attempt" in r["message"]]
        assert failed and all(r["extra"]["provider"] == "elevenlabs" and r["extra"]["stage"] == "voice"
                              for r in failed)
        assert {r["extra"]["scene"] for r in failed} <= {"0", "1", "2"}
        # the script's own log has its lines only
        own = (run_dir / slug / f"{slug}.log").read_text()
        assert "segment/1.0" in own and ("s1" if slug == "s0" else "s0") + ".txt" not in own
    text = (run_dir / "renderer.jsonl").read_text() + (run_dir / "renderer.log").read_text()
    assert KEY not in text


def test_input_text_reaches_no_sink_with_its_escape_sequences(tmp_path: Path, capfd):
    """A title quoted in a log message or bound as an id: the console and renderer.log get it without its OSC 52
    clipboard write and clear-screen (loguru's own level colours stay)."""
    title = "Evil\x1b]52;c;ZWNobyBvd25lZA==\x07\x1b[2J Title"
    run = tmp_path / "day" / "run"
    try:
        logs.setup(run, console=True)
        with logs.correlate(script=title):
            logger.warning("parsing {}", title)
        logger.complete()
        shown = {"console": capfd.readouterr().err, "renderer.log": (run / "renderer.log").read_text()}
        for sink, text in shown.items():
            assert "parsing Evil Title" in text, sink
            assert "\x1b]" not in text and "\x07" not in text and "\x1b[2J" not in text, sink
        assert "| Evil Title" in shown["renderer.log"]  # the script id column
    finally:
        logs._configured_for = None
        logger.remove()
        logging.basicConfig(force=True)


def test_a_key_with_a_trailing_cr_is_sent_stripped_and_logged_in_neither_form(tmp_path: Path, monkeypatch):
    """One reading of the key (renderer.ops.secrets) for the client and the redaction: "key\\r" in the
    environment is sent as "key", and neither "key" nor "key\\r" reaches a log."""
    from renderer.config import RunwayVisualConfig
    from renderer.providers.http import Client, api_key

    key = "rw-SECRET-cr-key-0042"
    monkeypatch.setenv("RUNWAY_API_KEY", key + "\r")
    with FakeAPI(runway_key=key) as api:
        client = Client("runway", api.url, {"Authorization": f"Bearer {api_key('RUNWAY_API_KEY', 'Runway')}",
                                            "X-Runway-Version": RunwayVisualConfig().api_version})
        assert client.request("GET", "/v1/tasks/none", timeout=10, check=False).status_code == 404  # not 401
    run = tmp_path / "day" / "run"
    try:
        logs.setup(run, console=False)
        logger.info("sent {}, set {!r}, raw {}", key, key + "\r", key + "\r")
        logger.complete()
        text = (run / "renderer.log").read_text() + (run / "renderer.jsonl").read_text()
        assert "sent ***, set '***\\r', raw ***" in text and key not in text
    finally:
        logs._configured_for = None
        logger.remove()
        logging.basicConfig(force=True)


def test_stdlib_logging_goes_through_loguru_with_the_ids(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RUNWAY_API_KEY", "rw-SECRET-stdlib-0042")
    own = logging.getLogger("distributed.worker")  # a library that brings its own handler
    own.addHandler(logging.StreamHandler())
    own.propagate = False
    try:
        logs.setup(tmp_path / "day" / "run", console=False)
        with logs.correlate(script="s9", node="visual/4", provider="runway"):
            logging.getLogger("urllib3.connectionpool").warning("Retrying after %s", "rw-SECRET-stdlib-0042")
            own.info("worker started")
            logging.getLogger("urllib3.connectionpool").debug("new connection")  # below LIBRARY_LEVEL
        logger.complete()
        recs = records(tmp_path / "day" / "run" / "renderer.jsonl")
        assert [(r["extra"]["stdlib"], r["message"]) for r in recs] == [
            ("urllib3.connectionpool", "Retrying after ***"), ("distributed.worker", "worker started")]
        assert all(r["extra"]["run"] == "day/run" and r["extra"]["script"] == "s9" and r["extra"]["node"] ==
                   "visual/4" and r["extra"]["provider"] == "runway" for r in recs)
        assert recs[0]["function"] == "test_stdlib_logging_goes_through_loguru_with_the_ids"  # the caller's place
    finally:
        logs._configured_for = None
        logger.remove()
        logging.basicConfig(force=True)


def test_sigusr1_prints_every_threads_stack_and_the_batch_goes_on(tmp_path: Path):
    """A batch that seems stuck can be asked what it waits on: ``kill -USR1`` writes each thread's Python stack
    to stderr (where each frame is, never a value) and the video still comes out, however often it is asked."""
    import signal
    import time

    script = tmp_path / "in" / "long.txt"
    script.parent.mkdir()
    script.write_text(THREE_SCENES, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "renderer", *TINY, f"batch.inputs=[{script}]",
                             "script.min_last_scene_s=20",  # long enough to be asked while it renders
                             f"hydra.run.dir={tmp_path / 'run'}", "progress=false"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "renderer.log"
    deadline = time.monotonic() + 60
    while not (log.exists() and "stage nodes" in log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "the batch ended before it could be asked"
        time.sleep(0.05)
    for _ in range(20):  # asked again and again while its threads run: a dump must never crash the batch
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "Thread 0x" in err and 'File "' in err and "renderer" in err, err[-2000:]
    assert (tmp_path / "run" / "long" / "long.mp4").is_file()
