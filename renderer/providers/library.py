"""The user's own footage as scene visuals: per scene, the clip or still in ``visual.dir`` whose words best match
the scene's Visual line.

A file's words are those of its name and of the folders it sits in below ``dir`` (``ocean/waves-at-dusk.mp4``:
ocean, waves, dusk), plus the tags a ``clips.yaml`` in its folder gives it::

    waves-at-dusk.mp4: [sea, evening, calm]
    IMG_0042.jpg: {tags: "harbour, boats, night"}

Each Visual word a file shares counts by how rare it is in the library (inverse document frequency), so
"black water" prefers the one clip of black water to the many of water. Ties go to the first path in name
order, so a pick never changes between runs. A still gets a slow Ken Burns zoom and pan (its direction seeded
by the scene); a clip is looped or held on its last frame to last the scene, like Runway's. A scene nothing
matches fails over to the procedural source, with the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from renderer.media import ffmpeg
from renderer.providers.base import LOCAL_TIMEOUT_S, ProviderConfigError, VisualClip
from renderer.providers.fit import FITS, fit_clip, ken_burns
from renderer.providers.prompt import match, rarity, words_of

VIDEO = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
STILL = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
SIDECAR = "clips.yaml"


class LibraryError(ProviderConfigError):
    """``visual.dir`` or a ``clips.yaml`` is unusable; the message names the path and the fix."""


class NoMatch(RuntimeError):
    """No file in the library shares a word with the scene's Visual line."""


@dataclass(frozen=True)
class Item:
    path: Path
    relative: str  # below the library folder, for the record
    words: frozenset[str]
    still: bool
    fingerprint: str  # what the file is, for cache keys: its path, size and modification time


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` would let a few hundred bytes expand to gigabytes ("billion laughs")."""

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, f"an alias (*{self.peek_event().anchor}) at line "
                                              f"{mark.line + 1}: aliases are not allowed, write the tags out", mark)
        return super().compose_node(parent, index)


def _tags(sidecar: Path) -> dict[str, frozenset[str]]:
    """File name -> tag words, from a clips.yaml."""
    try:
        data = yaml.load(sidecar.read_text(encoding="utf-8"), Loader=_NoAliasLoader) or {}  # noqa: S506 - safe
    except (OSError, yaml.YAMLError) as exc:
        raise LibraryError(f"{sidecar}: cannot be read as YAML ({exc}); write it as `file-name.mp4: [tag, tag]`")
    if not isinstance(data, dict):
        raise LibraryError(f"{sidecar}: expected a mapping of file names to tags, e.g. `waves.mp4: [sea, calm]`")
    out = {}
    for name, value in data.items():
        if isinstance(value, dict):
            value = value.get("tags", "")
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value or "")
        out[str(name)] = words_of(text)
    return out


def index(folder: Path) -> list[Item]:
    """Every clip and still below ``folder``, in name order, with its words."""
    if not folder.is_dir():
        raise LibraryError(f"visual.dir={folder}: no such folder; point it at your clips and stills "
                           "(visual=library visual.dir=/path/to/media)")
    tags: dict[Path, dict[str, frozenset[str]]] = {}
    items = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO | STILL and p.is_file()):
        if path.parent not in tags:
            sidecar = path.parent / SIDECAR
            tags[path.parent] = _tags(sidecar) if sidecar.is_file() else {}
        relative = path.relative_to(folder)
        words = words_of(" ".join(relative.with_suffix("").parts)) | tags[path.parent].get(path.name, frozenset())
        stat = path.stat()
        items.append(Item(path, relative.as_posix(), words, path.suffix.lower() in STILL,
                          f"{relative.as_posix()}:{stat.st_size}:{stat.st_mtime_ns}"))
    if not items:
        raise LibraryError(f"visual.dir={folder}: holds no clips ({', '.join(sorted(VIDEO))}) or stills "
                           f"({', '.join(sorted(STILL))})")
    return items


class LibraryVisual:
    """Scene visuals picked from the user's own media (see the module's docstring). Built from
    LibraryVisualConfig (renderer/config.py), where its settings' defaults live."""

    version = "1"
    CPU_BOUND = True  # each clip is fitted (re-encoded) here: the visual stage gives it an encode slot
    # the picked file's fingerprint keys a scene (a moved library renders nothing again); a shot's is its own
    UNKEYED = ("dir", "shot_s")

    def __init__(self, *, name: str, dir: str, fit: str, zoom: float, fps: int, shot_s: float, fallback: bool):
        if not dir:
            raise LibraryError("visual=library needs visual.dir=/path/to/your/clips")
        if fit not in FITS:
            raise LibraryError(f"visual.fit={fit!r}: use loop or extend")
        self.name = name
        self.folder = Path(dir).expanduser().absolute()
        self.fit = fit
        self.zoom = float(zoom)
        self.fps = int(fps)
        self.shot_s = float(shot_s)
        self.fallback = fallback
        self.items  # noqa: B018  (a bad folder is a clear error now, not at the first scene)

    @cached_property
    def items(self) -> list[Item]:
        return index(self.folder)

    @cached_property
    def _idf(self) -> dict[str, float]:
        return rarity(item.words for item in self.items)

    def ranked(self, prompt: str) -> list[Item]:
        """The files that share a word with a Visual line, best match first (ties in name order)."""
        wanted = words_of(prompt)
        scored = [(match(wanted, item.words, self._idf), n, item) for n, item in enumerate(self.items)]
        return [item for score, _, item in sorted(scored, key=lambda s: (-round(s[0], 9), s[1])) if score > 1e-9]

    def pick(self, prompt: str, shot: int = 0) -> Item | None:
        """The file for a Visual line's ``shot`` (its best match; a later shot the next best, in turn), or None
        when no file shares a word with it."""
        ranked = self.ranked(prompt)
        return ranked[shot % len(ranked)] if ranked else None

    def fingerprint(self, prompt: str, shot: int = 0) -> str:
        """What a scene (or shot) with this Visual line would be made of: part of its cache key, so a new,
        renamed or edited file in the library renders the scenes it changes again, and no others."""
        item = self.pick(prompt, shot)
        return item.fingerprint if item else ""

    def render(self, prompt: str, out: Path, *, width: int, height: int, duration: float,
               timeout: float = LOCAL_TIMEOUT_S, shot: int = 0) -> VisualClip:
        """The scene's (or its ``shot``'s) file, fitted to ``duration``. With fewer matching files than shots
        they show in turn: a clip shown again goes on from where it was, a still moves another way."""
        ranked = self.ranked(prompt)
        if not ranked:
            raise NoMatch(f"nothing in {self.folder} matches {prompt!r}: name a file after words of the Visual "
                          f"line, or tag one in a {SIDECAR}")
        item, again = ranked[shot % len(ranked)], shot // len(ranked)
        if item.still:
            ken_burns(item.path, out, f"{prompt}#{again}" if again else prompt, width=width, height=height,
                      duration=duration, zoom=self.zoom, fps=self.fps, timeout=timeout)
        else:
            start = 0.0
            if again:  # where its last showing stopped
                start = again * duration % max(0.1, ffmpeg.probe(item.path, timeout=timeout).duration or 0.1)
            fit_clip(item.path, out, duration, fit=self.fit, timeout=timeout, size=(width, height), start=start)
        return VisualClip(out, duration, provider=f"{self.name}:{item.relative}")
