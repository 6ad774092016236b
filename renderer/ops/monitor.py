"""The health monitor (in the batch's parent): merges every process's samples (``renderer.ops.health``) into
per-service figures, system figures and job counts, rewrites metrics.json, and serves the live endpoints."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import psutil
from loguru import logger

from renderer.ops import endpoints, logs, reliability
from renderer.ops.files import free_bytes, write_json_atomic
from renderer.ops.health import (
    LIVE,
    REFRESH_S,
    SAMPLES,
    latency_percentiles,
    percentile,
)


# --- aggregation (in the parent) ---------------------------------------------------------------------------
@dataclass
class ServiceStats:
    kind: str = ""
    calls: int = 0
    successes: int = 0
    failures: int = 0
    rejected: int = 0  # failed fast, never reaching the service (an open breaker): not in the latencies
    retries: int = 0
    latencies: list[float] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # e.g. the cache's hits and misses
    last_error: str = ""
    last_error_at: float | None = None
    last_call_at: float | None = None
    breaker: str = ""  # as the last call saw it

    _summary: dict[str, Any] | None = None  # until the next sample

    def add(self, sample: dict[str, Any]) -> None:
        self._summary = None
        self.kind = self.kind or sample.get("kind", "")
        self.calls += 1
        self.last_call_at = sample.get("t")
        if sample.get("ok"):
            self.successes += 1
        else:
            self.failures += 1
            if not (sample.get("rejected") and self.last_error):  # the service's own error says more
                self.last_error, self.last_error_at = sample.get("error", ""), sample.get("t")
        if sample.get("rejected"):
            self.rejected += 1
        else:
            self.latencies.append(float(sample.get("s", 0.0)))
        self.retries += max(0, int(sample.get("attempts", 1)) - 1)
        if "hit" in sample:
            self.counts["hits" if sample["hit"] else "misses"] += 1
        if sample.get("breaker"):
            self.breaker = sample["breaker"]

    def summary(self) -> dict[str, Any]:
        if self._summary is None:
            self._summary = self._figures()
        return dict(self._summary)

    def _figures(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {"kind": self.kind, "calls": self.calls, "successes": self.successes, "failures": self.failures,
                "failure_rate": round(self.failures / self.calls, 4) if self.calls else 0.0,
                "rejected": self.rejected, "retries": self.retries,
                "latency_s": {**latency_percentiles(lat, ordered=True),
                              "mean": round(sum(lat) / len(lat), 4) if lat else 0.0,
                              "max": round(max(lat), 4) if lat else 0.0, "samples": len(lat)},
                "breaker": self.breaker or None, "last_error": self.last_error or None,
                "last_error_at": _iso(self.last_error_at), "last_call_at": _iso(self.last_call_at),
                **dict(self.counts)}


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


class Aggregator:
    """Everything the processes of a run recorded under ``folder``, read incrementally (whole lines only)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.offsets: dict[str, int] = {}
        self.services: dict[str, ServiceStats] = defaultdict(ServiceStats)
        self.live: dict[str, dict[str, Any]] = {}  # script -> what its process says it is running

    def update(self) -> None:
        if not self.folder.is_dir():
            return
        live: dict[str, dict[str, Any]] = {}
        for path in sorted(self.folder.iterdir()):
            if path.name.endswith(SAMPLES):
                self._read_samples(path)
            elif path.name.endswith(LIVE):
                try:
                    live.update(json.loads(path.read_text(encoding="utf-8")).get("scripts", {}))
                except (OSError, ValueError):
                    continue
        self.live = live

    def _read_samples(self, path: Path) -> None:
        offset = self.offsets.get(path.name, 0)
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next update
        self.offsets[path.name] = offset + end
        for line in chunk[:end].splitlines():
            try:
                sample = json.loads(line)
            except ValueError:
                continue
            self.services[sample["service"]].add(sample)


