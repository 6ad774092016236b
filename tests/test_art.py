"""The calm generated backgrounds (renderer/media/art.py) and how the procedural provider draws with them:
calmer than the lavfi sources they replace (spatial information, ITU-T P.910) yet moving (temporal
information), in the theme's colours, steered by the Visual line's words, keyed by the theme."""

from __future__ import annotations

import random
import subprocess

import numpy as np
import pytest

from renderer.config import LibraryVisualConfig, ProceduralVisualConfig
from renderer.engine.graph import Graph
from renderer.media import art
from renderer.providers.chain import make
from renderer.providers.procedural import kind_for
from renderer.stages import visual as visual_stage
from tests.conftest import TINY, compose_cfg, parsed
from tests.test_library import SCRIPT as LIBRARY_SCRIPT, make_clip

W, H, FPS = 160, 90, 12
MATRIX = ["#000000", "#008f11", "#3ce68c", "#00e0a0", "#39ff14"]
DARK = ["#0d1117", "#58a6ff", "#bc8cff", "#39c5cf", "#3fb950"]


def drawn(kind: str, seconds: float = 1.0, colours: list[str] = DARK, seed: int = 1) -> np.ndarray:
    palette = art.palette_of(colours[0], colours[1:-1], colours[-1])
    raw = b"".join(art.frames(kind, W, H, FPS, seconds, palette, seed=seed))
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3)


def lavfi(source: str, seconds: float = 1.0) -> np.ndarray:
    """What today's busiest sources draw, at the same size and rate."""
    graph = {"life": f"life=s={W}x{H}:r={FPS}:seed=1:ratio=0.2:mold=25:life_color=0x33aa44:death_color=0x050505",
             "mandelbrot": f"mandelbrot=s={W}x{H}:r={FPS}:start_scale=2.5:end_scale=0.3:end_pts={seconds * FPS}"}[source]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", graph, "-t", str(seconds), "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3)


def luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def spatial(frames: np.ndarray) -> float:
    """SI: the largest, over frames, standard deviation of the Sobel gradient magnitude of the luma."""
    y = luma(frames)
    gx = y[:, 1:-1, 2:] - y[:, 1:-1, :-2]
    gy = y[:, 2:, 1:-1] - y[:, :-2, 1:-1]
    return float(np.sqrt(gx ** 2 + gy ** 2).std(axis=(1, 2)).max())


def temporal(frames: np.ndarray) -> float:
    """TI: the largest, over frames, standard deviation of the luma's change from the frame before."""
    return float(np.diff(luma(frames), axis=0).std(axis=(1, 2)).max())


@pytest.mark.parametrize("kind", art.KINDS)
def test_every_kind_is_calmer_than_life_and_mandelbrot_yet_moves(kind):
    frames = drawn(kind)
    busiest = min(spatial(lavfi("life")), spatial(lavfi("mandelbrot")))
    assert spatial(frames) < busiest / 2, (spatial(frames), busiest)
    assert temporal(frames) > 0.02  # never a still
    assert (frames == drawn(kind)).all() and not (frames == drawn(kind, seed=2)).all()  # seeded


def test_the_theme_s_colours_are_the_picture_s():
    matrix, dark = drawn("field", colours=MATRIX).mean(axis=(0, 1, 2)), drawn("field", colours=DARK).mean(axis=(0, 1, 2))
    assert matrix[1] > 2 * max(matrix[0], matrix[2])  # green
    assert dark[2] > dark[0] and dark[2] > dark[1] * 0.9  # blue, violet
    light = art.palette_of("#ffffff", ["#0451a5"], "#0451a5")
    assert max(light.base) <= 0.12  # a light theme's base is kept dark: text on it stays readable


def test_a_colour_word_turns_the_lights_toward_it():
    amber = art.palette_of(DARK[0], DARK[1:-1], DARK[-1], hue=0.08)
    assert all(r > b for r, _, b in amber.lights)
    night = art.palette_of(DARK[0], DARK[1:-1], DARK[-1], value=(0.08, 0.25))
    assert max(max(rgb) for rgb in night.lights) <= 0.25 + 1e-6


@pytest.mark.parametrize("prompt,kind", [("A night sky over the desert.", "stars"),
                                         ("Streams of data scrolling past.", "rain"),
                                         ("City lights in the rain-soaked street.", "bokeh")])
def test_scenery_words_pick_the_kind(prompt, kind):
    sources = ["field", "bokeh", "stars", "rain"]
    assert kind_for(prompt, sources, random.Random(0)) == kind
    assert kind_for(prompt, ["field"], random.Random(0)) == "field"  # only what the config allows


def test_a_scene_without_scenery_words_is_calm():
    sources = ["field", "bokeh", "stars", "rain", "life"]
    kinds = {kind_for(f"A closed door, number {n}.", sources, random.Random(n)) for n in range(20)}
    assert kinds == {"field", "bokeh"}


def test_a_theme_change_redraws_procedural_scenes_but_fetches_no_footage_again(tmp_path):
    scene = parsed(LIBRARY_SCRIPT, "lib.txt").scenes[0]
    make_clip(tmp_path / "media" / "ocean-waves.mp4", "blue")

    def key(provider, theme: str, *overrides: str) -> str:
        cfg = compose_cfg(*TINY, *overrides, f"theme={theme}")
        return Graph.key(visual_stage.node(scene, provider, width=192, height=108, timeout=60), cfg, {}, {})

    procedural = make(ProceduralVisualConfig)
    assert key(procedural, "dark") != key(procedural, "matrix")
    library = make(LibraryVisualConfig, dir=str(tmp_path / "media"))
    assert key(library, "dark", "visual=library", f"visual.dir={tmp_path / 'media'}") == \
        key(library, "matrix", "visual=library", f"visual.dir={tmp_path / 'media'}")
