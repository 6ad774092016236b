"""Live endpoints of a running batch: ``/health/*`` as JSON, ``/metrics`` in Prometheus' text format.

A stdlib ``ThreadingHTTPServer`` in a daemon thread of the parent serves the health monitor's snapshot
(renderer/ops/health.py); ``/metrics`` is rendered by prometheus_client from the same snapshot, so both views
always agree. ``/health/system`` answers 503 while a circuit breaker is open or memory or disk is past its
limit (``monitor.max_memory_percent``, ``monitor.min_free_disk_gb``), for an orchestrator's probe.

The server runs inside the batch's parent, so it guards itself: a connection that sends nothing for
``IDLE_TIMEOUT_S`` is closed (idle clients never pin its threads), and a request whose ``Host`` is a name not
on the allow-list (localhost, the machine's hostname, the bound address, ``monitor.allowed_hosts``) is refused
with 421, so a web page cannot read the endpoints through DNS rebinding. A bare IP address is always allowed:
rebinding needs a name.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


class MonitorError(RuntimeError):
    """The monitor cannot start (its port is taken): the batch does not start either."""



ROUTES = ("/health", "/health/services", "/health/system", "/health/metrics", "/health/stats", "/metrics")


def _services(snap: dict[str, Any]) -> dict[str, Any]:
    return {"run": snap["run"], "updated": snap["updated"], "services": snap["services"]}


def _system(snap: dict[str, Any]) -> dict[str, Any]:
    breakers = {name: s["breaker"] for name, s in snap["services"].items() if s.get("breaker")}
    return {"run": snap["run"], "updated": snap["updated"], "status": snap["status"], "problems": snap["problems"],
            "breakers": breakers, **{k: v for k, v in snap["system"].items() if k != "problems"}}


def _stats(snap: dict[str, Any]) -> dict[str, Any]:
    return {"run": snap["run"], "updated": snap["updated"], "uptime_s": snap["uptime_s"], **snap["jobs"]}


def _brief(snap: dict[str, Any]) -> dict[str, Any]:
    return {"run": snap["run"], "status": snap["status"], "problems": snap["problems"], "routes": list(ROUTES)}


JSON_ROUTES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "/health": _brief, "/health/services": _services, "/health/system": _system,
    "/health/metrics": lambda snap: snap, "/health/stats": _stats,
}


class _Snapshot:
    """A prometheus_client collector over one monitor snapshot."""

    def __init__(self, snap: dict[str, Any]):
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        snap, labels = self.snap, ["service", "kind"]
        calls = CounterMetricFamily("renderer_service_calls", "Calls to a service", labels=labels)
        failures = CounterMetricFamily("renderer_service_failures", "Failed calls to a service", labels=labels)
        rejected = CounterMetricFamily("renderer_service_rejected", "Calls failed fast by an open breaker",
                                       labels=labels)
        retries = CounterMetricFamily("renderer_service_retries", "Retried attempts", labels=labels)
        ratio = GaugeMetricFamily("renderer_service_failure_ratio", "Failed / all calls", labels=labels)
        latency = GaugeMetricFamily("renderer_service_latency_seconds", "Latency percentiles of a service",
                                    labels=[*labels, "quantile"])
        breaker = GaugeMetricFamily("renderer_breaker_state", "1 for the state a service's breaker is in",
                                    labels=["service", "state"])
        for name, s in snap["services"].items():
            values = [name, s["kind"] or "-"]
            calls.add_metric(values, s["calls"])
            failures.add_metric(values, s["failures"])
            rejected.add_metric(values, s["rejected"])
            retries.add_metric(values, s["retries"])
            ratio.add_metric(values, s["failure_rate"])
            for q in ("50", "95", "99"):
                latency.add_metric([*values, f"0.{q}"], s["latency_s"][f"p{q}"])
            if s.get("breaker"):
                for state in ("closed", "open", "half-open"):
                    breaker.add_metric([name, state], float(s["breaker"] == state))
        yield from (calls, failures, rejected, retries, ratio, latency, breaker)

        system = snap["system"]
        yield GaugeMetricFamily("renderer_cpu_percent", "CPU in use, whole machine", value=system["cpu_percent"])
        yield GaugeMetricFamily("renderer_memory_percent", "Memory in use", value=system["memory"]["percent"])
        yield GaugeMetricFamily("renderer_memory_available_bytes", "Memory available",
                                value=system["memory"]["available_bytes"])
        disk = GaugeMetricFamily("renderer_disk_free_bytes", "Free bytes on a disk the run uses",
                                 labels=["disk", "path"])
        for name, d in system["disks"].items():
            disk.add_metric([name, d["path"]], d["free_bytes"])
        yield disk
        yield GaugeMetricFamily("renderer_healthy", "1 while /health/system answers 200",
                                value=float(not snap["problems"]))

        jobs = snap["jobs"]
        scripts = GaugeMetricFamily("renderer_scripts", "Scripts of the batch by status", labels=["status"])
        for status in ("done", "failed", "cancelled", "pending", "fell_back"):
            scripts.add_metric([status], jobs[status])
        yield scripts
        yield GaugeMetricFamily("renderer_scripts_in_flight", "Scripts being rendered now",
                                value=len(jobs["in_flight"]))
        nodes = CounterMetricFamily("renderer_stage_nodes", "Stage nodes finished, by status",
                                    labels=["stage", "status"])
        seconds = CounterMetricFamily("renderer_stage_seconds", "Seconds spent in a stage's nodes", labels=["stage"])
        for stage, figures in jobs["stages"].items():
            for status in ("ok", "cached", "fallback", "failed", "skipped"):
                if status in figures:
                    nodes.add_metric([stage, status], figures[status])
            seconds.add_metric([stage], figures["seconds_total"])
        yield from (nodes, seconds)


def prometheus_text(snap: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snap))  # type: ignore[arg-type]
    return generate_latest(registry)


IDLE_TIMEOUT_S = 10.0  # a connection silent this long (before or between requests) is closed
LOCAL_NAMES = ("localhost", "localhost.localdomain")


def host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port or brackets, lowercase: '[::1]:9464' -> '::1'."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_names(bound: str, extra: list[str] | tuple[str, ...] = ()) -> set[str]:
    """The host names a request may name: this machine's, the bound address's, and ``extra``."""
    names = {*LOCAL_NAMES, bound, socket.gethostname(), socket.getfqdn(), *extra}
    return {n.strip().lower().rstrip(".") for n in names if n and n.strip()}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = IDLE_TIMEOUT_S  # applied to the connection's socket: an idle client is dropped, its thread freed

    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not worth a log line
        pass

    def host_allowed(self) -> bool:
        header = self.headers.get("Host")
        if header is None:  # HTTP/1.0 probes; a browser always sends one
            return True
        name = host_name(header).rstrip(".")
        return _is_ip(name) or name in self.server.allowed

    def do_GET(self) -> None:
        if not self.host_allowed():
            body = json.dumps({"error": f"Host {self.headers.get('Host')!r} is not this server's; add it to "
                                        "monitor.allowed_hosts to reach the endpoints by that name"}).encode()
            self.close_connection = True
            return self._send(421, body, "application/json")
        path = self.path.split("?", 1)[0].rstrip("/") or "/health"
        try:
            snap = self.server.snapshot()
            if path == "/metrics":
                return self._send(200, prometheus_text(snap), CONTENT_TYPE_LATEST)
            if path not in JSON_ROUTES:
                return self._send(404, json.dumps({"error": f"no such endpoint {path}", "routes": list(ROUTES)}
                                                  ).encode(), "application/json")
            status = 503 if path == "/health/system" and snap["problems"] else 200
            body = json.dumps(JSON_ROUTES[path](snap), indent=2, default=str).encode()
            self._send(status, body, "application/json")
        except Exception as exc:  # a bad moment of the monitor: say so, keep serving
            self._send(500, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], snapshot: Callable[[], dict[str, Any]], allowed: set[str],
                 timeout_s: float):
        self.snapshot = snapshot
        self.allowed = allowed
        handler = type("Handler", (_Handler,), {"timeout": timeout_s})
        super().__init__(address, handler)


class Endpoints:
    """The server, bound at once (a port in use raises ``MonitorError`` with the fix), serving in a thread."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], host: str, port: int, *,
                 allowed_hosts: list[str] | tuple[str, ...] = (), timeout_s: float = IDLE_TIMEOUT_S):
        try:
            self.httpd = _Server((host, port), snapshot, allowed_names(host, allowed_hosts), timeout_s)
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            raise MonitorError(
                f"monitor.port={port}: {host}:{port} is already in use (another run's monitor?); pick a free "
                "port (monitor.port=...) or turn the endpoints off with monitor.port=0" if taken else
                f"monitor.host={host} monitor.port={port}: cannot serve the health endpoints ({exc.strerror}); "
                "check the address, or turn them off with monitor.port=0") from exc
        host, port = self.httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="health-endpoints", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def serve(monitor: Any, host: str, port: int, allowed_hosts: list[str] | tuple[str, ...] = ()) -> Endpoints:
    return Endpoints(monitor.snapshot, host, port, allowed_hosts=allowed_hosts)