# --- system figures ----------------------------------------------------------------------------------------
def system(paths: dict[str, Path], *, max_memory_percent: float, min_free_disk_gb: float) -> dict[str, Any]:
    """CPU, memory, free disk of ``paths``; ``problems`` says what is past its limit."""
    mem = psutil.virtual_memory()
    disks = {name: {"path": str(path), "free_bytes": free_bytes(path)} for name, path in paths.items()}
    problems = []
    if mem.percent > max_memory_percent:
        problems.append(f"memory {mem.percent:.0f}% in use (monitor.max_memory_percent={max_memory_percent})")
    for name, disk in disks.items():
        if disk["free_bytes"] < min_free_disk_gb * 1024**3:
            problems.append(f"{name} disk: {disk['free_bytes'] / 1024**3:.2f} GB free at {disk['path']} "
                            f"(monitor.min_free_disk_gb={min_free_disk_gb})")
    return {"cpu_percent": psutil.cpu_percent(interval=None), "cpu_count": psutil.cpu_count(),
            "load_avg": [round(x, 2) for x in os.getloadavg()],
            "memory": {"percent": mem.percent, "used_bytes": mem.used, "available_bytes": mem.available,
                       "total_bytes": mem.total},
            "disks": disks, "problems": problems}


# --- the monitor (in the parent) ---------------------------------------------------------------------------
class Jobs:
    """Script and stage figures of the batch: statuses from its manifest (kept by the batch), stage figures
    from the records the workers return."""

    def __init__(self, manifest: dict[str, Any]):
        self.manifest = manifest
        self.stage_seconds: dict[str, list[float]] = defaultdict(list)
        self.stage_status: dict[str, Counter] = defaultdict(Counter)
        self.script_seconds: list[float] = []

    def done(self, record: dict[str, Any]) -> None:
        self.script_seconds.append(float(record.get("seconds") or 0.0))
        for node in record.get("stages", []):
            self.stage_status[node["stage"]][node["status"]] += 1
            if node["status"] != "cached":
                self.stage_seconds[node["stage"]].append(float(node.get("seconds") or 0.0))

    def summary(self, live: dict[str, dict[str, Any]]) -> dict[str, Any]:
        scripts = dict(self.manifest.get("scripts", {}))  # a copy: the batch updates it meanwhile
        counts = Counter(entry.get("status", "pending") for entry in scripts.values())
        in_flight = {slug: state for slug, state in live.items()
                     if scripts.get(slug, {}).get("status") == "pending"}
        stages = {}
        for stage in sorted(set(self.stage_status) | set(self.stage_seconds)):
            secs = self.stage_seconds.get(stage, [])
            stages[stage] = {"nodes": sum(self.stage_status[stage].values()), **dict(self.stage_status[stage]),
                             "seconds_total": round(sum(secs), 3), "p50_s": round(percentile(secs, 50), 3),
                             "p95_s": round(percentile(secs, 95), 3), "max_s": round(max(secs, default=0.0), 3)}
        return {"scripts": len(scripts), "done": counts["ok"], "failed": counts["failed"],
                "cancelled": counts["cancelled"], "pending": counts["pending"],
                "fell_back": sum(1 for e in scripts.values() if e.get("status") != "pending" and e.get("fallbacks")),
                "script_seconds": {"p50": round(percentile(self.script_seconds, 50), 3),
                                   "p95": round(percentile(self.script_seconds, 95), 3),
                                   "max": round(max(self.script_seconds, default=0.0), 3)},
                "stages": stages, "in_flight": in_flight}


