"""Service health of a batch, over all its processes: calls, failures, latency percentiles, breaker states,
system figures, job figures.

Recording needs no server: every process that renders appends one JSON line per sample (a tool run, an API
request, a provider call, a cache lookup) to its own file under ``<run>/tmp/health/`` and keeps a small
``.live.json`` beside it naming the stage nodes it is running (with ffmpeg's progress). The run dir is the
contract, so any backend whose workers see it (loky, threads, Dask) is covered. The parent's ``Monitor``
reads what is new in those files, merges it, writes ``metrics.json`` every ``monitor.interval_s`` (and at the
end) and, with ``monitor.port``, serves it live (renderer/ops/endpoints.py).
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from renderer.ops import logs
from renderer.ops.files import RunLayout

LIVE_WRITE_S = 0.3  # a process rewrites its .live.json at most this often
REFRESH_S = 0.5  # the monitor's snapshot is at most this old when an endpoint answers
PERCENTILES = (50, 95, 99)
SAMPLES, LIVE = ".jsonl", ".live.json"  # a process's files in the run's health folder: <host>-<pid><suffix>


def percentile(values: list[float], q: float, *, ordered: bool = False) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default);
    ``ordered``: ``values`` are sorted already."""
    if not values:
        return 0.0
    ordered = values if ordered else sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_percentiles(values: list[float], *, ordered: bool = False) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of latencies in seconds, to 0.1 ms: what metrics.json and a
    script's record (its services' usage) both report."""
    ordered_values = values if ordered else sorted(values)
    return {f"p{q}": round(percentile(ordered_values, q, ordered=True), 4) for q in PERCENTILES}


# --- recording (in every process that renders) -------------------------------------------------------------
class _Recorder:
    """This process's sample file and live state."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.pid = os.getpid()
        stem = f"{socket.gethostname()}-{self.pid}"
        folder.mkdir(parents=True, exist_ok=True)
        self.samples = open(folder / f"{stem}{SAMPLES}", "a", encoding="utf-8", buffering=1)
        self.live_path = folder / f"{stem}{LIVE}"
        self.lock = threading.Lock()  # the sample file and the live state
        self.file_lock = threading.Lock()  # the live file
        self.live: dict[str, dict[str, Any]] = {}  # script -> {"nodes": {name: fraction}, "done", "total"}
        self.written = 0.0
        self.dirty = False

    def write(self, sample: dict[str, Any]) -> None:
        line = json.dumps(sample, default=str)
        with self.lock:
            self.samples.write(line + "\n")  # line-buffered: the parent sees it at once

    def changed(self, force: bool = False) -> None:
        """The live state changed: write it now, or soon (at most every LIVE_WRITE_S; the flusher catches up).
        Writers take turns, so an older state never replaces a newer one."""
        with self.lock:
            self.dirty = True
            if not force and time.monotonic() - self.written < LIVE_WRITE_S:
                return
        with self.file_lock:
            with self.lock:
                state, self.dirty, self.written = json.dumps({"scripts": self.live}), False, time.monotonic()
            tmp = self.live_path.with_name(f".{self.live_path.name}.tmp")
            try:
                tmp.write_text(state, encoding="utf-8")
                os.replace(tmp, self.live_path)
            except OSError:  # the run's tmp dir is being cleaned away: the batch is over
                pass

    def flush_loop(self) -> None:
        while _recorder is self:
            time.sleep(LIVE_WRITE_S)
            if self.dirty:
                self.changed(force=True)


_recorder: _Recorder | None = None
_recorder_lock = threading.Lock()


def attach(run_dir: Path) -> None:
    """Record this process's samples into ``run_dir`` (call it where a worker sets up; idempotent)."""
    global _recorder
    folder = RunLayout(run_dir).health
    with _recorder_lock:
        if _recorder is not None and _recorder.folder == folder and _recorder.pid == os.getpid() \
                and os.path.exists(_recorder.samples.name):  # (a finished run's tmp/ is gone: start afresh)
            return
        if _recorder is not None and _recorder.pid == os.getpid():
            _recorder.samples.close()
        _recorder = _Recorder(folder)
        threading.Thread(target=_recorder.flush_loop, name="health-live", daemon=True).start()


def detach() -> None:
    """Stop recording (tests; a process that is done with its run)."""
    global _recorder
    with _recorder_lock:
        if _recorder is not None:
            _recorder.samples.close()
        _recorder = None


def record(service: str, seconds: float, ok: bool, *, kind: str, error: str = "", **extra: Any) -> None:
    """One call to ``service`` (kind: tool | api | provider | cache) that took ``seconds``; a no-op unless
    ``attach`` was called in this process."""
    rec = _recorder
    if rec is None or rec.pid != os.getpid():
        return
    ids = logs.ids()
    rec.write({"t": round(time.time(), 3), "service": service, "kind": kind, "s": round(seconds, 4), "ok": ok,
               "error": logs.redact(error)[:500], **{k: ids[k] for k in ("script", "node") if k in ids}, **extra})


@contextmanager
def timed(service: str, kind: str, **extra: Any) -> Iterator[dict[str, Any]]:
    """Record the block as one call: ok unless it raises an Exception (an interruption is no failure of the
    service and is not recorded). The yielded dict adds fields to the sample (e.g. ``hit``)."""
    fields = dict(extra)
    started = time.perf_counter()
    try:
        yield fields
    except Exception as exc:
        record(service, time.perf_counter() - started, False, kind=kind, error=f"{type(exc).__name__}: {exc}",
               **fields)
        raise
    record(service, time.perf_counter() - started, True, kind=kind, **fields)


def provider_call(provider: Any, fn: Callable[[], Any]) -> Any:
    """``fn()``, a call to ``provider``, its log records naming it. An offline provider is timed as a service;
    a cloud provider's requests are timed by its guard instead (renderer/ops/reliability.py), not counted twice."""
    name = getattr(provider, "name", type(provider).__name__)
    with logs.correlate(provider=name):
        if getattr(provider, "service", None):
            return fn()
        with timed(name, "provider"):
            return fn()


@contextmanager
def in_flight(script: str) -> Iterator[None]:
    """While inside, ``script`` is shown as being rendered by this process."""
    rec = _recorder
    if rec is not None:
        with rec.lock:
            rec.live[script] = {"nodes": {}, "done": 0, "total": 0, "since": round(time.time(), 3)}
        rec.changed(force=True)
    try:
        yield
    finally:
        if rec is not None:
            with rec.lock:
                rec.live.pop(script, None)
            rec.changed(force=True)


@contextmanager
def node_running(name: str, total: int) -> Iterator[None]:
    """A stage node of the current script (``logs.ids()``) runs inside; its graph has ``total`` nodes."""
    rec, script = _recorder, logs.ids().get("script")
    entry = rec.live.get(script) if rec is not None and script else None
    if entry is None:
        yield
        return
    with rec.lock:
        entry["nodes"][name], entry["total"] = 0.0, total
    rec.changed()
    try:
        yield
    finally:
        with rec.lock:
            entry["nodes"].pop(name, None)
            entry["done"] += 1
        rec.changed()


def progress(fraction: float) -> None:
    """ffmpeg's progress (0..1) of the current node (``logs.ids()``), for the live view; cheap to call often."""
    rec, where = _recorder, logs.ids()
    entry = rec.live.get(where.get("script", "")) if rec is not None else None
    if entry is None or where.get("node") not in entry["nodes"]:
        return
    with rec.lock:
        if where.get("node") not in entry["nodes"]:  # the node ended meanwhile
            return
        entry["nodes"][where["node"]] = round(fraction, 3)
    rec.changed()
