"""A layer's still part, drawn once: the events a run shows unchanged on every one of its frames.

libass redraws and ffmpeg's ``ass`` filter re-blends every event on every frame, so a layer's fixed shapes (the
terminal's window: a blurred shadow, a large translucent box, its title bar and buttons) cost most of its time
while showing the same pixels throughout. Those events are rendered here once, by libass itself, into an RGBA
image that ffmpeg's ``overlay`` composites on each frame; the rest (typing, cursor, scrolling) stays on ``ass``.
ASS draws by Layer, then by read order, so compositing the still events first is exact only when they lie below
every other event: the split sees to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from renderer.media import ass, ffmpeg

# override tags that change an event while it is shown (karaoke, transforms, moves, fades; \org with them)
ANIMATED = re.compile(r"\\(?:t\(|move|fad|[kK]|org)")
RENDER_TIMEOUT_S = 60.0  # one frame


@dataclass(frozen=True)
class Split:
    """A run's events: those drawn once (``still``) and those left to the ``ass`` filter (``moving``)."""

    still: list[ass.Event]
    moving: list[ass.Event]


@dataclass(frozen=True)
class Still:
    """The still events as a raw straight-alpha RGBA image of ``width`` × ``height``, placed at ``x``, ``y``."""

    path: Path
    width: int
    height: int
    x: int
    y: int

    def input_args(self) -> list[str]:
        """ffmpeg's input arguments for the image."""
        return ["-f", "rawvideo", "-pix_fmt", "rgba", "-s", f"{self.width}x{self.height}", "-i", str(self.path)]


def _unchanging(event: ass.Event, run_cs: int) -> bool:
    """Whether ``event`` is shown, the same, from the run's start to its end (``run_cs``)."""
    return event.start <= 0 and (event.end is None or event.end >= run_cs) and not ANIMATED.search(event.text)


def split(events: list[ass.Event], run_cs: int) -> Split:
    """The events of a run lasting ``run_cs`` centiseconds (on its clock), split: an unchanging event is still
    when its Layer is below that of every event that changes, so drawing it first changes no pixel."""
    unchanging = [_unchanging(e, run_cs) for e in events]
    lowest_moving = min((e.layer for e, u in zip(events, unchanging) if not u), default=None)
    is_still = [u and (lowest_moving is None or e.layer < lowest_moving) for e, u in zip(events, unchanging)]
    return Split([e for e, s in zip(events, is_still) if s], [e for e, s in zip(events, is_still) if not s])


def _draw(ass_file: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The ASS file's first frame drawn by libass on black and on white, as two RGB arrays (one ffmpeg run: its
    start-up and libass's font set-up cost more than the drawing)."""
    out = ass_file.with_suffix(".rgb")
    draw = f"s={width}x{height}:r=1,format=rgb24,ass=filename={ass_file.name}"
    try:
        ffmpeg.run(["-filter_complex", f"color=c=black:{draw}[black];color=c=white:{draw}[white];[black][white]vstack",
                    "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", out.name], timeout=RENDER_TIMEOUT_S,
                   cwd=ass_file.parent)
        both = np.fromfile(out, dtype=np.uint8).reshape(2, height, width, 3)
    finally:
        out.unlink(missing_ok=True)
    return both[0], both[1]


def unblend(on_black: np.ndarray, on_white: np.ndarray) -> np.ndarray:
    """The straight-alpha RGBA image that, blended over black and over white, gives these two: a pixel of
    colour c and opacity a shows a·c over black and a·c + (1 − a)·255 over white."""
    black, white = on_black.astype(np.float32), on_white.astype(np.float32)
    alpha = np.clip(1.0 - (white - black).mean(axis=2) / 255.0, 0.0, 1.0)
    colour = np.divide(black, alpha[..., None], out=np.zeros_like(black), where=alpha[..., None] > 0)
    return np.clip(np.rint(np.dstack([colour, alpha * 255.0])), 0, 255).astype(np.uint8)


def _bounds(on_black: np.ndarray, on_white: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box (x0, y0, x1, y1) holding every pixel the drawing covers (it changed black or white there), its
    corners on even pixels (or the frame's edge): overlay places a 4:2:0 image on even pixels only, and there its
    chroma samples are the frame's."""
    covered = (on_black != 0) | (on_white != 255)
    height, width, _ = covered.shape
    rows = np.flatnonzero(covered.reshape(height, -1).any(axis=1))
    cols = np.flatnonzero(covered.any(axis=0).any(axis=1))
    if not rows.size:
        return None
    return (int(cols[0]) & ~1, int(rows[0]) & ~1, _even_up(int(cols[-1]) + 1, width),
            _even_up(int(rows[-1]) + 1, height))


def _even_up(n: int, limit: int) -> int:
    return min(n + n % 2, limit)


def render(head: str, events: list[ass.Event], width: int, height: int, stem: Path) -> Still | None:
    """``events`` (with their ASS header ``head``), all shown from a run's start to its end, drawn once on a
    ``width`` × ``height`` frame and cropped to what they cover, into ``stem``.rgba; None when they draw nothing."""
    if not events:
        return None
    first_frame = [replace(e, start=0, end=1) for e in events]  # drawn at 0 s: no clock but the run's start
    black, white = _draw(ass.write(stem.with_name(f"{stem.name}.ass"), head, first_frame), width, height)
    box = _bounds(black, white)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    rgba = unblend(black[y0:y1, x0:x1], white[y0:y1, x0:x1])
    if not rgba[..., 3].any():
        return None
    path = stem.with_name(f"{stem.name}.rgba")
    rgba.tofile(path)
    return Still(path, x1 - x0, y1 - y0, x0, y0)
