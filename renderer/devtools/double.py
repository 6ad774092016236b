"""What the local API doubles share: a threaded HTTP server on 127.0.0.1, its life cycle, and the faults a test
scripts for an endpoint or a fault rate draws at random."""

from __future__ import annotations

import math
import random
import shutil
import sys
import tempfile
import threading
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (its timeout) is expected here; anything else is printed."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_version = "renderer-fakes/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks read stats instead
        pass

    def do_GET(self) -> None:
        self.server.api.handle(self, "GET")  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.server.api.handle(self, "POST")  # type: ignore[attr-defined]

    def do_DELETE(self) -> None:
        self.server.api.handle(self, "DELETE")  # type: ignore[attr-defined]


class LocalDouble:
    """A double of a cloud API on its own server; start/stop it, or use it as a context manager. A subclass
    names its ``endpoints`` and answers each request in ``handle(req, method)``."""

    name = "fake-api"  # the server thread's name and the prefix of its temp dir
    endpoints: tuple[str, ...] = ()

    def __init__(self, *, port: int, fault_rate: float, faults: Sequence[str], seed: int | None):
        self.port = port
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.counts: Counter[str] = Counter()
        self._scripts: dict[str, deque[str]] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._dir: Path | None = None

    # --- life cycle ------------------------------------------------------------------------------------
    def start(self) -> Any:
        self._dir = Path(tempfile.mkdtemp(prefix=f"renderer-{self.name}-"))
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.api = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers that hang or add latency
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    # --- faults ----------------------------------------------------------------------------------------
    def script(self, endpoint: str, *faults: str) -> None:
        """Answer the next requests to ``endpoint`` with these faults, in order ("ok" = a normal answer)."""
        if endpoint not in self.endpoints:
            raise ValueError(f"unknown endpoint {endpoint!r}: one of {self.endpoints}")
        with self._lock:
            self._scripts.setdefault(endpoint, deque()).extend(faults)

    def fault_kinds(self, endpoint: str) -> Sequence[str]:
        """The faults a fault rate may draw for ``endpoint``."""
        return self.faults

    def _next_fault(self, endpoint: str) -> str | None:
        """The fault to answer this request with: the next scripted one, else one drawn at the fault rate."""
        with self._lock:
            queue = self._scripts.get(endpoint)
            if queue:
                fault = queue.popleft()
                return None if fault == "ok" else fault
            kinds = self.fault_kinds(endpoint)
            if kinds and self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                return self._rng.choice(kinds)
        return None


def send(req: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str,
         headers: dict[str, str] | None = None, *, truncate: bool = False, chunks: int = 1, pause: float = 0.0,
         stop: threading.Event | None = None) -> None:
    """An answer, and the connection closed after it (a truncated or slow body never leaves one half read for
    the next request); ``truncate`` announces the whole length, sends half and hangs up; ``chunks`` with
    ``pause`` between them (until ``stop``) makes a slow body."""
    req.send_response(status)
    req.send_header("Content-Type", content_type)
    req.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        req.send_header(name, value)
    req.end_headers()
    if truncate:
        req.wfile.write(data[: len(data) // 2])
    else:
        step = max(1, math.ceil(len(data) / max(1, chunks)))
        for start in range(0, len(data), step):
            req.wfile.write(data[start:start + step])
            req.wfile.flush()
            if pause and stop is not None and stop.wait(pause):
                break
    req.wfile.flush()
    req.close_connection = True
