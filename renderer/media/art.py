"""Calm generated backgrounds, drawn frame by frame with numpy: slow light, not noise.

Every kind is low-frequency by design — large soft shapes that move slowly — so it sits behind text without
pulling the eye, and costs the encoder few bits: ``field`` (deep colour field: a few wide glows drifting on
slow paths over a dark gradient), ``bokeh`` (soft out-of-focus discs rising through the field), ``stars``
(a starfield drifting with parallax, twinkling, over a faint nebula) and ``rain`` (data rain: faint streaks
falling in columns). A vignette frames each one. Colours come from a ``Palette``: a base (the theme's
background) and lights (its accent colours), so the scenes of one video belong together while the seed
makes each scene's arrangement its own.

Frames are drawn small (the segment scales them up, which only softens what is soft already) and handed
to ffmpeg as raw RGB.
"""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

KINDS = ("field", "bokeh", "stars", "rain")
TAU = 2 * math.pi


@dataclass(frozen=True)
class Palette:
    """A background's colours (r, g, b in 0..1): ``base`` fills the frame, ``lights`` glow on it, ``accent``
    draws the details (rain)."""

    base: tuple[float, float, float]
    lights: tuple[tuple[float, float, float], ...]
    accent: tuple[float, float, float]

    def dimmed(self, lights: float, base: float = 1.0) -> "Palette":
        """The same colours, the lights (and the base) that much darker: a glow behind something else."""
        return Palette(tuple(c * base for c in self.base), tuple(tuple(c * lights for c in rgb)  # type: ignore[arg-type]
                       for rgb in self.lights), self.accent)


