"""visual=library against real media files made here: the matching file picked, fitted, Ken Burns on stills,
no match falling back to procedural (recorded), a wrong folder a clear error, keys following the picked file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from renderer.config import LibraryVisualConfig
from renderer.media import ffmpeg
from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from renderer.providers.chain import make
from renderer.providers.library import LibraryError, LibraryVisual, index
from renderer.providers.prompt import words_of
from renderer.stages import visual as visual_stage
from tests.conftest import TINY, compose_cfg, mean_rgb, parsed

COLOURS = {"blue": (0, 0, 255), "green": (0, 160, 0), "red": (255, 0, 0), "white": (255, 255, 255)}


def make_clip(path: Path, colour: str, seconds: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={colour}:s=160x90:r=10:d={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def make_still(path: Path, colour: str | None = None) -> Path:
    """A still: one flat colour, or (no colour) a test pattern, whose crops differ from place to place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = f"color=c={colour}:s=320x180" if colour else "testsrc2=s=320x180"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-frames:v", "1", str(path)],
                   check=True)
    return path


def library(folder: Path, **settings) -> LibraryVisual:
    return make(LibraryVisualConfig, dir=str(folder), **settings)


def near(rgb, colour: str, tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, COLOURS[colour]))


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    make_clip(root / "ocean-waves.mp4", "blue")
    make_clip(root / "nature" / "forest_path.mov", "green")
    make_still(root / "IMG_0042.png", "red")
    (root / "clips.yaml").write_text("IMG_0042.png: {tags: 'harbour, boats, night'}\n", encoding="utf-8")
    make_clip(root / "water-bright.mp4", "white")
    make_clip(root / "black-water.mp4", "blue")
    return root


def test_words_fold_plurals_and_drop_stop_words():
    assert words_of("The waves of the OCEAN, slowly; skies & glass") == {"wave", "ocean", "sky", "glass"}


@pytest.mark.parametrize("prompt, picked", [
    ("Waves crash on a grey ocean.", "ocean-waves.mp4"),
    ("A path through a quiet forest.", "nature/forest_path.mov"),  # the folder's name counts too
    ("Boats rock in the harbour at night.", "IMG_0042.png"),  # tags from clips.yaml
    ("Black water under the pier.", "black-water.mp4"),  # the rarer word wins over the common one
])
def test_the_best_matching_file_is_picked(media: Path, prompt: str, picked: str):
    assert library(media).pick(prompt).relative == picked


def test_nothing_in_common_is_no_match(media: Path):
    assert library(media).pick("A mandelbrot zoom.") is None


def test_a_clip_is_fitted_to_the_scene_and_shows_its_own_picture(media: Path, tmp_path: Path):
    clip = library(media).render("the forest", tmp_path / "v.mp4", width=192, height=108, duration=2.5)
    assert clip.provider == "library:nature/forest_path.mov"
    info = ffmpeg.probe(clip.path)
    assert info.duration == pytest.approx(2.5, abs=0.15)  # a 1 s clip looped
    assert (info.first("video").width, info.first("video").height) == (192, 108)
    assert near(mean_rgb(clip.path, 1.7), "green")


def test_a_still_gets_a_slow_ken_burns_move(tmp_path: Path):
    root = tmp_path / "stills"
    make_still(root / "city-lights.png")
    clip = library(root, fps=10).render("city lights", tmp_path / "v.mp4", width=192, height=108, duration=3.0)
    info = ffmpeg.probe(clip.path)
    assert info.duration == pytest.approx(3.0, abs=0.15) and info.first("video").width == 192
    first, last = mean_rgb(clip.path, 0.0), mean_rgb(clip.path, 2.9)
    assert first != last  # the frame moved over the picture


def test_a_still_named_like_an_image_sequence_is_that_one_file(tmp_path: Path):
    """``x%03d.png`` is the blue still, not the sequence x001.png (red) beside it."""
    root = tmp_path / "stills"
    root.mkdir()
    for name, colour in (("x%03d.png", "blue"), ("x001.png", "red")):  # -update 1: the name as written
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={colour}:s=320x180",
                        "-frames:v", "1", "-update", "1", str(root / name)], check=True)
    (root / "clips.yaml").write_text("'x%03d.png': [ocean]\n", encoding="utf-8")
    clip = library(root).render("ocean", tmp_path / "v.mp4", width=192, height=108, duration=1.0)
    assert clip.provider == "library:x%03d.png" and near(mean_rgb(clip.path), "blue")


def test_a_still_in_its_own_colour(media: Path, tmp_path: Path):
    clip = library(media).render("boats", tmp_path / "v.mp4", width=192, height=108, duration=1.0)
    assert near(mean_rgb(clip.path), "red")


@pytest.mark.parametrize("folder, message", [("missing", "no such folder"), ("empty", "holds no clips")])
def test_a_wrong_folder_is_a_clear_error(tmp_path: Path, folder: str, message: str):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LibraryError, match=message):
        library(tmp_path / folder)


