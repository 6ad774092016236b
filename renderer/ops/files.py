"""Paths, slugs, the run-dir layout and atomic writes."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import stat
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple


def user_cache_dir() -> Path:
    """This user's cache dir for the renderer's machine-wide notes: ``$XDG_CACHE_HOME/renderer``
    (``~/.cache/renderer``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "renderer"


def slugify(name: str) -> str:
    """A file-system-safe, lowercase name: 'The Descent (v2).txt' stem -> 'the-descent-v2'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:80] or "script"


def is_slug(text: object) -> bool:
    """Whether ``text`` is a slug ``unique_slugs`` could have made (``slugify``'s, maybe with a ``-N`` after it): a
    name for a folder in the run dir, never a path out of it."""
    if not isinstance(text, str):
        return False
    base, dash, n = text.rpartition("-")
    return slugify(text) == text or bool(dash and re.fullmatch(r"[0-9]+", n) and slugify(base) == base)


def unique_slugs(paths: list[Path]) -> dict[Path, str]:
    """One slug per input; a clash gets -2, -3 ... in input order."""
    taken: set[str] = set()
    out: dict[Path, str] = {}
    for path in paths:
        base = slug = slugify(path.stem)
        n = 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        taken.add(slug)
        out[path] = slug
    return out


def expand_inputs(patterns: list[str]) -> tuple[list[Path], list[str]]:
    """Files named by ``patterns`` (paths or globs), in order, without repeats; plus patterns matching nothing."""
    files: list[Path] = []
    unmatched: list[str] = []
    for pattern in patterns:
        literal = os.path.expanduser(pattern)
        if Path(literal).is_file():  # a real name that happens to hold glob characters: "LOG [final].txt"
            matches = [literal]
        else:
            matches = [m for m in sorted(glob.glob(literal, recursive=True)) if Path(m).is_file()]
        if not matches:
            unmatched.append(pattern)
        for m in matches:
            path = Path(m).resolve()
            if path not in files:
                files.append(path)
    return files, unmatched


# what an atomic write leaves behind when its process is killed mid-write: ".<name>.<mkstemp's 8 characters>.part"
PART_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.part")


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target`` (``PART_NAME``); on success fsync it and rename it into place, else
    delete it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
        fsync_dir(target.parent)  # the rename itself survives a power cut
    finally:
        tmp_path.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Flush ``path``'s directory entries (a rename into it, a file made or removed) to disk. Best effort: a
    file system that cannot sync a directory (some network ones) loses nothing by it but that guarantee."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def copy_atomic(src: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: Path, data: Any) -> None:
    write_text_atomic(target, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


class RunLayout:
    """Where everything of one run lives: every path in a run dir comes from here.

    ``<run>/manifest.json``, ``metrics.json``, ``report.html``, ``renderer.log`` and ``renderer.jsonl``;
    Hydra's ``.hydra/`` (the config the run started with); per script ``<run>/<slug>/<slug>.mp4`` (``.srt``,
    ``.vtt``, ``.json`` its record, ``.log``; ``.credits.txt`` when it shows others' footage) and ``thumbs/``; work files under ``<run>/tmp/`` (gone when the
    run ends): one dir per script and process, the health samples, the circuit breakers."""

    OUTPUTS = (".mp4", ".srt", ".vtt", ".json", ".log")  # a script's published files, by suffix

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    @property
    def manifest(self) -> Path:
        return self.run_dir / "manifest.json"

    @property
    def metrics(self) -> Path:
        return self.run_dir / "metrics.json"

    @property
    def report(self) -> Path:
        return self.run_dir / "report.html"

    @property
    def log(self) -> Path:
        """The run's log for people; ``log_json`` has the same records as JSON lines."""
        return self.run_dir / "renderer.log"

    @property
    def log_json(self) -> Path:
        return self.run_dir / "renderer.jsonl"

    @property
    def hydra(self) -> Path:
        """Hydra's record of the run: ``config.yaml`` (what ``resume=`` continues with), ``overrides.yaml``."""
        return self.run_dir / ".hydra"

    @property
    def saved_config(self) -> Path:
        return self.hydra / "config.yaml"

    @property
    def overrides(self) -> Path:
        return self.hydra / "overrides.yaml"

    @property
    def lock(self) -> Path:
        """Held by whoever owns the run while it runs; says who that is (renderer/ops/run_lock.py)."""
        return self.run_dir / ".renderer.lock"

    @property
    def tmp(self) -> Path:
        return self.run_dir / "tmp"

    @property
    def health(self) -> Path:
        """Every process's health samples and live state (renderer/ops/health.py)."""
        return self.tmp / "health"

    @property
    def breakers(self) -> Path:
        """The run's circuit breakers and API slots, shared by its workers (renderer/ops/run_state.py)."""
        return self.tmp / ".breakers"

    @property
    def workers(self) -> Path:
        """Who renders the run's scripts (renderer/runners/worker.py: ``Roll``)."""
        return self.tmp / "workers"

    # the names the renderer gives what it puts in tmp/: the folders above, and work dirs <slug>.<pid>
    _WORK_ENTRY = re.compile(r"health|\.breakers|workers|[a-z0-9]+(?:-[a-z0-9]+)*\.[0-9]+")

    def work_entries(self) -> list[Path]:
        """What the renderer put in ``tmp/``, by name: a folder the run was pointed at may hold the user's own
        ``tmp/``, and nothing else in it is the renderer's to remove."""
        try:
            return sorted(p for p in self.tmp.iterdir() if self._WORK_ENTRY.fullmatch(p.name))
        except OSError:
            return []

    def part_files(self) -> list[Path]:
        """Half-written outputs (``atomic_path``'s temp names) a killed process left in the run dir, by name: only
        the renderer's own (``.<name>.<8 random characters>.part``), symlinks not followed."""
        found = []
        for folder, dirs, files in os.walk(self.run_dir):
            dirs[:] = [d for d in dirs if d != ".hydra"]
            found += [Path(folder, f) for f in files if PART_NAME.fullmatch(f)]
        return sorted(found)

    def script_dir(self, slug: str) -> Path:
        return self.run_dir / slug

    def output(self, slug: str, suffix: str) -> Path:
        """``<run>/<slug>/<slug><suffix>``: one of ``OUTPUTS`` (or the credits)."""
        return self.script_dir(slug) / f"{slug}{suffix}"

    def outputs(self, slug: str) -> dict[str, Path]:
        """A script's published files by extension: {"mp4": ..., "srt": ..., ...}."""
        return {suffix.lstrip("."): self.output(slug, suffix) for suffix in self.OUTPUTS}

    def video(self, slug: str) -> Path:
        return self.output(slug, ".mp4")

    def credits(self, slug: str) -> Path:
        """Whose footage the video shows (stock clips), ready for its description: ``<slug>.credits.txt``, written
        only for a video that has any (so not one of ``OUTPUTS``)."""
        return self.output(slug, ".credits.txt")

    def record(self, slug: str) -> Path:
        """The script's record (``<slug>.json``): status, stages, services, issues."""
        return self.output(slug, ".json")

    def thumbnail(self, slug: str, scene: int) -> Path:
        """The report's picture of scene ``scene`` (0-based): ``<run>/<slug>/thumbs/scene-01.jpg``."""
        return self.script_dir(slug) / "thumbs" / f"scene-{scene + 1:02d}.jpg"

    def workdir(self, slug: str) -> Path:
        """This process's work dir for ``slug``: a retry in another worker never shares files with the
        leftovers of one that died."""
        path = self._workdir(slug)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clean_workdir(self, slug: str) -> None:
        shutil.rmtree(self._workdir(slug), ignore_errors=True)

    def _workdir(self, slug: str) -> Path:
        return self.tmp / f"{slug}.{os.getpid()}"


# --------------------------------------------------------------------------- disk use


class TreeStats(NamedTuple):
    bytes: int  # apparent size of the regular files
    files: int  # regular files
    newest_mtime: float | None  # newest mtime of anything in the tree (dirs and links too), None if missing


def tree_stats(path: Path) -> TreeStats:
    """Walk ``path`` without following symlinks: a link counts as neither a file nor its target's bytes.
    Entries that vanish or cannot be read during the walk (a run writing, a permission) are skipped."""
    total = files = 0
    newest: float | None = None
    try:
        st = os.lstat(path)
    except OSError:
        return TreeStats(0, 0, None)
    newest = st.st_mtime
    if not stat.S_ISDIR(st.st_mode):
        is_file = stat.S_ISREG(st.st_mode)
        return TreeStats(st.st_size if is_file else 0, int(is_file), newest)
    stack = [os.fspath(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            newest = max(newest, st.st_mtime)
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
            elif stat.S_ISREG(st.st_mode):
                total += st.st_size
                files += 1
    return TreeStats(total, files, newest)


def free_bytes(path: Path | str) -> int:
    """Free bytes (for this user) of the file system ``path`` is, or would be, on: its nearest existing parent."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return shutil.disk_usage(current).free


def storage(paths: dict[str, Path], walked: dict[str, tuple[int, int]] | None = None) -> dict[str, dict[str, Any]]:
    """Per named directory: its path, total bytes and file count (regular files, symlinks not followed) and
    the free bytes of its file system. A directory that does not exist counts 0 bytes and 0 files.

    It walks every file, so a large stage cache takes a moment: call it once per run, not per update, and give
    a directory walked already as ``walked`` (name: (bytes, files))."""
    out: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        total, files = (walked or {}).get(name) or tree_stats(Path(path))[:2]
        out[name] = {"path": str(path), "bytes": total, "files": files, "free_bytes": free_bytes(path)}
    return out


def human(n: float) -> str:
    """A byte count for people: 1536 -> "1.5 KiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
