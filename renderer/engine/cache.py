"""Content-addressed cache of stage outputs, shared by all runs (``outputs/.cache`` by default).

An entry is a directory ``<root>/<stage>/<key[:2]>/<key>/`` holding the stage's files and ``entry.json``
(the output object, pickled, plus each file's size and sha256). Entries are built in ``<root>/tmp/`` and
renamed into place, so a reader never sees half an entry; a damaged entry (missing file, wrong size or hash,
unreadable record) is a miss and is replaced. Runs hold a shared lock on the cache; ``prune`` takes it
exclusively, so it never removes what a running batch may read.

    python -m renderer.cache stats [--dir outputs/.cache]
    python -m renderer.cache prune --max-size 5G [--dir outputs/.cache]
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import pickle
import shutil
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import psutil

from renderer.engine.output import files_in, relocated
from renderer.ops.files import fsync_dir

ENTRY_FILE = "entry.json"
LOCK_FILE = ".lock"
CHUNK = 1 << 20


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
        """The cached output for ``key``, or None (a damaged entry is removed and counts as a miss)."""
        entry = self.entry_dir(stage, key)
        record_path = entry / ENTRY_FILE
        if not record_path.exists():
            self.misses += 1
            return None
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            for name, meta in record["files"].items():
                path = entry / name
                if path.stat().st_size != meta["size"] or _sha256(path) != meta["sha256"]:
                    raise ValueError(f"{path} does not match its checksum")
            value = pickle.loads(base64.b64decode(record["output"]))
        except Exception:
            shutil.rmtree(entry, ignore_errors=True)
            self.misses += 1
            return None
        os.utime(record_path)  # least-recently-used bookkeeping for prune
        self.hits += 1
        return relocated(value, {Path(name): entry / name for name in record["files"]})

    # --- writing ---------------------------------------------------------------------------------------
    def put(self, stage: str, key: str, value: Any) -> Any:
        """Move the output's files (every Path in it: ``StageOutput.files()``) into a new entry; return the
        output pointing at the cached files.

        If the entry cannot be written (disk full, quota, read-only), the files are moved back where they
        were and the OSError is raised: the caller still holds a usable output, only uncached."""
        final = self.entry_dir(stage, key)
        staging = self.root / "tmp" / f"{os.getpid()}-{uuid.uuid4().hex}"
        moved: list[tuple[Path, Path]] = []  # (where it was, where it is now)
        try:
            staging.mkdir(parents=True)
            files: dict[str, dict[str, Any]] = {}
            names: dict[Path, Path] = {}
            for n, path in enumerate(files_in(value)):
                name = f"{n}{path.suffix}"
                target = staging / name
                shutil.move(path, target)  # across file systems: copied, and the source removed only then
                moved.append((path, target))
                with open(target, "rb") as fh:
                    os.fsync(fh.fileno())
                files[name] = {"size": target.stat().st_size, "sha256": _sha256(target)}
                names[path] = Path(name)
            stored = relocated(value, names)
            record = {"stage": stage, "key": key, "created": time.time(), "files": files,
                      "output": base64.b64encode(pickle.dumps(stored)).decode()}
            (staging / ENTRY_FILE).write_text(json.dumps(record), encoding="utf-8")
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
        return relocated(stored, {Path(name): final / name for name in files})

    # --- management ------------------------------------------------------------------------------------
    @contextmanager
    def in_use(self) -> Iterator[None]:
        """Held by every run: prune waits for (or refuses while) any run holds it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.clean_staging()
        with open(self.root / LOCK_FILE, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def clean_staging(self) -> None:
        """Remove half-built entries of processes that are gone (a killed worker leaves them)."""
        staging = self.root / "tmp"
        if not staging.exists():
            return
        for entry in staging.iterdir():
            pid = entry.name.split("-", 1)[0]
            if not pid.isdigit() or not psutil.pid_exists(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)

    def entries(self) -> list[tuple[Path, int, float]]:
        """(entry dir, bytes, last used) for every complete entry."""
        out = []
        for record in self.root.glob(f"*/*/*/{ENTRY_FILE}"):
            entry = record.parent
            size = sum(p.stat().st_size for p in entry.iterdir() if p.is_file())
            out.append((entry, size, record.stat().st_mtime))
        return out

    def stats(self) -> dict[str, Any]:
        entries = self.entries()
        return {"dir": str(self.root), "entries": len(entries), "bytes": sum(size for _, size, _ in entries),
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
