"""A run's shared breakers and API slots on a Dask cluster (``reliability.RunState``), for tasks on its
workers: a breaker's state is a ``distributed.Variable`` changed under a ``distributed.Lock``, a service's API
slots a ``distributed.Semaphore`` (a worker that dies loses its leases once they time out). Names derive from
the run dir, so every worker of one run finds the same objects on the scheduler, whatever machine it is on."""

from __future__ import annotations

import hashlib
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pybreaker

from renderer.ops import reliability
from renderer.ops.reliability import (
    BreakerStorage,
    Cancelled,
    RunState,
    SharedRecord,
    _fresh_state,
)

SLOT_POLL_S = 0.5  # a caller waiting for an API slot looks at cancel() this often


def namespace(run_dir: Path | str) -> str:
    return "renderer-" + hashlib.sha256(str(Path(run_dir).absolute()).encode()).hexdigest()[:16]


def _client() -> Any:
    from distributed import get_client

    return get_client()  # in a task: its worker's client; in the batch's process: its own


class ClusterBreakerStorage(BreakerStorage):
    """The breaker's dict in a Variable; a change is read-modify-write under the breaker's Lock (a local
    lock first, so this process's threads queue here rather than at the scheduler). Reads take no lock: a
    Variable's value is replaced whole."""

    def __init__(self, name: str, state: str = pybreaker.STATE_CLOSED):
        from distributed import Lock, Variable

        super().__init__("dask")
        client = _client()
        self.variable = name
        self._var = Variable(name, client=client)
        self._lock = Lock(f"{name}-lock")
        self._local = threading.Lock()
        self._initial = state

    def _read(self) -> dict[str, Any]:
        try:
            return _fresh_state() | self._var.get(timeout=0)
        except TimeoutError:  # never set: a closed breaker
            return _fresh_state(self._initial)

    @contextmanager
    def _transaction(self, exclusive: bool = True) -> Iterator[dict[str, Any]]:
        if not exclusive:
            yield self._read()
            return
        with self._local, self._lock:
            data = self._read()
            before = dict(data)
            yield data
            if data != before:
                self._var.set(data)



class ClusterRecord(SharedRecord):
    """A run's shared dict (a rate budget) in a Variable, changed under a Lock, for every worker of the cluster."""

    def __init__(self, name: str):
        from distributed import Lock, Variable

        self._var = Variable(name, client=_client())
        self._lock = Lock(f"{name}-lock")
        self._local = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        with self._local, self._lock:
            try:
                data = dict(self._var.get(timeout=0))
            except TimeoutError:  # never set: empty
                data = {}
            before = dict(data)
            yield data
            if data != before:
                self._var.set(data)


class ClusterSemaphore:
    """``limit`` API slots for the whole run, over every worker of the cluster; ``cancel()`` ends a wait."""

    def __init__(self, name: str, limit: int):
        from distributed import Semaphore

        self._semaphore = Semaphore(max_leases=max(1, limit), name=name)

    def acquire(self, timeout: float | None = None) -> bool:
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = SLOT_POLL_S if until is None else max(0.0, min(SLOT_POLL_S, until - time.monotonic()))
            if self._semaphore.acquire(timeout=wait):
                return True
            if reliability.cancelled():
                raise Cancelled("cancelled while waiting for a free connection slot")
            if until is not None and time.monotonic() >= until:
                return False

    def release(self) -> None:
        self._semaphore.release()


class ClusterRunState(RunState):
    """The run's breakers and API slots on the cluster the current task runs on (or ``client``'s)."""

    def __init__(self, run_dir: Path | str, client: Any = None):
        self.prefix = namespace(run_dir)
        self.client = client

    def breaker_storage(self, service: str) -> ClusterBreakerStorage:
        return ClusterBreakerStorage(f"{self.prefix}-breaker-{service}")

    def semaphore(self, service: str, limit: int) -> ClusterSemaphore:
        return ClusterSemaphore(f"{self.prefix}-slots-{service}-{limit}", limit)

    def record(self, name: str) -> ClusterRecord:
        return ClusterRecord(f"{self.prefix}-{name}")

    def breaker_snapshot(self, service: str) -> dict[str, Any] | None:
        """For the batch's monitor, which reads through the runner's client."""
        from distributed import Variable

        try:
            return Variable(f"{self.prefix}-breaker-{service}", client=self.client or _client()).get(timeout=0)
        except (TimeoutError, ValueError, OSError):  # not set (yet, or any more); a cluster going away
            return None


def forget(run_dir: Path | str, services: list[str], client: Any, *, start: bool = False) -> None:
    """A run's breakers on the scheduler closed (``start``: a run, or its resume, starts with closed ones, as
    the local backends do; stored, so no read ever waits on a Variable nobody set) or removed (at its end)."""
    from distributed import Variable

    for service in services:
        variable = Variable(f"{namespace(run_dir)}-breaker-{service}", client=client)
        variable.set(_fresh_state()) if start else variable.delete()
