"""Incremental rendering: unchanged reruns run no stage, a change re-runs exactly what depends on it,
and an interrupted batch (kill -9) resumes to the same result as an uninterrupted run."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from omegaconf import OmegaConf

from renderer.config import ElevenLabsVoiceConfig
from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from tests.conftest import ROOT, THREE_SCENES, TINY, compose_cfg


def render(script: Path, run_dir: Path, cache_dir: Path, *overrides: str) -> dict:
    cfg = compose_cfg(*TINY, "cache.enabled=true", f"cache.dir={cache_dir}", *overrides)
    return render_script(script, "tiny", cfg, RunLayout(run_dir))


def statuses(record: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in record["stages"]}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(THREE_SCENES, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def first_render(tmp_path_factory) -> tuple[dict, Path]:
    """One cold render of THREE_SCENES (run dir ``a``, cache ``cache``), for the tests below to start from."""
    base = tmp_path_factory.mktemp("first")
    source = base / "tiny.txt"
    source.write_text(THREE_SCENES, encoding="utf-8")
    record = render(source, base / "a", base / "cache")
    return record, base


@pytest.fixture
def cold(first_render, tmp_path) -> dict:
    """The cold render's record, its run dir and cache copied to ``tmp_path/a`` and ``tmp_path/cache`` (each test
    changes its own cache), as if the test had rendered the script itself first."""
    record, base = first_render
    shutil.copytree(base / "a", tmp_path / "a")
    shutil.copytree(base / "cache", tmp_path / "cache")
    return copy.deepcopy(record)


def test_unchanged_rerun_runs_no_stage_and_gives_the_same_file(script, cold, tmp_path):
    cache = tmp_path / "cache"
    assert set(statuses(cold).values()) == {"ok"}
    warm = render(script, tmp_path / "b", cache)
    assert set(statuses(warm).values()) == {"cached"}
    assert sha(tmp_path / "a" / "tiny" / "tiny.mp4") == sha(tmp_path / "b" / "tiny" / "tiny.mp4")
    # the report's thumbnails come from the cache too (a stage output of several files), the same JPEGs
    assert warm["thumbnails"] == cold["thumbnails"] == [f"thumbs/scene-0{n}.jpg" for n in (1, 2, 3)]
    assert all(sha(tmp_path / run / "tiny" / name) == sha(tmp_path / "a" / "tiny" / name)
               for run in ("b",) for name in warm["thumbnails"])


def rerun(record: dict) -> list[str]:
    """The nodes that did work (everything else came from the cache)."""
    return sorted(name for name, status in statuses(record).items() if status != "cached")


def test_theme_change_redraws_terminals_and_backgrounds_and_speaks_nothing_again(script, cold, tmp_path):
    cache = tmp_path / "cache"
    changed = render(script, tmp_path / "b", cache, "theme=matrix")
    # the procedural backgrounds are drawn in the theme's colours: every scene is re-encoded, no voice re-run
    assert rerun(changed) == ["join", "mux", "segment/0.0", "segment/1.0", "segment/2.0", "terminal/0", "terminal/1",
                              "terminal/2", "thumbnails", "visual/0", "visual/1", "visual/2"]
    footage = ["visual.sources=[gradients]"]  # pictures that ignore the theme (the matrix terminals are cached now)
    render(script, tmp_path / "c", cache, *footage)
    # scene 2 ("Two") shows no terminal: its events are the same (none) in every theme
    assert rerun(render(script, tmp_path / "d", cache, *footage, "theme=matrix")) == [
        "join", "mux", "segment/0.0", "segment/2.0", "thumbnails"]


def test_one_narration_change_reruns_that_voice_the_soundtrack_and_the_mux(script, cold, tmp_path):
    cache = tmp_path / "cache"
    script.write_text(THREE_SCENES.replace("“And two.”", "“And two, said differently.”"), encoding="utf-8")
    # the picture is joined from the segments, the same, as the thumbnails are taken from them: only the
    # soundtrack is new (and the file it goes in)
    assert rerun(render(script, tmp_path / "b", cache)) == ["level/1", "mux", "narration/1", "soundtrack", "voice/1"]


def test_the_last_scene_is_reencoded_only_when_its_narration_changes_its_length(script, cold, tmp_path):
    cache, first = tmp_path / "cache", cold
    longer = "“Three, and then a much longer closing line that runs well past the four seconds it had.”"
    script.write_text(THREE_SCENES.replace("“Three.”", longer), encoding="utf-8")
    grown = render(script, tmp_path / "b", cache)
    # the last scene lasts as long as its narration: its clip and typing are fitted to the new length (grown
    # past twice timeline.HALF_AT_S as scripted, it is now encoded in two halves); nothing of the others re-runs
    assert rerun(grown) == ["join", "level/2", "mux", "narration/2", "segment/2.0", "segment/2.1", "soundtrack",
                            "terminal/2", "thumbnails", "timeline", "visual/2", "voice/2"]
    assert grown["timeline"][2]["duration"] > first["timeline"][2]["duration"]
    assert grown["timeline"][:2] == first["timeline"][:2]
    script.write_text(THREE_SCENES.replace("“Three.”", "“Three!”"), encoding="utf-8")  # same length of scene
    same = render(script, tmp_path / "c", cache)
    assert same["timeline"] == first["timeline"]
    assert rerun(same) == ["level/2", "mux", "narration/2", "soundtrack", "timeline", "voice/2"]


def test_one_on_screen_change_reencodes_that_scene_only(script, cold, tmp_path):
    cache = tmp_path / "cache"
    script.write_text(THREE_SCENES.replace("$ uptime", "$ uptime --pretty"), encoding="utf-8")
    assert rerun(render(script, tmp_path / "b", cache)) == ["join", "mux", "segment/2.0", "terminal/2",
                                                            "thumbnails"]


def test_with_transitions_an_edit_of_one_scene_reencodes_that_scene_and_its_cuts_only(script, tmp_path):
    cache = tmp_path / "cache"
    on = ("assembly.transition=dissolve", "assembly.transition_s=0.4")
    cold = render(script, tmp_path / "a", cache, *on)
    assert {n for n in statuses(cold) if n.startswith("transition/")} == {"transition/0", "transition/1"}
    script.write_text(THREE_SCENES.replace("A blue sea.", "A blue lake."), encoding="utf-8")  # the middle scene
    assert rerun(render(script, tmp_path / "b", cache, *on)) == [
        "join", "mux", "segment/1.0", "thumbnails", "transition/0", "transition/1", "visual/1"]
    script.write_text(THREE_SCENES.replace("A blue sea.", "A blue lake.").replace("$ uptime", "$ uptime --pretty"),
                      encoding="utf-8")  # the last scene's on-screen text: its one cut
    assert rerun(render(script, tmp_path / "c", cache, *on)) == [
        "join", "mux", "segment/2.0", "terminal/2", "thumbnails", "transition/1"]
    assert rerun(render(script, tmp_path / "d", cache, *on)) == []


def test_segments_are_byte_identical_across_cold_renders(script, cold, tmp_path):
    def segments(cache: Path) -> dict[str, str]:
        return {entry.parent.name: sha(entry) for entry in cache.glob("segment/*/*/*.mp4")}

    render(script, tmp_path / "b", tmp_path / "cache-b")  # the first cold render: a and its cache, copied
    first = segments(tmp_path / "cache")
    assert len(first) == 3 and segments(tmp_path / "cache-b") == first
    assert sha(tmp_path / "a" / "tiny" / "tiny.mp4") == sha(tmp_path / "b" / "tiny" / "tiny.mp4")


def test_a_corrupt_cached_segment_is_rendered_again(script, cold, tmp_path):
    cache, first = tmp_path / "cache", cold
    key = next(s["key"] for s in first["stages"] if s["name"] == "segment/1.0")
    (entry,) = cache.glob(f"segment/*/{key}/*.mp4")
    entry.write_bytes(entry.read_bytes()[:-100] + b"\0" * 100)  # same size, other bytes
    again = render(script, tmp_path / "b", cache)
    assert rerun(again) == ["segment/1.0"]  # the join's inputs are the same, so its entry still stands
    assert sha(tmp_path / "a" / "tiny" / "tiny.mp4") == sha(tmp_path / "b" / "tiny" / "tiny.mp4")


def test_fallbacks_are_not_cached(script, tmp_path):
    cache = tmp_path / "cache"
    first = render(script, tmp_path / "a", cache, "voice.voice=no-such-voice")
    assert first["fallbacks"] and first["fallbacks"][0]["from"] == "espeak"
    again = statuses(render(script, tmp_path / "b", cache, "voice.voice=no-such-voice"))
    # a stand-in voice: nothing made from it was kept; the pictures do not depend on it
    assert again["voice/0"] == "ok" and again["narration/0"] == "ok" and again["soundtrack"] == "ok"
    assert again["mux"] == "ok"
    assert again["visual/0"] == "cached" and again["segment/0.0"] == "cached"


def test_disabled_cache_renders_everything(script, cold, tmp_path):
    cache = tmp_path / "cache"
    record = render(script, tmp_path / "b", cache, "cache.enabled=false")
    assert set(statuses(record).values()) == {"ok"}


class LeavesAMark:
    """Unpickled, it creates a file: the proof that a render ran code from the cache."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_a_cache_of_pickled_entries_is_rendered_again_never_unpickled(script, cold, tmp_path):
    """A cache written before records were JSON (format 1): its entries are misses, rendered again and replaced."""
    cache = tmp_path / "cache"
    marker = tmp_path / "ran-code-from-the-cache"
    pickled = base64.b64encode(pickle.dumps(LeavesAMark(marker))).decode()
    records = list(cache.glob("*/*/*/entry.json"))
    for record_file in records:  # the old layout: the output pickled, its files as they are
        record = json.loads(record_file.read_text())
        old = {name: record[name] for name in ("stage", "key", "created", "files")}
        record_file.write_text(json.dumps({**old, "output": pickled}))
    again = render(script, tmp_path / "b", cache)
    assert set(statuses(again).values()) == {"ok"}
    assert not marker.exists()
    assert all(json.loads(r.read_text())["format"] == 1 for r in records)  # replaced in place
    assert set(statuses(render(script, tmp_path / "c", cache)).values()) == {"cached"}
    assert sha(tmp_path / "a" / "tiny" / "tiny.mp4") == sha(tmp_path / "b" / "tiny" / "tiny.mp4")


