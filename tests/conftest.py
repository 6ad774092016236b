"""Shared test helpers: composed configs, tiny render settings, ffprobe checks on rendered files."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from renderer.config import (  # importing it registers the schema
    CONF_MODULE,
    ElevenLabsVoiceConfig,
    ScriptConfig,
    user_config_dir,
)
from renderer.ops import reliability
from renderer.script import Options, Script, parse_text

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"

# Small frames, low fps, fastest encode, the instant voice, no words drawn over the picture: the tests check
# structure and timing, not picture or voice quality (tests of piper, the default voice, of the captions and the
# title card, and of the defaults as a user gets them, ask for them).
TINY = ["format.width=192", "format.height=108", "format.fps=10", "encode.preset=ultrafast",
        "visual.fps=5", "batch.backend=sequential", "cache.enabled=false", "voice=espeak",
        "captions.burn=false", "assembly.title_card=false"]

TWO_SCENES = """SCRIPT: TEST_0001 — TINY
A test script

[0:00 – One | Boot]
Visual: A red sky over a server farm.
ON-SCREEN TEXT:
$ echo "hi: 100% {ok}"
hi: 100% {ok}
Narration:
“Short line one.”

[0:03 – Two]
Visual: A blue sea.
Narration (Anya):
“And two.”
END TEST_0001
"""

# scenes 1 and 3 show a terminal, scene 2 does not; three different Visual prompts
THREE_SCENES = TWO_SCENES.replace("END TEST_0001", """
[0:07 – Three]
Visual: A green field.
ON-SCREEN TEXT:
$ uptime
Narration:
“Three.”
END TEST_0001""")

BACKWARDS = """SCRIPT: TEST_0002 — BROKEN
[0:10 – Late]
Narration: “First.”

[0:05 – Early]
Narration: “Second.”
"""


def model_fields(script) -> list[str]:
    """Every non-empty text field of a parsed script: where each line of the source must land once."""
    fields = [script.title, script.script_id, script.subtitle]
    for scene in script.scenes:
        fields += [scene.title, scene.subtitle, scene.visual]
        fields += [n.text for n in scene.narration] + [o.text for o in scene.on_screen]
    return [f for f in fields if f]


# scripts parsed as the schema's defaults say, with the request limit of ElevenLabs (the one voice that has one)
OPTIONS = Options.of(**asdict(ScriptConfig()), char_limit=ElevenLabsVoiceConfig().char_limit)


def parsed(text: str = TWO_SCENES, path: str = "tiny.txt") -> Script:
    return parse_text(text, path, options=OPTIONS)


_COMPOSED: dict[tuple, DictConfig] = {}


def _config_inputs(overrides: tuple[str, ...]) -> tuple:
    """Everything a composition reads besides the packaged conf/: the overrides, the environment and working
    directory, and every file of the user config dir on Hydra's search path (its name and content)."""
    user_dir = user_config_dir()
    files = tuple(sorted((str(p), p.read_bytes()) for p in user_dir.rglob("*") if p.is_file())) \
        if user_dir.is_dir() else ()
    environ = tuple(sorted((k, v) for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"))  # pytest's own
    return overrides, environ, os.getcwd(), str(user_dir), files


def compose_cfg(*overrides: str):
    """The config ``python -m renderer`` composes with ``overrides``. Composing takes ~0.15 s and many tests
    compose the same overrides: a composition is kept by everything it reads and each caller gets its own deep
    copy (flags, schema types and validation included), so no test sees another's changes."""
    key = _config_inputs(overrides)
    if key not in _COMPOSED:
        with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
            _COMPOSED[key] = compose("config", overrides=list(overrides))
    return copy.deepcopy(_COMPOSED[key])


def ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def codecs(info: dict) -> list[str]:
    return sorted(s["codec_name"] for s in info["streams"])


def video_size(info: dict) -> tuple[int, int]:
    v = next(s for s in info["streams"] if s["codec_type"] == "video")
    return int(v["width"]), int(v["height"])


def max_volume_db(path: Path, start: float, duration: float) -> float:
    """Peak level of the audio between start and start+duration (-inf for digital silence)."""
    err = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-ss", str(start), "-t", str(duration), "-i",
                          str(path), "-af", "volumedetect", "-vn", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    line = next(ln for ln in err.splitlines() if "max_volume" in ln)
    value = line.split("max_volume:")[1].split("dB")[0].strip()
    return float(value)


def mean_rgb(video: Path, at: float = 0.2) -> tuple[int, int, int]:
    """The average colour of the frame at ``at`` seconds."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{at}", "-i", str(video), "-vf", "scale=1:1:flags=area",
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return raw[0], raw[1], raw[2]


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "renderer", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(autouse=True)
def _retries_not_cancelled():
    """A test that interrupts a run cancels every retry loop of the process: the next test starts afresh."""
    yield
    reliability.reset_cancel()


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: writes past it fail with ENOSPC, as on a full disk."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def two_scenes(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TWO_SCENES, encoding="utf-8")
    return path
