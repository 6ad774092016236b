"""Timeline stage: where each scene starts and how many frames it lasts, as pure data.

Scene boundaries sit on the frame nearest each timestamp as written, so every scene starts within half a
frame of its timestamp however long the script is; the video opens on the first scene even when its
timestamp is later than 0:00 (its narration then starts that late). Only the last scene's length depends on
rendering: it lasts at least as long as its narration, plus a short tail. So the one timeline node reads
only the last voice's duration (a ``Part``), and every segment only its own span: a narration edit that
leaves the length alone re-encodes nothing. With transitions, each cut's window is centred on it and takes
its frames from the two scenes (``cut_window``); a scene's own segments show the rest (``body``).
"""

from __future__ import annotations

import functools
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
    """A run of a scene's frames encoded on its own: ``offset`` frames into the scene, ``frames`` long (the
    outgoing scene's run in a transition goes on past the scene's end)."""

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


# shots one encode reads on average, at most: each is an ffmpeg input, and shots differ in length (MIN_SHOT), so
# a chunk may read twice as many plus the ones it starts and ends in, still under ffmpeg.MAX_INPUTS (48)
SHOTS_PER_CHUNK = 16


# A scene this long or more (twice over) is encoded in two chunks at least, whatever encode.chunk_s: the scene whose
# narration is spoken last is the last to encode (its captions and cuts wait for its words), and two halves side
# by side end it in half the time where one encode alone left the other cores idle (P5: 8 s scenes).
HALF_AT_S = 4.0


def chunk_count(frames: int, fps: int, chunk_s: float, shots: int = 1) -> int:
    """Chunks a scene of ``frames`` is split into: none longer than ``chunk_s`` (0: the whole scene), at least two
    for a scene of ``2 × HALF_AT_S`` or more (unless whole scenes are asked for), and, for a scene of many ``shots``, none reading more than about
    ``SHOTS_PER_CHUNK`` of them. Each scene's count depends on its own length alone, so an edit elsewhere never
    re-cuts it."""
    by_length = math.ceil(frames / (chunk_s * fps) - 1e-9) if chunk_s > 0 else 1
    halves = 2 if chunk_s > 0 and frames >= 2 * HALF_AT_S * fps else 1
    return max(1, min(frames, max(by_length, halves, math.ceil(shots / SHOTS_PER_CHUNK))))


def split(span: Span, count: int, first: int = 0, end: int | None = None) -> tuple[Chunk, ...]:
    """``span``'s frames ``first`` to ``end`` (default: all of them) in ``count`` near-equal chunks (fewer only
    when there are fewer frames). Boundaries fall on frames that start on a whole centisecond where there is
    room, so a layer's events (timed in centiseconds) shift onto a chunk exactly."""
    end = span.frames if end is None else end
    count = min(count, end - first)
    quantum = span.fps // math.gcd(span.fps, 100)
    bounds = [first]
    for k in range(1, count):
        exact = first + k * (end - first) / count
        at = round(exact / quantum) * quantum
        if not bounds[-1] < at < end - (count - k - 1):
            at = max(bounds[-1] + 1, round(exact))
        bounds.append(at)
    bounds.append(end)
    return tuple(Chunk(a, b - a, span.frames, span.fps) for a, b in zip(bounds, bounds[1:]))


# --------------------------------------------------------------------------- transitions at the cuts


def transition_frames(transition_s: float, fps: int) -> int:
    """Frames each cut's transition lasts (0: hard cuts)."""
    return max(0, round(transition_s * fps))


@dataclass(frozen=True)
class Window:
    """A cut's transition: the last ``before`` frames of the scene that ends there (of ``frames``) blended
    with the first ``after`` frames of the next (of ``next_frames``). It is centred on the cut and takes its
    frames from the two scenes, so the timeline is the same with transitions as without."""

    before: int
    after: int
    frames_before: int  # the outgoing scene's frames
    frames_after: int  # the incoming scene's
    fps: int

    @property
    def frames(self) -> int:
        return self.before + self.after

    @property
    def duration(self) -> float:
        return self.frames / self.fps

    @property
    def outgoing(self) -> Chunk:
        """The frames of the scene before the cut the window shows: from ``before`` before its end, for the
        whole window (its picture and layers go on past its end)."""
        return Chunk(self.frames_before - self.before, self.frames, self.frames_before, self.fps)

    @property
    def incoming(self) -> Chunk:
        """The frames of the scene after the cut the window shows: its first ``after`` (at least its first,
        which is held for the ``before`` frames until the cut)."""
        return Chunk(0, max(1, self.after), self.frames_after, self.fps)


def _taken(frames: int, wanted: int) -> int:
    """Frames a cut may take from a scene of ``frames``: what it wants, as long as the scene keeps at least
    one frame of its own between its two cuts. Each side depends on its own scene alone."""
    return max(0, min(wanted, (frames - 1) // 2))


def cut_window(timeline: Timeline, cut: int, frames: int) -> Window:
    """The window of a transition of ``frames`` at ``cut``, the cut between scenes ``cut`` and ``cut + 1``:
    half before the cut, half after (the odd frame after), each half capped by its scene."""
    out, into = timeline.spans[cut], timeline.spans[cut + 1]
    half = frames // 2
    return Window(_taken(out.frames, half), _taken(into.frames, frames - half), out.frames, into.frames, out.fps)


def body(timeline: Timeline, scene: int, transition: int) -> tuple[int, int]:
    """The scene's own frames, ``(first, end)`` on its clock: all of them less those its cuts' transitions
    (of ``transition`` frames) take. Never empty; it depends on the scene's own span alone."""
    frames = timeline.spans[scene].frames
    first = _taken(frames, transition - transition // 2) if scene > 0 else 0
    end = frames - (_taken(frames, transition // 2) if scene + 1 < len(timeline.spans) else 0)
    return first, end


def body_chunks(timeline: Timeline, scene: int, transition: int, count: int) -> tuple[Chunk, ...]:
    """The scene's body in ``count`` chunks, offsets on the scene's clock; a body of fewer frames than
    ``count`` gets empty chunks at its end (to be skipped), so a scene always has its ``count`` nodes. Without
    transitions, the scene's ``split``. Each of a scene's chunk nodes asks for its own: the split is made once
    per span and body (not once per chunk, which would be chunks² for a long scene)."""
    first, end = body(timeline, scene, transition)
    return _padded_split(timeline.spans[scene], count, first, end)


@functools.lru_cache(maxsize=1024)
def _padded_split(span: Span, count: int, first: int, end: int) -> tuple[Chunk, ...]:
    chunks = split(span, count, first, end)
    return chunks + (Chunk(end, 0, span.frames, span.fps),) * (count - len(chunks))


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
