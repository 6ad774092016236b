"""The Visual line steers the offline pictures: its colour and mood words, read and rendered for real."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from renderer.config import ProceduralVisualConfig
from renderer.providers.chain import make
from renderer.providers.procedural import _source
from renderer.providers.prompt import Mood, mood_of, words_in
from tests.conftest import mean_rgb


def test_words_keep_their_order_and_fold_plurals():
    assert words_in("The black waters of the Skies") == ["black", "water", "sky"]


@pytest.mark.parametrize("prompt, hue, dark, speed", [
    ("Green phosphor on a CRT", 0.33, None, 1.0),
    ("An amber pulse", 0.08, None, 2.5),
    ("Black water under the pier", 0.58, True, 1.0),
    ("A calm, bright morning", None, False, 0.4),
    ("A server room", None, None, 1.0),
])
def test_mood_of_reads_colour_brightness_and_motion(prompt, hue, dark, speed):
    mood = mood_of(prompt)
    assert mood.hue == hue and mood.speed == speed
    assert mood.value == {True: (0.08, 0.25), False: (0.5, 0.8), None: Mood.value}[dark]


def test_a_faster_mood_moves_the_source_faster():
    speeds = [float(re.search(r"speed=([0-9.]+)", _source("gradients", 64, 36, 12, 2.0, random.Random(7),
                                                         Mood(speed=factor))).group(1)) for factor in (0.4, 1, 2.5)]
    assert speeds[0] < speeds[1] < speeds[2]


@pytest.mark.parametrize("source", ["gradients", "life", "mandelbrot", "plasma"])
def test_the_picture_takes_the_colour_the_prompt_names(source, tmp_path: Path):
    visual = make(ProceduralVisualConfig, sources=[source], scale=0.25, fps=6)

    def colour(prompt: str) -> tuple[int, int, int]:
        clip = visual.render(prompt, tmp_path / "v.mp4", width=320, height=180, duration=1.5)
        return mean_rgb(clip.path, 1.0)

    r, g, b = colour("Green phosphor glows on the screen.")
    assert g > r and g > b, (r, g, b)
    r, g, b = colour("An amber pulse in the dark.")
    assert r >= g >= b and r > b, (r, g, b)
    r, g, b = colour("Black water under a pier.")
    assert b > r and r + g + b < 120, (r, g, b)
