"""Admission control: a job starts only when the machine has room for it (free memory, free disk).

``limits.memory_gb`` is what one script in flight may need. The batch starts at most as many jobs as the free
memory gives that much each, and every job checks again when it starts: a job that finds less free (a sibling
grew, another program took it) waits for memory to come back, up to ``limits.admission_wait_s``, and then starts
anyway with a warning, so an overnight batch neither swaps itself to death nor hangs. A limit no job could ever
meet (more than the machine's memory) is refused before anything starts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psutil

from renderer.ops.files import free_bytes, human

GB = 1024**3
POLL_S = 0.5  # how often a waiting job looks at the free memory again


class NeverFits(RuntimeError):
    """A limit that no job can meet on this machine; the message says which and how to change it."""


class DiskFull(RuntimeError):
    """The run dir's disk is nearly full; the message says how much is free and the fix."""


def check_fits(limits: Any) -> None:
    """Refuse a ``limits.memory_gb`` larger than this machine's memory: no job could ever be admitted."""
    total = psutil.virtual_memory().total
    if limits.memory_gb * GB > total:
        raise NeverFits(f"limits.memory_gb={limits.memory_gb:g} is more than this machine's {total / GB:.1f} GB of "
                        "memory, so no script could ever start: lower it (the default is 2), or set limits.memory_gb=0 "
                        "to turn the check off")


def jobs_by_memory(limits: Any, wanted: int) -> tuple[int, float]:
    """How many of ``wanted`` jobs the free memory admits at once (at least one), and the free GB."""
    free_gb = psutil.virtual_memory().available / GB
    if limits.memory_gb <= 0:
        return wanted, free_gb
    return max(1, min(wanted, int(free_gb // limits.memory_gb))), free_gb


def await_memory(limits: Any, log: Any) -> str:
    """Wait until ``limits.memory_gb`` is free (at most ``limits.admission_wait_s``); return a warning when the
    job starts without it, else "". A stop signal interrupts the wait like any other."""
    check_fits(limits)
    need = limits.memory_gb * GB
    deadline = time.monotonic() + limits.admission_wait_s
    said = False
    while need > 0 and (free := psutil.virtual_memory().available) < need:
        if time.monotonic() >= deadline:
            return (f"started with only {human(free)} of memory free (limits.memory_gb={limits.memory_gb:g}) after "
                    f"waiting {limits.admission_wait_s:g} s: it may swap; run fewer jobs (batch.n_jobs) or free memory")
        if not said:
            log.info("waiting for memory: {} free, limits.memory_gb={} (at most {:g} s)", human(free),
                     limits.memory_gb, limits.admission_wait_s)
            said = True
        time.sleep(POLL_S)
    return ""


def check_disk(limits: Any, run_dir: Path, cache_dir: Path | str | None) -> str:
    """Before a job: a nearly full run dir stops it (``DiskFull``, with the fix); a nearly full cache costs only
    the caching, so it gives a warning (returned; "" when there is room)."""
    need = limits.min_free_gb * GB
    if (free := free_bytes(run_dir)) < need:
        raise DiskFull(f"only {human(free)} free on the disk of {run_dir} (limits.min_free_gb={limits.min_free_gb:g}):"
                       " free some space, or render elsewhere with hydra.run.dir=...")
    if cache_dir is not None and (free := free_bytes(cache_dir)) < need:
        return (f"only {human(free)} free for the cache in {cache_dir}: outputs may not be cached; prune it "
                "(python -m renderer.cache prune --max-size ...) or free space")
    return ""