def test_a_sidecar_with_aliases_is_refused_not_expanded(tmp_path: Path):
    """A "billion laughs" clips.yaml (about 300 bytes, a billion strings if expanded) is refused at once."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "sea.png").write_bytes(b"")
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, c in zip("abcdefgh", "bcdefghi")]
    (tmp_path / "m" / "clips.yaml").write_text("\n".join(laughs) + "\n", encoding="utf-8")
    with pytest.raises(LibraryError, match=r"m/clips.yaml: cannot be read as YAML .*an alias \(\*a\) at line 2: "
                                           r"aliases are not allowed"):
        index(tmp_path / "m")


def test_a_broken_sidecar_names_itself(tmp_path: Path):
    make_clip(tmp_path / "m" / "a.mp4", "blue")
    (tmp_path / "m" / "clips.yaml").write_text("a.mp4: [unclosed\n", encoding="utf-8")
    with pytest.raises(LibraryError, match=r"clips.yaml: cannot be read as YAML"):
        library(tmp_path / "m")


SCRIPT = """SCRIPT: LIB_0001 — LIBRARY
[0:00 – One]
Visual: Waves on the ocean.
Narration: “One.”

[0:02 – Two]
Visual: A mandelbrot zoom.
Narration: “Two.”
END LIB_0001
"""


def test_in_a_render_each_scene_shows_its_file_and_a_scene_without_one_falls_back(media: Path, tmp_path: Path):
    script = tmp_path / "lib.txt"
    script.write_text(SCRIPT, encoding="utf-8")
    cfg = compose_cfg(*TINY, "visual=library", f"visual.dir={media}", "assembly=visual_only")
    record = render_script(script, "lib", cfg, RunLayout(tmp_path / "run"))
    assert record["status"] == "ok", record["error"]
    providers = {s["name"]: s["provider"] for s in record["stages"] if s["stage"] == "visual"}
    assert providers["visual/0"] == "library:ocean-waves.mp4"
    assert providers["visual/1"].startswith("procedural")
    (fallback,) = record["fallbacks"]
    assert fallback["node"] == "visual/1" and "matches 'A mandelbrot zoom.'" in fallback["reason"]
    assert near(mean_rgb(tmp_path / "run" / "lib" / "lib.mp4", 0.5), "blue")


def test_a_missing_library_fails_the_script_with_the_fix(tmp_path: Path):
    script = tmp_path / "lib.txt"
    script.write_text(SCRIPT, encoding="utf-8")
    cfg = compose_cfg(*TINY, "visual=library", f"visual.dir={tmp_path / 'nowhere'}")
    record = render_script(script, "lib", cfg, RunLayout(tmp_path / "run"))
    assert record["status"] == "failed" and "no such folder" in record["error"] and "visual.dir=" in record["error"]


def test_the_key_follows_the_picked_file_only(media: Path):
    scene = parsed(SCRIPT, "lib.txt").scenes[0]
    provider = library(media)

    def data() -> dict:
        return visual_stage.node(scene, library(media), width=192, height=108, timeout=60).data

    before = data()
    assert before["source"].startswith("ocean-waves.mp4:")
    os.utime(media / "water-bright.mp4", ns=(1, 1))  # another file changed: this scene's key stays
    assert data() == before
    make_clip(media / "ocean-waves.mp4", "green", seconds=2)  # its own file changed: it renders again
    assert data() != before
    assert provider.fingerprint("nothing here") == ""


def test_a_moved_library_keeps_its_keys(media: Path, tmp_path: Path):
    from renderer.engine.graph import Graph

    scene = parsed(SCRIPT, "lib.txt").scenes[0]

    def key(folder: Path) -> str:
        cfg = compose_cfg(*TINY, "visual=library", f"visual.dir={folder}")
        node = visual_stage.node(scene, library(folder), width=192, height=108, timeout=60)
        return Graph.key(node, cfg, {}, {})

    before = key(media)
    moved = media.rename(tmp_path / "moved")  # rename keeps sizes and modification times
    assert key(moved) == before


SHOTS = """SCRIPT: LIB_0002 — SHOTS
[0:00 – Sea]
Visual: Water.
Narration: “One.”

[0:03 – Forest]
Visual: A forest path.
Narration: “Two.”
END LIB_0002
"""


def test_a_long_scene_is_cut_into_shots_of_different_files_and_an_edit_fetches_only_its_scene(media: Path,
                                                                                               tmp_path: Path):
    script = tmp_path / "shots.txt"
    script.write_text(SHOTS, encoding="utf-8")
    cfg = compose_cfg(*[o for o in TINY if not o.startswith("cache.")], f"cache.dir={tmp_path / 'cache'}",
                      "visual=library", f"visual.dir={media}", "visual.shot_s=1", "assembly=visual_only")
    record = render_script(script, "shots", cfg, RunLayout(tmp_path / "run"))
    assert record["status"] == "ok", record["error"]
    providers = {s["name"]: s["provider"] for s in record["stages"] if s["stage"] == "visual"}
    water = [providers[f"visual/0.{k}"] for k in range(3)]  # 3 s in shots of 1 s: the two water files in turn
    assert water == ["library:black-water.mp4", "library:water-bright.mp4", "library:black-water.mp4"]
    video = tmp_path / "run" / "shots" / "shots.mp4"
    assert [near(mean_rgb(video, t), c) for t, c in ((0.5, "blue"), (1.5, "white"), (2.5, "blue"))] == [True] * 3

    script.write_text(SHOTS.replace("A forest path.", "A forest path in the nature reserve."), encoding="utf-8")
    again = render_script(script, "shots", cfg, RunLayout(tmp_path / "run2"))
    ran = {s["name"] for s in again["stages"] if s["stage"] == "visual" and s["status"] != "cached"}
    assert ran == {name for name in providers if name.startswith("visual/1")}  # the edited scene's shots only
