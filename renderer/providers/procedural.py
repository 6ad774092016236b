"""Offline scene visuals from ffmpeg's lavfi sources: varied per scene, seeded by it, cheap to render.

The Visual line steers them: colour words ("green phosphor", "amber") set the hue, moods set brightness and
motion ("night", "black water" darker; "fire", "pulse", "storm" faster; "calm", "still" slower), and a few
subjects pick the source ("cells", "grid" -> life, "fractal" -> mandelbrot, "water" -> plasma) when it is one of
``sources``; what the words leave open comes from the seed. Clips are rendered small (``scale`` of the
output size, low fps); assembly scales them to the format.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from renderer import ffmpeg
from renderer.providers.base import VisualClip


def seed_of(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:4], "big")


COLOURS = {"red": 0.0, "crimson": 0.97, "scarlet": 0.99, "rust": 0.04, "orange": 0.07, "amber": 0.09,
           "gold": 0.12, "golden": 0.12, "yellow": 0.15, "lime": 0.25, "green": 0.33, "phosphor": 0.33,
           "emerald": 0.38, "teal": 0.47, "cyan": 0.5, "blue": 0.62, "navy": 0.64, "indigo": 0.7, "violet": 0.77,
           "purple": 0.78, "magenta": 0.85, "pink": 0.92, "rose": 0.95}
THINGS = {"blood": 0.98, "fire": 0.04, "flame": 0.05, "flames": 0.05, "lava": 0.03, "sand": 0.11, "desert": 0.1,
          "sun": 0.1, "matrix": 0.33, "forest": 0.3, "jungle": 0.3, "grass": 0.28, "ice": 0.53, "water": 0.57,
          "ocean": 0.58, "sea": 0.58, "sky": 0.56, "neon": 0.85, "aurora": 0.4}
DARK = {"night": 0.45, "black": 0.35, "dark": 0.5, "shadow": 0.5, "void": 0.35, "midnight": 0.4, "deep": 0.6}
GREY = {"grey": 0.1, "gray": 0.1, "white": 0.05, "silver": 0.08, "fog": 0.15, "smoke": 0.15, "ash": 0.1,
        "monochrome": 0.0, "steel": 0.15}
FAST = {"fire": 2.5, "pulse": 2.0, "pulsing": 2.0, "storm": 2.5, "glitch": 3.0, "racing": 2.5, "explosion": 3.0,
        "flicker": 2.0, "flickering": 2.0, "chaos": 3.0, "rush": 2.0}
SLOW = {"calm": 0.4, "still": 0.3, "quiet": 0.5, "slow": 0.5, "drifting": 0.6, "frozen": 0.25, "silent": 0.5}
SUBJECTS = {"life": ("cell", "cells", "grid", "swarm", "colony", "glitch", "noise", "static", "pixels", "matrix"),
            "mandelbrot": ("fractal", "spiral", "infinite", "infinity", "recursion", "recursive", "zoom", "vortex"),
            "plasma": ("water", "ocean", "sea", "waves", "liquid", "aurora", "plasma", "fire", "flame", "lava"),
            "gradients": ("sky", "dawn", "dusk", "sunset", "sunrise", "horizon", "fog", "haze", "light")}


@dataclass(frozen=True)
class Steer:
    """What a Visual line says about the picture: a hue (or None), saturation and brightness factors, a
    motion factor, and a source it calls for."""

    hue: float | None = None
    saturation: float = 1.0
    brightness: float = 1.0
    speed: float = 1.0
    source: str = ""


def steer(prompt: str) -> Steer:
    said = re.findall(r"[a-z]+", prompt.lower())
    # a colour named outright wins (the first); else the thing it is, the last ("a forest fire": fire)
    hues = [COLOURS[w] for w in said if w in COLOURS] or [THINGS[w] for w in reversed(said) if w in THINGS]
    brightness = min([DARK[w] for w in said if w in DARK], default=1.0)
    saturation = min([GREY[w] for w in said if w in GREY], default=1.0)
    speed = max([FAST[w] for w in said if w in FAST], default=1.0) * min([SLOW[w] for w in said if w in SLOW],
                                                                        default=1.0)
    if hues:
        hue = hues[0]
    elif brightness < 1.0:  # a dark line with no colour of its own: night blue
        hue = 0.63
    else:
        hue = None
    source = next((kind for w in said for kind, cues in SUBJECTS.items() if w in cues), "")
    return Steer(hue, saturation, brightness, speed, source)


def _palette(rng: random.Random, n: int = 3, steer_by: Steer = Steer()) -> list[str]:
    """Moody colours around one hue (the line's, or a random one), dark enough for a terminal to read on top."""
    hue = rng.random() if steer_by.hue is None else steer_by.hue
    spread = (0.05, 0.18) if steer_by.hue is None else (0.0, 0.04)  # a named colour stays that colour
    colours = []
    for i in range(n):
        h = (hue + i * rng.uniform(*spread)) % 1.0
        sat = min(1.0, rng.uniform(0.5, 0.9) * steer_by.saturation)
        value = rng.uniform(0.25, 0.6) * steer_by.brightness
        r, g, b = colorsys.hsv_to_rgb(h, sat, value)
        colours.append(f"0x{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return colours


def _tint(s: Steer) -> str:
    """For the sources that choose their own colours (mandelbrot, plasma): the picture's brightness recoloured
    in the line's hue (grey when it says grey), darker when it says so."""
    if s.hue is None and s.brightness == 1.0 and s.saturation == 1.0:
        return ""
    if s.hue is None:
        weights = (1.0, 1.0, 1.0)
    else:
        sat = 0.85 * s.saturation
        weights = colorsys.hsv_to_rgb(s.hue, sat, 1.0)
    gain = 1.6 * s.brightness
    rows = [f"{c}r={0.3 * w * gain:.3f}:{c}g={0.59 * w * gain:.3f}:{c}b={0.11 * w * gain:.3f}"
            for c, w in zip("rgb", weights)]
    return ",format=rgb24,colorchannelmixer=" + ":".join(rows)


def _source(kind: str, w: int, h: int, fps: int, duration: float, rng: random.Random,
            steer_by: Steer = Steer()) -> str:
    seed = rng.randrange(2**31)
    c = _palette(rng, steer_by=steer_by)
    fast = steer_by.speed
    if kind == "gradients":
        return (f"gradients=s={w}x{h}:r={fps}:d={duration:.3f}:seed={seed}:nb_colors=3"
                f":c0={c[0]}:c1={c[1]}:c2={c[2]}:speed={min(0.1, rng.uniform(0.005, 0.02) * fast):.4f}")
    if kind == "life":
        return (f"life=s={w}x{h}:r={fps}:seed={seed}:ratio={rng.uniform(0.1, 0.3):.2f}:mold=25"
                f":life_color={c[0]}:death_color=0x050505:mold_color={c[1]},trim=duration={duration:.3f}")
    if kind == "mandelbrot":
        return (f"mandelbrot=s={w}x{h}:r={fps}:start_scale={rng.uniform(2, 3):.2f}:end_scale=0.3"
                f":end_pts={duration * fps / fast:.0f}:inner=black,hue=h={rng.randrange(360)}:s=0.6,"
                f"eq=brightness=-0.12{_tint(steer_by)},trim=duration={duration:.3f}")
    if kind == "plasma":  # geq is costly per pixel: half the size again
        w, h = max(16, w // 2 // 2 * 2), max(16, h // 2 // 2 * 2)
        a, b, k = rng.uniform(11, 31), rng.uniform(11, 31), rng.uniform(0.3, 0.9) * fast
        return (f"color=black:s={w}x{h}:r={fps}:d={duration:.3f},format=rgb24,"
                f"geq=r='60+50*sin(X/{a:.1f}+T*{k:.2f})*cos(Y/{b:.1f}-T*0.4)'"
                f":g='40+35*sin((X+Y)/{a + b:.1f}+T*0.5)'"
                f":b='90+70*cos(hypot(X-W/2,Y-H/2)/{b:.1f}-T*{k:.2f})'{_tint(steer_by)}")
    raise ValueError(f"unknown procedural source {kind!r}: use gradients, life, mandelbrot or plasma")


class ProceduralVisual:
    version = "2"

    def __init__(self, name: str = "procedural", scale: float = 0.25, fps: int = 12,
                 sources: list[str] | None = None):
        self.name = name
        self.scale = scale
        self.fps = fps
        self.sources = list(sources or ["gradients"])

    def render(self, prompt: str, out: Path, *, width: int, height: int, duration: float,
               timeout: float = 300.0) -> VisualClip:
        """A clip of ``duration`` seconds for a scene described by ``prompt`` (the prompt steers and seeds it)."""
        rng = random.Random(seed_of(prompt))
        said = steer(prompt)
        kind = self.sources[rng.randrange(len(self.sources))]
        if said.source in self.sources:
            kind = said.source
        w = max(16, int(width * self.scale) // 2 * 2)
        h = max(16, int(height * self.scale) // 2 * 2)
        graph = _source(kind, w, h, self.fps, duration, rng, said)
        ffmpeg.run(["-f", "lavfi", "-i", graph, "-t", f"{duration:.3f}", "-an", "-c:v", "libx264",
                    "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p", "-f", "mp4", str(out)],
                   timeout=timeout)
        return VisualClip(out, duration, f"{self.name}:{kind}")


class Backdrop:
    """The last resort for a scene's visual: a dark still, tiny (assembly scales it)."""

    name = "backdrop"
    version = "1"
    colour = "0x14161c"

    def render(self, prompt: str, out: Path, *, width: int, height: int, duration: float,
               timeout: float = 300.0) -> VisualClip:
        ffmpeg.run(["-f", "lavfi", "-i", f"color=c={self.colour}:s=64x36:r=1:d={duration:.3f}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4", str(out)], timeout=timeout)
        return VisualClip(out, duration, self.name)
