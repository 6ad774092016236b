"""Timeline stage: where each scene starts and how many frames it lasts, as pure data.

Scene boundaries sit on the frame nearest each timestamp as written, so every scene starts within half a
frame of its timestamp however long the script is; the video opens on the first scene even when its
timestamp is later than 0:00 (its narration then starts that late). Only the last scene's length depends on
rendering: it lasts at least as long as its narration, plus a short tail. So the one timeline node reads
only the last voice's duration (a ``Part``), and every segment only its own span: a narration edit that
leaves the length alone re-encodes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from renderer.engine.node import Node, NodeInput, Part
from renderer.engine.output import StageOutput

VERSION = "1"
TAIL_S = 0.75  # the last scene outlasts its narration by this much


@dataclass(frozen=True)
class Span:
    """One scene on the video's timeline, in whole frames."""

    first_frame: int
    frames: int
    fps: int

    @property
    def start(self) -> float:
        return self.first_frame / self.fps

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    @property
    def end(self) -> float:
        return (self.first_frame + self.frames) / self.fps


@dataclass(frozen=True)
class Timeline(StageOutput):
    spans: tuple[Span, ...]
    lead: float  # the first scene's narration starts this late: its timestamp, when after 0:00

    @property
    def duration(self) -> float:
        return self.spans[-1].end

    def to_list(self) -> list[dict[str, float]]:
        return [{"start": s.start, "duration": s.duration} for s in self.spans]


@dataclass(frozen=True)
class Chunk:
    """A run of a scene's frames encoded on its own: ``offset`` frames into the scene, ``frames`` long."""

    offset: int
    frames: int
    scene_frames: int
    fps: int

    @property
    def start(self) -> float:  # seconds into the scene
        return self.offset / self.fps

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    @property
    def scene_duration(self) -> float:
        return self.scene_frames / self.fps


def chunk_count(frames: int, fps: int, chunk_s: float) -> int:
    """Chunks a scene of ``frames`` is split into: none longer than ``chunk_s`` (0: the whole scene)."""
    return max(1, min(frames, math.ceil(frames / (chunk_s * fps) - 1e-9))) if chunk_s > 0 else 1


def split(span: Span, count: int) -> tuple[Chunk, ...]:
    """``span`` in ``count`` near-equal chunks (fewer only when it has fewer frames). Boundaries fall on
    frames that start on a whole centisecond where there is room, so a layer's events (timed in
    centiseconds) shift onto a chunk exactly."""
    count = min(count, span.frames)
    quantum = span.fps // math.gcd(span.fps, 100)
    bounds = [0]
    for k in range(1, count):
        exact = k * span.frames / count
        at = round(exact / quantum) * quantum
        if not bounds[-1] < at < span.frames - (count - k - 1):
            at = max(bounds[-1] + 1, round(exact))
        bounds.append(at)
    bounds.append(span.frames)
    return tuple(Chunk(a, b - a, span.frames, span.fps) for a, b in zip(bounds, bounds[1:]))


def plan(scenes: list[tuple[float, float]], fps: int, last_voice_s: float = 0.0) -> Timeline:
    """The timeline of ``scenes`` as (start, duration) in script seconds, the last scene's voice lasting
    ``last_voice_s``."""
    lead = scenes[0][0]
    bounds = [0]
    for start, _ in scenes[1:]:
        bounds.append(max(bounds[-1] + 1, round(start * fps)))
    last_start = bounds[-1] / fps
    scripted_end = scenes[-1][0] + scenes[-1][1]
    voice_end = last_start + (lead if len(scenes) == 1 else 0.0) + last_voice_s + TAIL_S if last_voice_s else 0.0
    end = max(bounds[-1] + 1, math.ceil(max(scripted_end, voice_end) * fps - 1e-6))
    bounds.append(end)
    spans = tuple(Span(a, b - a, fps) for a, b in zip(bounds, bounds[1:]))
    return Timeline(spans, lead)


def _duration(clip) -> float:
    return round(getattr(clip, "duration", 0.0), 6)


def add(comp) -> None:
    scenes = [(s.start, s.duration) for s in comp.script.scenes]
    last = comp.name("voice", len(scenes) - 1)

    def fn(inp: NodeInput) -> Timeline:
        return plan(scenes, inp.cfg["format.fps"], inp.deps["last_voice_s"])

    comp.add(Node(stage="timeline", version=VERSION, fn=fn,
                  reads=("format.fps",), data={"scenes": scenes},
                  deps={"last_voice_s": Part(last, _duration)}))


# --- shots: a long scene cut into several pictures --------------------------------------------------------
MIN_SHOT = 0.5  # of the even length: no shot shorter, so a cut moved to a sentence end keeps shots apart
SNAP = 0.35  # of the even length: how far a cut may move to fall between two sentences


def shot_count(duration: float, shot_s: float) -> int:
    """Shots a scene of ``duration`` (as scripted) is cut into: about ``shot_s`` each (0: one)."""
    return max(1, math.floor(duration / shot_s + 0.5)) if shot_s > 0 else 1


def shot_bounds(frames: int, fps: int, count: int, pauses: tuple[float, ...] = ()) -> tuple[int, ...]:
    """Where the shots of a scene of ``frames`` start, and its end: ``count`` near-equal shots, each cut moved
    to the nearest pause between two sentences of the narration (``pauses``, seconds into the scene) when one is
    near, so a picture changes where the voice takes a breath."""
    count = max(1, min(count, frames))
    even = frames / count
    least = max(1, math.floor(even * MIN_SHOT))
    candidates = sorted({round(p * fps) for p in pauses})
    bounds = [0]
    for k in range(1, count):
        low, high = bounds[-1] + least, frames - (count - k) * least
        ideal = min(max(round(k * even), low), high)
        near = [c for c in candidates if low <= c <= high and abs(c - ideal) <= even * SNAP]
        bounds.append(min(near, key=lambda c: (abs(c - ideal), c)) if near else ideal)
    bounds.append(frames)
    return tuple(bounds)