# --- kill -9 and resume ------------------------------------------------------------------------------------
def _batch(inputs: Path, run_dir: Path, cache: Path, *extra: str) -> list[str]:
    overrides = [o for o in TINY if not o.startswith(("batch.backend", "cache.enabled"))]
    return [sys.executable, "-m", "renderer", *overrides, "format.width=320", "format.height=180",
            f"batch.inputs=[{inputs}/*.txt]", "batch.n_jobs=1", f"cache.dir={cache}", f"hydra.run.dir={run_dir}",
            *extra]


def _kill_tree(proc: subprocess.Popen) -> None:
    family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    for pid in family:
        try:
            psutil.Process(pid).send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=10)


def _wait_for(proc: subprocess.Popen, run_dir: Path, point: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the batch ended before the kill point"
        if point in ("first_tool", "encoding"):
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:  # a short-lived tool may be gone by any of these reads
                    line, name = child.cmdline(), child.name()
                except psutil.NoSuchProcess:
                    continue
                stage_tool = name == "espeak-ng" or (name == "ffmpeg" and "-i" in line)
                if stage_tool and (point == "first_tool" or "-frames:v" in line):  # a segment encode
                    return
        elif point == "one_done":
            try:
                manifest = json.loads((run_dir / "manifest.json").read_text())
            except (OSError, ValueError):
                manifest = {"scripts": {}}
            if any(s["status"] == "ok" for s in manifest["scripts"].values()):
                return
        time.sleep(0.02)
    raise AssertionError(f"never reached {point}")


@pytest.fixture(scope="module")
def batch_inputs(tmp_path_factory) -> Path:
    inputs = tmp_path_factory.mktemp("inputs")
    for n, title in enumerate(["alpha", "beta", "gamma"]):
        text = THREE_SCENES.replace("A red sky over a server farm.", f"A {title} sky.").replace(
            "[0:07 – Three]", f"[0:{8 + n:02d} – Three]")
        (inputs / f"{title}.txt").write_text(text, encoding="utf-8")
    return inputs


@pytest.fixture(scope="module")
def reference_run(batch_inputs, tmp_path_factory) -> Path:
    """The uninterrupted run, with a cache of its own (copied by each test that resumes it)."""
    base = tmp_path_factory.mktemp("reference")
    result = subprocess.run(_batch(batch_inputs, base / "run", base / "cache"), cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return base / "run"


@pytest.fixture(scope="module")
def reference(reference_run) -> dict[str, str]:
    """The uninterrupted run's videos, by slug."""
    return {p.stem: sha(p) for p in reference_run.glob("*/*.mp4")}


@pytest.mark.parametrize("point", ["first_tool", "one_done", "encoding"])
def test_kill_9_then_resume_matches_an_uninterrupted_run(point, batch_inputs, reference, tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    proc = subprocess.Popen(_batch(batch_inputs, run_dir, cache), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for(proc, run_dir, point)
    _kill_tree(proc)

    resumed = subprocess.run([sys.executable, "-m", "renderer", f"resume={run_dir}"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {s["status"] for s in manifest["scripts"].values()} == {"ok"}
    assert manifest["resumed"]
    assert {p.stem: sha(p) for p in run_dir.glob("*/*.mp4")} == reference
    assert not list(run_dir.rglob("*.part")) and list((run_dir / "tmp").iterdir()) == []
    assert not list((cache / "tmp").iterdir()) if (cache / "tmp").exists() else True
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / ".hydra" / "resumed").is_dir()


def test_resume_of_a_finished_run_renders_nothing(reference_run, tmp_path):
    run_dir = shutil.copytree(reference_run, tmp_path / "run")  # a finished run (copy2: the videos' mtimes kept)
    before = {p: p.stat().st_mtime_ns for p in run_dir.glob("*/*.mp4")}
    again = subprocess.run([sys.executable, "-m", "renderer", f"resume={run_dir}"], cwd=ROOT, capture_output=True,
                           text=True)
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in run_dir.glob("*/*.mp4")} == before


def test_resume_of_something_else_fails_clearly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "renderer", f"resume={tmp_path / 'nowhere'}"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "not a run directory" in result.stderr


def test_resume_of_a_run_whose_config_this_version_cannot_read_fails_clearly(tmp_path):
    run_dir = tmp_path / "old"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("script:\n  max_narration_chars: 5000\n")  # a setting since gone
    (run_dir / "manifest.json").write_text('{"scripts": {}}')
    result = subprocess.run([sys.executable, "-m", "renderer", f"resume={run_dir}"], cwd=ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 2, result.stderr
    assert "does not fit this version of the renderer (script.max_narration_chars" in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_refuses_overrides_that_would_change_the_videos(finished_run, tmp_path):
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    again = subprocess.run([sys.executable, "-m", "renderer", f"resume={run_dir}", "theme=matrix",
                            "encode.crf=30"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2
    assert "theme, encode.crf would change it" in again.stderr and "Allowed with resume=" in again.stderr


def test_resume_from_elsewhere_uses_the_run_s_cache_and_the_allowed_overrides(batch_inputs, tmp_path):
    start = tmp_path / "start"
    start.mkdir()
    run_dir = tmp_path / "run"
    overrides = [o for o in _batch(batch_inputs, run_dir, Path("relative-cache"), "assembly=audio_only")
                 if not o.startswith("cache.dir")] + ["cache.dir=relative-cache"]
    first = subprocess.run(overrides, cwd=start, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert first.returncode == 0, first.stderr
    (run_dir / "alpha" / "alpha.mp4").unlink()  # as if the run had stopped before it
    resumed = subprocess.run([sys.executable, "-m", "renderer", f"resume={run_dir}", "batch.n_jobs=1",
                              "limits.max_jobs=1"], cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((run_dir / "alpha" / "alpha.json").read_text())
    assert {s["status"] for s in record["stages"]} == {"cached"}  # found start/relative-cache
    assert not (ROOT / "relative-cache").exists()
    assert json.loads((run_dir / "manifest.json").read_text())["n_jobs"] == 1


# --- what a resume reads from the run dir is data: no code, no path out of it ---------------------------------
@pytest.fixture(scope="module")
def finished_run(batch_inputs, tmp_path_factory) -> Path:
    """A finished audio-only batch of the three scripts, copied by each test that changes it."""
    base = tmp_path_factory.mktemp("finished")
    first = subprocess.run(_batch(batch_inputs, base / "run", base / "cache", "assembly=audio_only"), cwd=ROOT,
                           capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    return base / "run"


def _resume(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "renderer", f"resume={run_dir}", *overrides], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _edit_saved_config(run_dir: Path, path: str, value) -> None:
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    OmegaConf.update(saved, path, value, merge=False)
    OmegaConf.save(saved, run_dir / ".hydra" / "config.yaml")


@pytest.mark.parametrize("path, target", [("voice._target_", "os.system"),
                                          ("voice.speakers.Anya._target_", "subprocess.Popen")])
def test_resume_builds_no_class_its_saved_config_names_but_the_renderer_s_providers(finished_run, tmp_path, path,
                                                                                    target):
    """Whoever can write a run dir cannot make a resume run code: a ``_target_`` anywhere in its saved config
    (instantiate builds nested ones too) must be one of the renderer's providers."""
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    marker = tmp_path / "ran-code-from-the-run-dir"
    _edit_saved_config(run_dir, path, target)
    _edit_saved_config(run_dir, path.replace("_target_", "args"), ["touch", str(marker)])
    (run_dir / "alpha" / "alpha.mp4").unlink()  # a script left to render: its providers are built
    resumed = _resume(run_dir)
    assert resumed.returncode == 2, resumed.stderr
    assert f"names {path}: '{target}'" in resumed.stderr and "providers.allow='[" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert not marker.exists()


def test_resume_builds_a_class_the_current_config_allows_never_one_the_saved_config_allows(finished_run, tmp_path):
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    _edit_saved_config(run_dir, "voice._target_", "studio.voices.StudioVoice")
    _edit_saved_config(run_dir, "providers.allow", ["studio.voices.StudioVoice"])
    refused = _resume(run_dir)
    assert refused.returncode == 2 and "'studio.voices.StudioVoice'" in refused.stderr
    allowed = _resume(run_dir, "providers.allow=[studio.voices.StudioVoice]")
    assert allowed.returncode == 0, allowed.stderr  # every video was there: nothing built


def test_resume_refuses_a_manifest_slug_that_is_not_one(finished_run, tmp_path):
    run_dir = shutil.copytree(finished_run, tmp_path / "a" / "b" / "run")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["scripts"]["../../etc"] = {**manifest["scripts"].pop("alpha"), "status": "pending"}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    resumed = _resume(run_dir)
    assert resumed.returncode == 2, resumed.stderr
    assert "'../../etc', which is not a slug" in resumed.stderr and "Traceback" not in resumed.stderr
    assert not (tmp_path / "a" / "etc").exists()  # nothing written out of the run dir


def test_resume_refuses_a_manifest_naming_another_cache_than_the_run_s_config(finished_run, tmp_path):
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["cache_dir"] = str(tmp_path / "planted-cache")
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    (run_dir / "alpha" / "alpha.mp4").unlink()
    resumed = _resume(run_dir)
    assert resumed.returncode == 2, resumed.stderr
    assert "planted-cache" in resumed.stderr and "cache.dir=" in resumed.stderr
    assert not (tmp_path / "planted-cache").exists()


@pytest.mark.parametrize("url", ["https://collector.example", "https://api.elevenlabs.io.collector.example",
                                 "http://api.elevenlabs.io", "https://api.elevenlabs.io:8443"])
def test_resume_sends_no_key_to_a_host_its_saved_config_names(finished_run, tmp_path, url):
    """A saved config is data: a resumed run builds the renderer's own cloud voice from it, but refuses to send
    the key to any host but the service's own, this machine, or one the current config allows."""
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    voice = {"_target_": "renderer.providers.elevenlabs.ElevenLabsVoice", "name": "elevenlabs", "base_url": url}
    _edit_saved_config(run_dir, "voice", {**OmegaConf.to_container(OmegaConf.structured(ElevenLabsVoiceConfig)),
                                          **voice})
    (run_dir / "alpha" / "alpha.mp4").unlink()
    refused = _resume(run_dir)
    assert refused.returncode == 2, refused.stderr
    assert f"voice.base_url to '{url}'" in refused.stderr and "providers.allow_urls='[" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_resume_sends_keys_where_the_current_config_allows_and_to_this_machine(finished_run, tmp_path):
    run_dir = shutil.copytree(finished_run, tmp_path / "run")
    _edit_saved_config(run_dir, "visual.pexels_url", "https://pexels.proxy.example/api")
    _edit_saved_config(run_dir, "visual.pixabay_url", "http://127.0.0.1:9/")
    _edit_saved_config(run_dir, "providers.allow_urls", ["https://pexels.proxy.example"])  # the saved list: no
    assert _resume(run_dir).returncode == 2
    allowed = _resume(run_dir, "providers.allow_urls=[https://PEXELS.proxy.example/]")
    assert allowed.returncode == 0, allowed.stderr  # every video was there: nothing sent anywhere