class Monitor:
    """The batch's health, refreshed from the run dir: ``snapshot()`` for the endpoints, ``metrics.json`` every
    ``monitor.interval_s`` and at ``close()``. With ``monitor.port`` it serves the endpoints; a port in use
    raises ``MonitorError`` here, before any rendering starts."""

    TICK_S = 0.5

    def __init__(self, cfg: Any, layout: Any, manifest: dict[str, Any]):
        self.settings = cfg.monitor
        self.layout = layout
        self.path = layout.metrics
        self.run_id = logs.run_id(layout.run_dir)
        self.disks = {"run": layout.run_dir, **({"cache": Path(cfg.cache.dir)} if cfg.cache.enabled else {})}
        self.shared: Any = None  # the run's breakers, as the runner keeps them: see watch()
        self._breakers = lambda: (reliability.breaker_states(self.shared, list(cfg.breaker), cfg.breaker)
                                  if self.shared is not None else {})
        self.breakers: dict[str, dict[str, Any]] = {}
        self.aggregator = Aggregator(layout.health)
        self.jobs = Jobs(manifest)
        self.started = time.time()
        self.on_tick: Callable[[dict[str, Any]], None] | None = None  # e.g. the progress bar
        self._lock = threading.RLock()
        self._snapshot: dict[str, Any] = {}
        self._refreshed = 0.0
        self._stop = threading.Event()
        psutil.cpu_percent(interval=None)  # the first reading starts the measurement
        self.server = None
        if self.settings.port:
            self.server = endpoints.serve(self, self.settings.host, self.settings.port,
                                          list(self.settings.allowed_hosts))
            logger.info("health endpoints on {}: /health/services /health/system /health/metrics "
                        "/health/stats /metrics", self.server.url)
        self._thread = threading.Thread(target=self._loop, name="health-monitor", daemon=True)
        self._thread.start()

    def watch(self, shared: Any) -> None:
        """Read the run's breakers from ``shared`` (the runner's view of them: on Dask, through its client);
        None: no more (the last state seen stays)."""
        with self._lock:
            self.shared = shared

    def script_done(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.jobs.done(record)
            self._refreshed = 0.0

    def snapshot(self, max_age: float = REFRESH_S) -> dict[str, Any]:
        with self._lock:
            if time.monotonic() - self._refreshed > max_age:
                self._refresh()
            return self._snapshot

    def _refresh(self) -> None:
        self.aggregator.update()
        self.breakers.update(self._breakers())  # the last state seen stays once tmp/ is cleaned away
        services = {name: stats.summary() for name, stats in sorted(self.aggregator.services.items())}
        problems = []
        for service, breaker in sorted(self.breakers.items()):
            entry = services.setdefault(service, ServiceStats(kind="api").summary())
            entry["breaker"] = breaker["state"]
            entry["breaker_failures"] = breaker["failures"]
            if breaker["state"] == "open":
                problems.append(f"{service}: circuit breaker open until {breaker['retry_at']}")
        sys_figures = system(self.disks, max_memory_percent=self.settings.max_memory_percent,
                             min_free_disk_gb=self.settings.min_free_disk_gb)
        problems += sys_figures["problems"]
        half_open = any(b["state"] == "half-open" for b in self.breakers.values())
        self._snapshot = {
            "run": self.run_id, "updated": _iso(time.time()), "started": _iso(self.started),
            "uptime_s": round(time.time() - self.started, 1), "final": False,
            "status": "unhealthy" if problems else ("degraded" if half_open else "ok"), "problems": problems,
            "services": services, "system": sys_figures, "jobs": self.jobs.summary(self.aggregator.live)}
        self._refreshed = time.monotonic()

    def _loop(self) -> None:
        last_write = time.monotonic()
        while not self._stop.wait(self.TICK_S):
            try:
                snap = self.snapshot()
                if self.on_tick is not None:
                    self.on_tick(snap)
                if time.monotonic() - last_write >= self.settings.interval_s:
                    self.write()
                    last_write = time.monotonic()
            except Exception as exc:  # the monitor never takes the batch down
                logger.warning("health monitor: {}: {}", type(exc).__name__, exc)

    def write(self, final: bool = False) -> Path:
        with self._lock:
            self._refresh()
            self._snapshot["final"] = final
            write_json_atomic(self.path, self._snapshot)
        return self.path

    def close(self) -> Path:
        """Stop refreshing and serving; write the final metrics.json (before tmp/ is cleaned away). Never
        raises: the batch's own cleanup comes after it. Closing again does nothing."""
        if self._stop.is_set():
            return self.path
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            if self.server is not None:
                self.server.close()
            self.write(final=True)
        except Exception as exc:
            logger.warning("health monitor: the final {} could not be written: {}: {}", self.path.name,
                           type(exc).__name__, exc)
        return self.path
