"""Offline scene visuals, seeded by the scene, cheap to render: calm generated backgrounds in the theme's
colours (renderer/media/art.py: ``field``, ``bokeh``, ``stars``, ``rain``) or ffmpeg's lavfi sources
(``gradients``, ``plasma``, ``life``, ``mandelbrot``: busier, kept for those who ask for them).

The Visual line steers them (renderer/providers/prompt.py): its first colour word ("green phosphor", "amber
pulse", "black water") turns the lights toward that hue, dark or bright words their brightness, fast or slow
words the motion, and words of a kind's scenery pick it ("night sky" stars, "data stream" rain, "city lights"
bokeh; otherwise a seeded choice of the calm ``field`` and ``bokeh``). The art is drawn in the theme's colours
(``palette``, passed by the visual stage), so one video's scenes belong together. Clips are rendered small
(``scale`` of the output size, low fps); assembly scales them to the format.
"""

from __future__ import annotations

import colorsys
import hashlib
import random
from pathlib import Path
from typing import Sequence

from renderer.media import art, ffmpeg
from renderer.providers.base import LOCAL_TIMEOUT_S, ProviderConfigError, VisualClip
from renderer.providers.prompt import Mood, mood_of, words_of

LAVFI = ("gradients", "life", "mandelbrot", "plasma")  # ffmpeg's sources it can draw (_source)
SOURCES = (*art.KINDS, *LAVFI)
CALM = ("field", "bokeh")  # what a scene whose words call for no scenery gets
SCENERY = {  # words that call for a kind
    "stars": frozenset("star night space sky cosmos cosmic galaxy orbit planet satellite void universe astronaut "
                       "telescope constellation moon".split()),
    "rain": frozenset("data code rain matrix digital stream binary terminal server network signal packet "
                      "download upload cyber hacker".split()),
    "bokeh": frozenset("light city lamp glow neon bokeh candle festival street traffic window lantern "
                       "reflection".split()),
}
NO_THEME = ["#0d1117", "#58a6ff", "#bc8cff", "#39c5cf", "#3fb950"]  # base, lights, accent: without a theme


def kind_for(prompt: str, sources: list[str], rng: random.Random) -> str:
    """The kind a scene is drawn as: one its words call for, else a seeded calm one (else any of ``sources``)."""
    words = words_of(prompt)
    called = [kind for kind, scenery in SCENERY.items() if kind in sources and words & scenery]
    if called:
        return max(called, key=lambda kind: len(words & SCENERY[kind]))
    pool = [kind for kind in sources if kind in CALM] or [kind for kind in sources if kind not in SCENERY] or sources
    return pool[rng.randrange(len(pool))]


def seed_of(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:4], "big")


def _palette(rng: random.Random, mood: Mood, n: int = 3) -> list[tuple[float, float, float]]:
    """Colours (r, g, b in 0..1) around one hue (the mood's, or a random one), dark enough by default for a
    terminal to read on top; a named hue keeps the palette close to it."""
    hue, spread = (rng.random(), (0.05, 0.18)) if mood.hue is None else (mood.hue, (0.0, 0.03))
    colours = []
    for i in range(n):
        h = (hue + i * rng.uniform(*spread) * rng.choice((-1, 1))) % 1.0
        colours.append(colorsys.hsv_to_rgb(h, rng.uniform(0.5, 0.9), rng.uniform(*mood.value)))
    return colours


def _hex(rgb: tuple[float, float, float]) -> str:
    return "0x" + "".join(f"{int(c * 255):02x}" for c in rgb)


def _tint(rgb: tuple[float, float, float], mood: Mood) -> str:
    """``,hue=s=0,lutrgb=...``: the picture in shades of ``rgb`` (white becomes ``rgb`` at the mood's top
    brightness), for sources that bring colours of their own; "" when the prompt names no colour."""
    if mood.hue is None:
        return ""
    top = max(max(rgb), 1e-3)
    r, g, b = (c / top * mood.value[1] for c in rgb)
    return f",hue=s=0,lutrgb=r='val*{r:.3f}':g='val*{g:.3f}':b='val*{b:.3f}'"


