"""Who owns a run dir: an exclusive ``fcntl.flock`` on ``<run>/.renderer.lock``, held for the whole run by a
batch, a ``resume=`` and ``python -m renderer.watch`` (and by ``python -m renderer.clean`` while it removes a
run). The lock file says who holds it (pid, host, start time, what), so a second owner is refused with a
message naming the first. The kernel lets go of the lock when its process ends, however it ends: a run
killed with -9 leaves a lock file that nobody holds, and the next owner simply takes it.

A process takes a dir once; a nested ``hold`` of a dir it already holds (the batch inside the command that
claimed its dir) only counts. flock is advisory and works across hosts on NFS (Linux maps it onto POSIX
locks there)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterator

from renderer.ops.files import RunLayout

PATIENCE_S = 1.0  # a clean probing the lock holds it for a moment: a starter waits this long before giving up
_POLL_S = 0.05


class RunDirInUse(RuntimeError):
    """The run dir is held by another process; the message names it."""


_held: dict[str, tuple[IO[str], int]] = {}  # real path -> (open lock file, nesting count)
_guard = threading.Lock()


def _key(run_dir: Path) -> str:
    return os.path.realpath(run_dir)


def holder(lock_path: Path) -> dict[str, Any]:
    """What the lock file says of its holder ({} if unreadable)."""
    try:
        data = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(info: dict[str, Any]) -> str:
    if not info:
        return "another process (the lock file names none)"
    return (f"{info.get('what', 'a run')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"started {info.get('started', '?')})")


def _try_lock(fh: IO[str], patience: float) -> bool:
    deadline = time.monotonic() + patience
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)


def acquire(run_dir: Path, what: str, *, patience: float = PATIENCE_S, create: bool = True) -> None:
    """Own ``run_dir`` (made if missing, unless not ``create``: FileNotFoundError) until ``release``; raise
    ``RunDirInUse`` naming the holder."""
    key = _key(run_dir)
    with _guard:
        if key in _held:
            fh, count = _held[key]
            _held[key] = (fh, count + 1)
            return
        lock_path = RunLayout(run_dir).lock
        if create:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock_path, "a+", encoding="utf-8")  # "a+": the holder's note stays readable until we own it
        try:
            if not _try_lock(fh, patience):
                raise RunDirInUse(f"{run_dir} is in use by {describe(holder(lock_path))}; wait for it to end, "
                                  "or use another folder")
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 "command": " ".join(sys.argv)[:500]}))
            fh.flush()
        except BaseException:
            fh.close()
            raise
        _held[key] = (fh, 1)


def release(run_dir: Path) -> None:
    key = _key(run_dir)
    with _guard:
        if key not in _held:
            return
        fh, count = _held[key]
        if count > 1:
            _held[key] = (fh, count - 1)
            return
        del _held[key]
        fh.close()  # closing the last descriptor drops the flock


@contextmanager
def hold(run_dir: Path, what: str, *, patience: float = PATIENCE_S, create: bool = True) -> Iterator[None]:
    acquire(run_dir, what, patience=patience, create=create)
    try:
        yield
    finally:
        release(run_dir)


def in_use(run_dir: Path) -> str:
    """'' when nobody holds ``run_dir``'s lock (or it has none), else who does. Probing takes the lock for an
    instant; a starter waits ``PATIENCE_S`` for it, so the probe never turns a run away."""
    lock_path = RunLayout(run_dir).lock
    if _key(run_dir) in _held:
        return describe(holder(lock_path))
    try:
        fh = open(lock_path, encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"its lock file cannot be read ({exc.strerror})"
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return describe(holder(lock_path))
        fcntl.flock(fh, fcntl.LOCK_UN)
    return ""