def hex_rgb(colour: str) -> tuple[float, float, float]:
    text = colour.strip().lstrip("#")
    if len(text) == 3:
        text = "".join(c * 2 for c in text)
    return tuple(int(text[i:i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _light(rgb: tuple[float, float, float], hue: float | None, value: tuple[float, float], shift: float = 0.0
           ) -> tuple[float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    if hue is not None:
        h, s = (hue + shift) % 1.0, max(s, 0.55)
    return colorsys.hsv_to_rgb(h, min(1.0, max(s, 0.35)), min(max(v, value[0]), value[1]))


def palette_of(base: str, lights: list[str], accent: str, *, hue: float | None = None,
               value: tuple[float, float] = (0.25, 0.6)) -> Palette:
    """A palette from "#rrggbb" colours: the base kept dark whatever the theme (text reads on it), the lights
    turned toward a named ``hue`` (the scene's own colour, in the theme's saturation) and kept to the
    brightness range ``value`` (dark or bright words)."""
    lit = tuple(_light(hex_rgb(c), hue, value, (n - len(lights) / 2) * 0.04) for n, c in enumerate(lights))
    b_h, b_s, b_v = colorsys.rgb_to_hsv(*hex_rgb(base))
    if hue is not None:  # the base leans toward the scene's colour too
        b_h, b_s = hue, max(b_s, 0.35)
    dark = min(b_v, 0.12) * (0.6 if value[1] <= 0.3 else 1.0)
    return Palette(colorsys.hsv_to_rgb(b_h, b_s, dark), lit or ((0.3, 0.5, 0.9),),
                   _light(hex_rgb(accent), hue, (0.45, 0.9)))


class Canvas:
    """The frame's coordinates, shared by every frame of a clip: x in 0..aspect, y in 0..1; and the buffers a
    frame is drawn in, reused from frame to frame (the process maps any block of 128 KB or more afresh, and
    faulting a new 320x180 frame's pages in cost more than drawing it)."""

    def __init__(self, w: int, h: int):
        self.w, self.h = w, h
        self.aspect = w / h
        self.x = (np.arange(w, dtype=np.float32) + 0.5) / h
        self.y = (np.arange(h, dtype=np.float32) + 0.5) / h
        cx, cy = self.aspect / 2, 0.5
        r2 = ((self.x[None, :] - cx) / (self.aspect * 0.75)) ** 2 + ((self.y[:, None] - cy) / 0.75) ** 2
        self.vignette_255 = (np.clip(1.0 - 0.55 * r2, 0.35, 1.0) * 255.0).astype(np.float32)[:, :, None]
        self._frame = np.empty((h, w, 3), dtype=np.float32)
        self._lit = np.empty((h, w * 3), dtype=np.float32)
        self._rgb8 = np.empty((h, w, 3), dtype=np.uint8)

    def start(self, base: np.ndarray) -> np.ndarray:
        """The frame to draw on, filled with ``base`` (valid until the next frame starts)."""
        np.copyto(self._frame, base)
        return self._frame

    def gradient(self, palette: Palette, lift: float = 1.6) -> np.ndarray:
        """The base colour, a little lighter at the top than at the bottom."""
        base = np.array(palette.base, dtype=np.float32)
        ramp = (1.0 + (lift - 1.0) * (1.0 - self.y))[:, None, None]
        return np.broadcast_to(base * ramp, (self.h, self.w, 3)).astype(np.float32)

    def glows(self, frame: np.ndarray, lights: list[tuple[float, float, float, np.ndarray]]) -> None:
        """Add soft round lights (cx, cy, sigma, rgb): gaussians, each separable, so all of them are one matrix
        product of their rows and their columns (~0.3 ms a frame at 320x180; ~1.6 ms a light, one by one)."""
        if not lights:
            return
        cx, cy, sigma = (np.array(v, dtype=np.float32)[:, None] for v in zip(*(light[:3] for light in lights)))
        rgb = np.stack([light[3] for light in lights]).astype(np.float32)
        rows = np.exp(-((self.y[None, :] - cy) ** 2) / (2 * sigma * sigma))  # lights x h
        columns = np.exp(-((self.x[None, :] - cx) ** 2) / (2 * sigma * sigma))[:, :, None] * rgb[:, None, :]
        np.matmul(rows.T, columns.reshape(len(lights), -1), out=self._lit)
        frame += self._lit.reshape(frame.shape)

    def disc(self, frame: np.ndarray, cx: float, cy: float, radius: float, rgb: np.ndarray) -> None:
        """Add a soft-edged disc (bokeh), drawn in its own box only."""
        px, py, pr = cx * self.h, cy * self.h, radius * self.h
        x0, x1 = max(0, int(px - pr - 2)), min(self.w, int(px + pr + 3))
        y0, y1 = max(0, int(py - pr - 2)), min(self.h, int(py + pr + 3))
        if x0 >= x1 or y0 >= y1:
            return
        xs = np.arange(x0, x1, dtype=np.float32) + 0.5 - px
        ys = np.arange(y0, y1, dtype=np.float32) + 0.5 - py
        d = np.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)
        edge = max(1.0, pr * 0.25)
        alpha = np.clip((pr - d) / edge, 0.0, 1.0) * (0.75 + 0.25 * np.clip(d / max(pr, 1e-3), 0, 1))
        frame[y0:y1, x0:x1] += alpha[:, :, None] * rgb

    def finish(self, frame: np.ndarray) -> bytes:
        """Vignetted, as 8-bit RGB (``frame`` is used up: done in place)."""
        frame *= self.vignette_255
        frame += 0.5
        np.clip(frame, 0, 255, out=frame)
        np.copyto(self._rgb8, frame, casting="unsafe")
        return self._rgb8.tobytes()


# --- the kinds --------------------------------------------------------------------------------------------
Draw = Callable[[float], np.ndarray]


def _wander(rng: random.Random, speed: float, span: float) -> Callable[[float], float]:
    """A slow, smooth path over ``span`` (two detuned sines): where a light is at time t."""
    a, b = rng.uniform(0.2, 0.8), rng.uniform(0, TAU)
    p1, p2 = rng.uniform(25, 60) / speed, rng.uniform(40, 90) / speed
    return lambda t: span * (a + 0.28 * math.sin(TAU * t / p1 + b) + 0.12 * math.sin(TAU * t / p2 + 2 * b))


def field(canvas: Canvas, palette: Palette, rng: random.Random, speed: float) -> Draw:
    base = canvas.gradient(palette)
    lights = []
    for n in range(rng.randint(3, 5)):
        rgb = np.array(palette.lights[n % len(palette.lights)], dtype=np.float32) * rng.uniform(0.35, 0.6)
        lights.append((_wander(rng, speed, canvas.aspect), _wander(rng, speed, 1.0), rng.uniform(0.22, 0.45), rgb,
                       rng.uniform(0, TAU), rng.uniform(18, 40) / speed))

    def draw(t: float) -> np.ndarray:
        frame = canvas.start(base)
        canvas.glows(frame, [(x(t), y(t), sigma, rgb * (0.75 + 0.25 * math.sin(TAU * t / period + phase)))
                             for x, y, sigma, rgb, phase, period in lights])
        return frame
    return draw


def bokeh(canvas: Canvas, palette: Palette, rng: random.Random, speed: float) -> Draw:
    glow = field(canvas, palette.dimmed(0.6), rng, speed)
    discs = []
    for _ in range(rng.randint(14, 24)):
        rgb = np.array(rng.choice(palette.lights), dtype=np.float32) * rng.uniform(0.12, 0.3)
        discs.append((rng.uniform(0, canvas.aspect), rng.uniform(0, 1.2), rng.uniform(0.03, 0.09), rgb,
                      rng.uniform(0.008, 0.025) * speed, rng.uniform(-0.01, 0.01) * speed, rng.uniform(0, TAU)))

    def draw(t: float) -> np.ndarray:
        frame = glow(t)
        for x0, y0, r, rgb, rise, sway, phase in discs:
            y = 1.2 - ((1.2 - y0 + rise * t) % 1.4) + 0.1  # rising, wrapping below the frame
            x = (x0 + sway * t + 0.02 * math.sin(t * 0.3 + phase)) % canvas.aspect
            canvas.disc(frame, x, y, r, rgb * (0.8 + 0.2 * math.sin(t * 0.5 + phase)))
        return frame
    return draw


def stars(canvas: Canvas, palette: Palette, rng: random.Random, speed: float) -> Draw:
    nebula = field(canvas, palette.dimmed(0.45, base=0.6), rng, speed * 0.5)
    count = int(canvas.w * canvas.h / 180)
    nprng = np.random.default_rng(rng.randrange(2**32))
    x = nprng.uniform(0, canvas.w, count).astype(np.float32)
    y = nprng.uniform(0, canvas.h, count).astype(np.float32)
    depth = nprng.uniform(0.2, 1.0, count).astype(np.float32) ** 2  # near stars: brighter, faster
    twinkle = nprng.uniform(0, TAU, count).astype(np.float32)
    rate = nprng.uniform(0.4, 1.2, count).astype(np.float32)
    tint = np.array([1.0, 1.0, 1.0], dtype=np.float32) * 0.75 + 0.25 * np.array(palette.lights[0], np.float32)
    drift = rng.uniform(0.6, 1.4) * speed * (1 if rng.random() < 0.5 else -1)

    def draw(t: float) -> np.ndarray:
        frame = nebula(t)
        px = (x + drift * depth * t * 2.0) % canvas.w
        level = depth * (0.65 + 0.35 * np.sin(twinkle + rate * t))
        ix, fx = np.floor(px).astype(np.int64), px - np.floor(px)
        iy = y.astype(np.int64)
        row = iy * canvas.w  # each star split between two pixels: smooth motion
        lit, which = np.unique(np.concatenate([row + ix % canvas.w, row + (ix + 1) % canvas.w]), return_inverse=True)
        light = np.bincount(which, np.concatenate([level * (1 - fx), level * fx]))
        frame.reshape(-1, 3)[lit] += np.minimum(light, 1.0).astype(np.float32)[:, None] * tint
        return frame
    return draw


def rain(canvas: Canvas, palette: Palette, rng: random.Random, speed: float) -> Draw:
    glow = field(canvas, palette.dimmed(0.5), rng, speed * 0.5)
    nprng = np.random.default_rng(rng.randrange(2**32))
    columns = slice(1, canvas.w, 3)  # a streak every third column (a slice: the frame's view, added to in place)
    n = len(range(canvas.w)[columns])
    length = nprng.uniform(0.15, 0.45, n).astype(np.float32) * canvas.h
    fall = nprng.uniform(0.05, 0.16, n).astype(np.float32) * canvas.h * speed
    offset = nprng.uniform(0, 2 * canvas.h, n).astype(np.float32)
    level = nprng.uniform(0.1, 0.35, n).astype(np.float32)
    rgb = np.array(palette.accent, dtype=np.float32)
    ys = np.arange(canvas.h, dtype=np.float32)[:, None]
    cycle = canvas.h + length

    def draw(t: float) -> np.ndarray:
        frame = glow(t)
        head = (offset + fall * t) % cycle
        behind = head[None, :] - ys  # how far above the head each row is
        trail = np.where((behind >= 0) & (behind < length[None, :]), (1 - behind / length[None, :]) ** 2, 0.0)
        frame[:, columns] += (trail * level[None, :])[:, :, None] * rgb
        return frame
    return draw


ARTISTS: dict[str, Callable[[Canvas, Palette, random.Random, float], Draw]] = {
    "field": field, "bokeh": bokeh, "stars": stars, "rain": rain}


def frames(kind: str, w: int, h: int, fps: int, duration: float, palette: Palette, seed: int, speed: float = 1.0
           ) -> Iterator[bytes]:
    """``duration`` seconds of ``kind`` at ``w`` x ``h``, ``fps``: raw RGB24 frames."""
    canvas = Canvas(w, h)
    draw = ARTISTS[kind](canvas, palette, random.Random(seed), speed)
    for n in range(max(1, round(duration * fps))):
        yield canvas.finish(draw(n / fps))