def _source(kind: str, w: int, h: int, fps: int, duration: float, rng: random.Random, mood: Mood) -> str:
    seed = rng.randrange(2**31)
    rgb = _palette(rng, mood)
    c = [_hex(colour) for colour in rgb]
    if kind == "gradients":
        return (f"gradients=s={w}x{h}:r={fps}:d={duration:.3f}:seed={seed}:nb_colors=3"
                f":c0={c[0]}:c1={c[1]}:c2={c[2]}:speed={rng.uniform(0.005, 0.02) * mood.speed:.4f}")
    if kind == "life":
        return (f"life=s={w}x{h}:r={fps}:seed={seed}:ratio={rng.uniform(0.1, 0.3):.2f}:mold=25"
                f":life_color={c[0]}:death_color=0x050505:mold_color={c[1]},trim=duration={duration:.3f}")
    if kind == "mandelbrot":  # a faster mood zooms deeper in the same time
        return (f"mandelbrot=s={w}x{h}:r={fps}:start_scale={rng.uniform(2, 3):.2f}:end_scale={0.3 ** mood.speed:.3f}"
                f":end_pts={duration * fps:.0f}:inner=black,hue=h={rng.randrange(360)}:s=0.6,"
                f"eq=brightness=-0.12{_tint(rgb[0], mood)},trim=duration={duration:.3f}")
    if kind == "plasma":  # geq is costly per pixel: half the size again
        w, h = max(16, w // 2 // 2 * 2), max(16, h // 2 // 2 * 2)
        a, b, k = rng.uniform(11, 31), rng.uniform(11, 31), rng.uniform(0.3, 0.9) * mood.speed
        t1, t2 = 0.4 * mood.speed, 0.5 * mood.speed
        return (f"color=black:s={w}x{h}:r={fps}:d={duration:.3f},format=rgb24,"
                f"geq=r='60+50*sin(X/{a:.1f}+T*{k:.2f})*cos(Y/{b:.1f}-T*{t1:.2f})'"
                f":g='40+35*sin((X+Y)/{a + b:.1f}+T*{t2:.2f})'"
                f":b='90+70*cos(hypot(X-W/2,Y-H/2)/{b:.1f}-T*{k:.2f})'{_tint(rgb[0], mood)}")
    raise ValueError(f"unknown procedural source {kind!r}: use {', '.join(SOURCES)}")


class ProceduralVisual:
    """Built from ProceduralVisualConfig (renderer/config.py), where its settings' defaults live; as a stand-in,
    with the configured visual's settings of the same names (renderer/providers/chain.py)."""

    version = "3"  # 3: calm art in the theme's colours
    CPU_BOUND = True  # drawn here (numpy, ffmpeg): the visual stage gives it an encode slot

    def __init__(self, *, name: str, scale: float, fps: int, sources: Sequence[str]):
        self.name = name
        self.scale = scale
        self.fps = fps
        self.sources = list(sources)
        unknown = [kind for kind in self.sources if kind not in SOURCES]
        if unknown or not self.sources:
            raise ProviderConfigError(f"visual.sources={self.sources}: name one or more of {', '.join(SOURCES)}")

    @property
    def THEMED(self) -> bool:  # noqa: N802  (read as a provider's flag, like UNKEYED)
        """Whether it draws in the theme's colours (the art does; the lavfi sources do not): the visual stage then
        passes them (``palette``) and keys the scene by them."""
        return any(kind in art.KINDS for kind in self.sources)

    def render(self, prompt: str, out: Path, *, width: int, height: int, duration: float,
               timeout: float = LOCAL_TIMEOUT_S, palette: Sequence[str] = ()) -> VisualClip:
        """A clip of ``duration`` seconds for a scene described by ``prompt`` (the prompt seeds and steers it),
        in ``palette`` (the theme's background, lights and accent colours)."""
        rng = random.Random(seed_of(prompt))
        mood = mood_of(prompt)
        kind = kind_for(prompt, self.sources, rng)
        w = max(16, int(width * self.scale) // 2 * 2)
        h = max(16, int(height * self.scale) // 2 * 2)
        encode = ["-t", f"{duration:.3f}", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20",
                  "-pix_fmt", "yuv420p", "-f", "mp4", str(out)]
        if kind in art.KINDS:
            colours = list(palette) or NO_THEME
            drawn = art.palette_of(colours[0], colours[1:-1] or colours[1:], colours[-1], hue=mood.hue,
                                   value=mood.value)
            frames = art.frames(kind, w, h, self.fps, duration, drawn, seed=rng.randrange(2**32), speed=mood.speed)
            ffmpeg.run(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(self.fps), "-i", "pipe:0",
                        *encode], timeout=timeout, duration=duration, feed=frames)
        else:
            ffmpeg.run(["-f", "lavfi", "-i", _source(kind, w, h, self.fps, duration, rng, mood), *encode],
                       timeout=timeout, duration=duration)
        return VisualClip(out, duration, provider=f"{self.name}:{kind}")


class Backdrop:
    """The last resort for a scene's visual: a dark still, tiny (assembly scales it). Built from
    BackdropVisualConfig (renderer/config.py)."""

    version = "1"
    colour = "0x14161c"

    def __init__(self, *, name: str):
        self.name = name

    def render(self, prompt: str, out: Path, *, width: int, height: int, duration: float,
               timeout: float = LOCAL_TIMEOUT_S) -> VisualClip:
        ffmpeg.run(["-f", "lavfi", "-i", f"color=c={self.colour}:s=64x36:r=1:d={duration:.3f}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4", str(out)], timeout=timeout)
        return VisualClip(out, duration, provider=self.name)
