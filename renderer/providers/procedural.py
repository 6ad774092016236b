"""Offline scene visuals from ffmpeg's lavfi sources: varied per scene, seeded by it, cheap to render.

Clips are rendered small (``scale`` of the output size, low fps); assembly scales them to the format.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
from pathlib import Path

from renderer import ffmpeg
from renderer.providers.base import VisualClip


def seed_of(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:4], "big")


def _palette(rng: random.Random, n: int = 3) -> list[str]:
    """Moody colours around one random hue, dark enough for a terminal to read on top."""
    hue = rng.random()
    colours = []
    for i in range(n):
        h = (hue + i * rng.uniform(0.05, 0.18)) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(0.5, 0.9), rng.uniform(0.25, 0.6))
        colours.append(f"0x{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return colours


def _source(kind: str, w: int, h: int, fps: int, duration: float, rng: random.Random) -> str:
    seed = rng.randrange(2**31)
    c = _palette(rng)
    if kind == "gradients":
        return (f"gradients=s={w}x{h}:r={fps}:d={duration:.3f}:seed={seed}:nb_colors=3"
                f":c0={c[0]}:c1={c[1]}:c2={c[2]}:speed={rng.uniform(0.005, 0.02):.4f}")
    if kind == "life":
        return (f"life=s={w}x{h}:r={fps}:seed={seed}:ratio={rng.uniform(0.1, 0.3):.2f}:mold=25"
                f":life_color={c[0]}:death_color=0x050505:mold_color={c[1]},trim=duration={duration:.3f}")
    if kind == "mandelbrot":
        return (f"mandelbrot=s={w}x{h}:r={fps}:start_scale={rng.uniform(2, 3):.2f}:end_scale=0.3"
                f":end_pts={duration * fps:.0f}:inner=black,hue=h={rng.randrange(360)}:s=0.6,"
                f"eq=brightness=-0.12,trim=duration={duration:.3f}")
    if kind == "plasma":  # geq is costly per pixel: half the size again
        w, h = max(16, w // 2 // 2 * 2), max(16, h // 2 // 2 * 2)
        a, b, k = rng.uniform(11, 31), rng.uniform(11, 31), rng.uniform(0.3, 0.9)
        return (f"color=black:s={w}x{h}:r={fps}:d={duration:.3f},format=rgb24,"
                f"geq=r='60+50*sin(X/{a:.1f}+T*{k:.2f})*cos(Y/{b:.1f}-T*0.4)'"
                f":g='40+35*sin((X+Y)/{a + b:.1f}+T*0.5)'"
                f":b='90+70*cos(hypot(X-W/2,Y-H/2)/{b:.1f}-T*{k:.2f})'")
    raise ValueError(f"unknown procedural source {kind!r}: use gradients, life, mandelbrot or plasma")


class ProceduralVisual:
    version = "1"

    def __init__(self, name: str = "procedural", scale: float = 0.25, fps: int = 12,
                 sources: list[str] | None = None):
        self.name = name
        self.scale = scale
        self.fps = fps
        self.sources = list(sources or ["gradients"])

    def render(self, prompt: str, out: Path, *, width: int, height: int, duration: float,
               timeout: float = 300.0) -> VisualClip:
        """A clip of ``duration`` seconds for a scene described by ``prompt`` (the prompt seeds it)."""
        rng = random.Random(seed_of(prompt))
        kind = self.sources[rng.randrange(len(self.sources))]
        w = max(16, int(width * self.scale) // 2 * 2)
        h = max(16, int(height * self.scale) // 2 * 2)
        graph = _source(kind, w, h, self.fps, duration, rng)
        ffmpeg.run(["-f", "lavfi", "-i", graph, "-t", f"{duration:.3f}", "-an", "-c:v", "libx264",
                    "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p", "-f", "mp4", str(out)],
                   timeout=timeout, duration=duration)
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
