"""renderer.providers.library (the user's own clips and stills) and the prompt-steered procedural source:
real files, real ffmpeg, colours read back from rendered frames."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from renderer.files import RunLayout
from renderer.pipeline import render_script
from renderer.providers.library import LibraryError, LibraryVisual, index, words
from renderer.providers.procedural import ProceduralVisual, steer
from tests.conftest import TINY, compose_cfg

SCRIPT = """SCRIPT: LIB_0001 — LIBRARY
[0:00 – Shore]
Visual: Waves roll onto a grey ocean shore.
Narration: “One.”

[0:02 – Street]
Visual: A neon street at night, rain on the glass.
Narration: “Two.”

[0:04 – Blaze]
Visual: The forest burns.
Narration: “Three.”

[0:06 – Nowhere]
Visual: An abstract void.
Narration: “Four.”
END LIB_0001
"""


def mean_rgb(path: Path, at: float) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", str(at), "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).mean(axis=0)


def frame_bytes(path: Path, at: float) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-ss", str(at), "-i", str(path), "-frames:v", "1", "-f",
                           "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout


def dominant(rgb: np.ndarray) -> str:
    return "rgb"[int(np.argmax(rgb))]


@pytest.fixture
def library(tmp_path) -> Path:
    """Three distinct files: a blue clip, a red clip (tagged in clips.yaml only), a green still with detail."""
    folder = tmp_path / "media"
    folder.mkdir()
    for name, colour, seconds in [("ocean-waves.mp4", "0x1040d0", 1.0), ("clip-7.mp4", "0xd02010", 1.0)]:
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"color=c={colour}:s=160x90:r=10:d={seconds}",
                        "-pix_fmt", "yuv420p", str(folder / name)], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=320x180,hue=h=120:s=0,"
                    "colorchannelmixer=rr=0.2:gg=1.0:bb=0.2", "-frames:v", "1", str(folder / "city.png")], check=True)
    (folder / "clips.yaml").write_text("clip-7.mp4: [fire, forest, burn]\ncity.png: 'neon, street, night'\n")
    (folder / "notes.txt").write_text("not media")
    return folder


def test_tags_come_from_names_and_the_sidecar(library):
    tags = {e.path.name: e.tags for e in index(library)}
    assert set(tags) == {"ocean-waves.mp4", "clip-7.mp4", "city.png"}
    assert {"ocean", "wave"} <= tags["ocean-waves.mp4"] and {"fire", "forest", "burn"} <= tags["clip-7.mp4"]
    assert words("The waves, the Oceans!") == {"wave", "ocean"}


def test_each_scene_gets_the_file_that_matches_its_visual_line(library, tmp_path):
    visual = LibraryVisual(dir=str(library))
    cases = [("Waves roll onto a grey ocean shore.", "b", "ocean-waves.mp4"),
             ("The forest burns.", "r", "clip-7.mp4"),
             ("A neon street at night.", "g", "city.png")]
    for prompt, colour, name in cases:
        clip = visual.render(prompt, tmp_path / f"{name}.out.mp4", width=192, height=108, duration=2.5)
        assert clip.provider == f"library:{name}"
        info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format",
                                          "-show_streams", str(clip.path)], capture_output=True, text=True).stdout)
        assert float(info["format"]["duration"]) == pytest.approx(2.5, abs=0.15)  # looped past the 1 s clip
        assert (info["streams"][0]["width"], info["streams"][0]["height"]) == (192, 108)
        assert dominant(mean_rgb(clip.path, 1.8)) == colour
    with pytest.raises(LibraryError, match="matches 'An abstract void.'"):
        visual.render("An abstract void.", tmp_path / "none.mp4", width=192, height=108, duration=1.0)


def test_a_still_moves_slowly(library, tmp_path):
    clip = LibraryVisual(dir=str(library)).render("neon street", tmp_path / "still.mp4", width=192, height=108,
                                                  duration=3.0)
    first, last = np.frombuffer(frame_bytes(clip.path, 0.0), np.uint8), np.frombuffer(frame_bytes(clip.path, 2.8),
                                                                                      np.uint8)
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 2  # zoomed and panned, not a freeze
    middle = np.frombuffer(frame_bytes(clip.path, 1.4), np.uint8)
    assert np.abs(first.astype(int) - middle.astype(int)).mean() < np.abs(first.astype(int) - last.astype(int)).mean()


def test_extend_holds_the_last_frame(library, tmp_path):
    clip = LibraryVisual(dir=str(library), fit="extend").render("ocean", tmp_path / "held.mp4", width=96, height=54,
                                                                 duration=2.0)
    assert dominant(mean_rgb(clip.path, 1.7)) == "b"


def test_bad_settings_name_the_fix(tmp_path):
    with pytest.raises(LibraryError, match="needs visual.dir"):
        LibraryVisual()
    with pytest.raises(LibraryError, match="no such folder"):
        LibraryVisual(dir=str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LibraryError, match="holds no clips"):
        LibraryVisual(dir=str(tmp_path / "empty"))


def test_in_a_render_unmatched_scenes_fall_back_to_procedural_and_say_so(library, tmp_path):
    script = tmp_path / "lib.txt"
    script.write_text(SCRIPT, encoding="utf-8")
    cfg = compose_cfg(*TINY, "visual=library", f"visual.dir={library}", "assembly=visual_only")
    record = render_script(script, "lib", cfg, RunLayout(tmp_path / "run"))
    assert record["status"] == "ok", record["error"]
    providers = {s["name"]: s["provider"] for s in record["stages"] if s["stage"] == "visual"}
    assert providers["visual/0"] == "library:ocean-waves.mp4" and providers["visual/2"] == "library:clip-7.mp4"
    assert providers["visual/1"] == "library:city.png" and providers["visual/3"].startswith("procedural")
    (fallback,) = [f for f in record["fallbacks"] if f["node"] == "visual/3"]
    assert "abstract void" in fallback["reason"]
    mp4 = tmp_path / "run" / "lib" / "lib.mp4"
    assert dominant(mean_rgb(mp4, 1.0)) == "b" and dominant(mean_rgb(mp4, 5.0)) == "r"


@pytest.mark.parametrize("prompt,colour", [("Green phosphor glows on a terminal.", "g"),
                                           ("An amber pulse in the dark.", "r"),
                                           ("A forest fire at dusk.", "r"),
                                           ("Deep blue ocean water.", "b")])
@pytest.mark.parametrize("source", ["gradients", "plasma", "mandelbrot", "life"])
def test_the_procedural_source_takes_its_colours_from_the_prompt(prompt, colour, source, tmp_path):
    clip = ProceduralVisual(sources=[source], scale=0.25, fps=5).render(prompt, tmp_path / "p.mp4", width=320,
                                                                         height=180, duration=1.0)
    assert clip.provider == f"procedural:{source}"
    assert dominant(mean_rgb(clip.path, 0.6)) == colour


def test_dark_and_fast_words_steer_brightness_and_motion():
    assert steer("Black water under a night sky").brightness < 0.5 < steer("Water under a sky").brightness
    assert steer("A fire").speed > 1 > steer("A calm sea").speed
    assert steer("The forest").hue == pytest.approx(0.3) and steer("A forest fire").hue == pytest.approx(0.04)
    assert steer("Cells on a grid").source == "life" and steer("Abstract").hue is None


def test_dark_prompts_render_darker(tmp_path):
    visual = ProceduralVisual(sources=["gradients"], fps=5)
    dark = visual.render("Black water under a night sky.", tmp_path / "d.mp4", width=320, height=180, duration=1.0)
    light = visual.render("Water under a sky.", tmp_path / "l.mp4", width=320, height=180, duration=1.0)
    assert mean_rgb(dark.path, 0.5).mean() < 0.6 * mean_rgb(light.path, 0.5).mean()
