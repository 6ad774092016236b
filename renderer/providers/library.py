"""The user's own media as scene visuals: per scene, the clip or still whose name or tags best match its
Visual line.

A file's tags are the words of its name (``ocean-waves.mp4``: ocean, waves) plus any given for it in the
folder's ``clips.yaml`` (``city.jpg: [neon, street, night]`` or ``city.jpg: "neon, street"``). A scene gets
the file sharing the most words with its Visual line (ties broken by the line, so always the same file);
none sharing a word is a failure, so the scene falls back to the procedural source and the record says why.
Clips are looped or held on their last frame to the scene's length (``fit``), stills get a slow Ken Burns
zoom and pan; both are cropped to the frame's shape.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from renderer import ffmpeg
from renderer.providers.base import VisualClip
from renderer.providers.procedural import seed_of

VIDEO = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")
STILL = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SIDECAR = "clips.yaml"
STOPWORDS = frozenset("a an the of in on at to over under into onto from with and or but is are was were be its it "
                      "this that these those as by for very slowly slow".split())


class LibraryError(RuntimeError):
    pass


def words(text: str) -> set[str]:
    """Content words, lower case, a plural's s dropped (waves ~ wave)."""
    out = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in STOPWORDS or len(word) < 2:
            continue
        out.add(word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word)
    return out


@dataclass(frozen=True)
class Entry:
    path: Path
    tags: frozenset[str]

    @property
    def still(self) -> bool:
        return self.path.suffix.lower() in STILL


def index(folder: Path) -> list[Entry]:
    """Every clip and still in ``folder`` with its tags (its name's words and its clips.yaml tags)."""
    extra: dict = {}
    sidecar = folder / SIDECAR
    if sidecar.is_file():
        try:
            extra = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise LibraryError(f"{sidecar}: not valid YAML ({exc}); write `file.mp4: [tag, tag]` lines") from None
        if not isinstance(extra, dict):
            raise LibraryError(f"{sidecar}: expected `file.mp4: [tag, tag]` lines")
    entries = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in VIDEO + STILL or not path.is_file():
            continue
        given = extra.get(path.name, [])
        given = given.split(",") if isinstance(given, str) else [str(t) for t in given or []]
        entries.append(Entry(path, frozenset(words(path.stem) | words(" ".join(given)))))
    return entries


def best(entries: list[Entry], prompt: str) -> tuple[Entry, int] | None:
    """The entry sharing the most words with ``prompt`` (ties broken by the prompt), or None."""
    wanted = words(prompt)
    scored = [(len(e.tags & wanted), e) for e in entries]
    top = max((s for s, _ in scored), default=0)
    if top == 0:
        return None
    tied = [e for s, e in scored if s == top]
    return random.Random(seed_of("library", prompt)).choice(tied), top


class LibraryVisual:
    version = "1"

    def __init__(self, name: str = "library", dir: str = "", fit: str = "loop", fps: int = 25,
                 zoom: float = 1.15):
        if not dir:
            raise LibraryError("visual=library needs visual.dir: the folder of your clips and stills")
        self.folder = Path(dir).expanduser()
        if not self.folder.is_dir():
            raise LibraryError(f"visual.dir={dir}: no such folder")
        if fit not in ("loop", "extend"):
            raise LibraryError(f"visual.fit={fit!r}: use loop (repeat the clip) or extend (hold its last frame)")
        self.name, self.fit, self.fps, self.zoom = name, fit, fps, zoom
        self.entries = index(self.folder)
        if not self.entries:
            raise LibraryError(f"visual.dir={dir}: holds no clips ({', '.join(VIDEO)}) or stills "
                               f"({', '.join(STILL)})")

    def render(self, prompt: str, out: Path, *, width: int, height: int, duration: float,
               timeout: float = 300.0) -> VisualClip:
        found = best(self.entries, prompt)
        if found is None:
            raise LibraryError(f"nothing in {self.folder} matches {prompt!r}: name a file after it or tag one in "
                               f"{SIDECAR}")
        entry, _ = found
        w, h = width // 2 * 2, height // 2 * 2
        if entry.still:
            args = self._ken_burns(entry.path, prompt, w, h, duration)
        else:
            fitted = f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1"
            if self.fit == "loop":
                args = ["-stream_loop", "-1", "-i", str(entry.path), "-vf", fitted]
            else:
                args = ["-i", str(entry.path), "-vf", f"{fitted},tpad=stop_mode=clone:stop_duration={duration:.3f}"]
        ffmpeg.run([*args, "-t", f"{duration:.3f}", "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                    "-pix_fmt", "yuv420p", "-f", "mp4", str(out)], timeout=timeout)
        return VisualClip(out, duration, f"{self.name}:{entry.path.name}")

    def _ken_burns(self, still: Path, prompt: str, w: int, h: int, duration: float) -> list[str]:
        """A slow zoom (in or out) with a drift across the picture, chosen by the prompt."""
        rng = random.Random(seed_of("ken-burns", prompt))
        frames = max(2, round(duration * self.fps))
        z0, z1 = (1.0, self.zoom) if rng.random() < 0.5 else (self.zoom, 1.0)
        x0, x1 = rng.choice([(0.0, 1.0), (1.0, 0.0), (0.5, 0.5)])
        y0, y1 = rng.choice([(0.3, 0.7), (0.7, 0.3), (0.5, 0.5)])
        t = f"(on/{frames - 1})"
        zoom = f"{z0}+({z1 - z0:.4f})*{t}"
        # twice the frame's size first, so the zoom has pixels to spare
        fitted = f"scale={2 * w}:{2 * h}:force_original_aspect_ratio=increase,crop={2 * w}:{2 * h},setsar=1"
        pan = (f"zoompan=z='{zoom}':x='(iw-iw/zoom)*({x0}+({x1 - x0})*{t})':y='(ih-ih/zoom)*({y0}+({y1 - y0})*{t})'"
               f":d=1:s={w}x{h}:fps={self.fps}")
        return ["-loop", "1", "-framerate", str(self.fps), "-i", str(still), "-vf", f"{fitted},{pan}",
                "-frames:v", str(frames)]
