"""Content-addressed cache of stage outputs, shared by all runs (``outputs/.cache`` by default).

An entry is a directory ``<root>/<stage>/<key[:2]>/<key>/`` holding the stage's files and ``entry.json``: the
output as plain JSON data (renderer/engine/records.py: reading it builds only known stage output types, never
code a record names), the record's ``format``, and each file's size and sha256. An entry of an older format
(a pickle, before format 1) is never loaded: it is a miss, removed and rendered again. Entries are built in
``<root>/tmp/`` (in a folder named after the host and process: ``renderer-<host>-<pid>-<random>``) and renamed
into place, so a reader never sees half an entry; a damaged entry (missing file, wrong size or hash, a record
that does not parse or names a type this renderer does not know) is a miss and is replaced, while an entry this
process merely cannot read (or one of a newer format) is a miss left in place. Runs hold a shared lock on the
cache; ``prune`` takes it exclusively, so it never removes what a running batch may read. Many hosts may share
one cache (a Dask cluster's): none removes another's half-built entries while it writes.

    python -m renderer.cache stats [--dir outputs/.cache]
    python -m renderer.cache prune --max-size 5G [--dir outputs/.cache]
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import psutil
from loguru import logger

from renderer.engine import records
from renderer.engine.output import relocated
from renderer.ops.files import fsync_dir

ENTRY_FILE = "entry.json"
LOCK_FILE = ".lock"
CHUNK = 1 << 20


STALE_STAGING_S = 86400.0  # a half-built entry of another host is removed once untouched this long
# half-built entries: renderer-<host>-<pid>-<random>; the host and pid say whose, the random part makes it unique
STAGING = re.compile(r"renderer-(?P<host>.+)-(?P<pid>[0-9]+)-[0-9a-f]{32}")

_warned: set[str] = set()


class Usage(NamedTuple):
    """What a cache holds: its complete entries and their files' bytes; every regular file in it (half-built
    entries and the lock too) and their bytes."""

    entries: int
    entry_bytes: int
    files: int
    bytes: int


class DamagedEntry(ValueError):
    """An entry whose data is wrong (not one that could not be read)."""


class OutdatedEntry(DamagedEntry):
    """An entry an older renderer wrote (a pickled output): never loaded, rendered again."""


class NewerEntry(ValueError):
    """An entry a newer renderer wrote: left for the renderers that read it."""


def warn_once(root: Path, message: str) -> None:
    """A cache problem that repeats on every lookup is said once per process and cache."""
    if str(root) not in _warned:
        _warned.add(str(root))
        logger.warning("{}", message)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())


def staging_name() -> str:
    """A new staging folder's name: recognisably the cache's own, and whose (host, pid)."""
    return f"renderer-{_host()}-{os.getpid()}-{uuid.uuid4().hex}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()




class Cache:
    def __init__(self, root: Path | str):
        self.root = Path(root).absolute()  # stages run tools in other working directories
        self.hits = 0
        self.misses = 0

    def entry_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / key

    # --- reading ---------------------------------------------------------------------------------------
    def get(self, stage: str, key: str) -> Any | None:
        """The cached output for ``key``, or None. An entry verified damaged (a file missing or not matching its
        size and hash, a record that does not parse) or outdated (an older format) is removed; one this process
        cannot read (permissions, too many open files, an I/O error, a newer format) is left alone for the
        readers that can: all are misses."""
        entry = self.entry_dir(stage, key)
        try:
            found = self._read(entry)
        except OutdatedEntry as exc:
            logger.info("cache: {} (removed; the stage runs again)", exc)
            shutil.rmtree(entry, ignore_errors=True)
            found = None
        except DamagedEntry as exc:
            logger.warning("cache: {} (removed; the stage runs again)", exc)
            shutil.rmtree(entry, ignore_errors=True)
            found = None
        except (OSError, NewerEntry) as exc:
            warn_once(self.root, f"cache entries in {self.root} cannot be read ({exc}): rendering them instead")
            found = None
        if found is None:
            self.misses += 1
            return None
        try:
            os.utime(entry / ENTRY_FILE)  # least-recently-used bookkeeping for prune
        except OSError:  # a cache this user may read but not write: a hit all the same
            pass
        self.hits += 1
        return found

    @staticmethod
    def _read(entry: Path) -> Any | None:
        """The output of a complete entry, its files at their place in it; None if there is none.
        ``DamagedEntry`` (``OutdatedEntry``) when its data is wrong (old), ``NewerEntry`` when it is of a format
        newer than this renderer's, OSError when it cannot be read."""
        try:
            text = (entry / ENTRY_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            record = json.loads(text)
            version = record.get("format")
            if type(version) is int and version > records.FORMAT:
                raise NewerEntry(f"{entry / ENTRY_FILE} is of record format {version}, newer than this renderer's "
                                 f"({records.FORMAT})")
            if version != records.FORMAT:
                raise OutdatedEntry(f"{entry / ENTRY_FILE} is a record of an older renderer")
            files = {str(name): (int(meta["size"]), str(meta["sha256"])) for name, meta in record["files"].items()}
            output = record["output"]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:  # UnicodeDecodeError too
            if isinstance(exc, (DamagedEntry, NewerEntry)):
                raise
            raise DamagedEntry(f"{entry / ENTRY_FILE} is not a cache record ({type(exc).__name__})") from None
        for name, (size, sha256) in files.items():
            path = entry / name
            if Path(name).name != name or name in ("", ".", ".."):
                raise DamagedEntry(f"{entry / ENTRY_FILE} names a file outside its entry: {name!r}")
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                raise DamagedEntry(f"{path} is missing") from None
            if actual != size or _sha256(path) != sha256:
                raise DamagedEntry(f"{path} does not match its size and checksum")

        def path_of(name: str) -> Path:
            if name not in files:
                raise records.NotARecord(f"a file the entry does not list: {name!r}")
            return entry / name

        try:
            return records.load(output, path_of)
        except (records.NotARecord, RecursionError) as exc:
            raise DamagedEntry(f"{entry / ENTRY_FILE}: its output cannot be read ({exc})") from None

    # --- writing ---------------------------------------------------------------------------------------
    def put(self, stage: str, key: str, value: Any) -> Any:
        """Move the output's files (every Path in it: ``StageOutput.files()``) into a new entry; return the
        output pointing at the cached files.

        If the entry cannot be written (disk full, quota, read-only), the files are moved back where they
        were and the OSError is raised: the caller still holds a usable output, only uncached. So it is, with
        ``records.Unrecordable``, for an output no record can hold."""
        final = self.entry_dir(stage, key)
        staging = self.root / "tmp" / staging_name()
        moved: list[tuple[Path, Path]] = []  # (where it was, where it is now)
        names: dict[Path, str] = {}  # each file of the output -> its name in the entry
        try:
            output = records.dump(value, lambda path: names.setdefault(path, f"{len(names)}{path.suffix}"))
            staging.mkdir(parents=True)
            files: dict[str, dict[str, Any]] = {}
            for path, name in names.items():
                target = staging / name
                shutil.move(path, target)  # across file systems: copied, and the source removed only then
                moved.append((path, target))
                with open(target, "rb") as fh:
                    os.fsync(fh.fileno())
                files[name] = {"size": target.stat().st_size, "sha256": _sha256(target)}
            record = {"format": records.FORMAT, "stage": stage, "key": key, "created": time.time(), "files": files,
                      "output": output}
            (staging / ENTRY_FILE).write_text(json.dumps(record, allow_nan=False), encoding="utf-8")
            fsync_dir(staging)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staging, final)
            except OSError:  # another worker stored the same key first: theirs is as good as ours
                if not (final / ENTRY_FILE).exists():
                    raise
            moved.clear()  # the entry owns them now
        finally:
            for origin, now in reversed(moved):
                shutil.move(now, origin)
            shutil.rmtree(staging, ignore_errors=True)
        return relocated(value, {path: final / name for path, name in names.items()})

    # --- management ------------------------------------------------------------------------------------
    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Held by every run: prune waits for (or refuses while) any run holds it. A cache this process cannot
        write or lock (read-only, another user's) costs the caching only: a warning, and the run goes on."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.clean_staging()
            fh = self._open_lock()
        except OSError as exc:
            warn_once(self.root, f"the cache in {self.root} cannot be used ({exc}): rendering without it where "
                                 "it cannot be read or written")
            yield
            return
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH)
            except OSError as exc:  # a file system without locks: prune cannot see this run
                warn_once(self.root, f"the cache in {self.root} cannot be locked ({exc}): a prune meanwhile may "
                                     "remove entries this run reads")
            yield

    def _open_lock(self):
        try:
            return open(self.root / LOCK_FILE, "a")
        except PermissionError:  # another user's lock file: a shared lock needs only reading
            return open(self.root / LOCK_FILE)

    def clean_staging(self) -> None:
        """Remove half-built entries whose writer is gone: those of this host whose process is dead, and those
        of any host untouched for ``STALE_STAGING_S`` (a shared cache: other hosts' pids mean nothing here).
        Nothing not named like the cache's own staging (``staging_name``) is touched."""
        staging = self.root / "tmp"
        if not staging.exists():
            return
        here, now = _host(), time.time()
        for entry in staging.iterdir():
            match = STAGING.fullmatch(entry.name)
            if match is None:
                continue
            try:
                age = now - entry.lstat().st_mtime
            except OSError:
                continue
            dead_here = match["host"] == here and not psutil.pid_exists(int(match["pid"]))
            if dead_here or age > STALE_STAGING_S:
                shutil.rmtree(entry, ignore_errors=True)

    def entries(self) -> list[tuple[Path, int, float]]:
        """(entry dir, bytes, last used) for every complete entry."""
        out = []
        for record in self.root.glob(f"*/*/*/{ENTRY_FILE}"):
            entry = record.parent
            size = sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
            out.append((entry, size, record.stat().st_mtime))
        return out

    def usage(self) -> Usage:
        """What the cache holds, in one walk (a stat per file, none per directory). A run's end reports it, and an
        overnight batch's cache holds tens of thousands of entries: 27,000 took 2.9 s (8 s with nothing in the
        page cache) in the two walks before, ~2.5 stats a file; 0.8-0.95 s in this one."""
        entries = entry_bytes = files = total = 0
        stack = [(os.fspath(self.root), 0)]
        while stack:
            folder, depth = stack.pop()
            try:
                with os.scandir(folder) as it:
                    found = list(it)
            except OSError:  # gone (pruned, or never made), or unreadable
                continue
            here = complete = 0
            for item in found:
                try:
                    if item.is_dir(follow_symlinks=False):
                        stack.append((item.path, depth + 1))
                    elif item.is_file(follow_symlinks=False):
                        here += item.stat(follow_symlinks=False).st_size
                        files += 1
                        complete = complete or item.name == ENTRY_FILE
                except OSError:  # removed while walked
                    continue
            total += here
            if depth == 3 and complete:  # <root>/<stage>/<key[:2]>/<key>/
                entries, entry_bytes = entries + 1, entry_bytes + here
        return Usage(entries, entry_bytes, files, total)

    def stats(self, usage: Usage | None = None) -> dict[str, Any]:
        """The complete entries and their bytes, and this process's hits and misses (``usage``: walked already)."""
        usage = usage or self.usage()
        return {"dir": str(self.root), "entries": usage.entries, "bytes": usage.entry_bytes,
                "hits": self.hits, "misses": self.misses}

    def prune(self, max_bytes: int, *, wait: bool = False) -> dict[str, int]:
        """Delete least-recently-used entries until the cache holds at most ``max_bytes``."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise RuntimeError(f"a run is using the cache in {self.root}; prune when it has finished "
                                   "(or pass --wait)") from None
            entries = sorted(self.entries(), key=lambda e: e[2])
            total = sum(size for _, size, _ in entries)
            removed = freed = 0
            for entry, size, _ in entries:
                if total <= max_bytes:
                    break
                shutil.rmtree(entry, ignore_errors=True)
                total -= size
                freed += size
                removed += 1
            return {"removed": removed, "freed_bytes": freed, "remaining_bytes": total}
