"""Runners on this machine: one script after another in this process, or joblib's process pool (loky).

An interrupted loky pool first gives its workers ``CANCEL_GRACE_S`` to stop their own work (DELETE their
Runway tasks, stop their media tools, record their scripts as cancelled) before joblib kills them; a worker
that dies (killed, out of memory) costs only its own scripts, which are rendered again one per pool."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from concurrent.futures import Future, wait
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterator

from joblib import Parallel, delayed
from joblib._parallel_backends import LokyBackend, ThreadingBackend
from loguru import logger
from omegaconf import DictConfig

from renderer.media import ffmpeg
from renderer.ops import admission, reliability
from renderer.ops.files import RunLayout
from renderer.pipeline.render import new_record
from renderer.runners.base import Records, Runner, Task
from renderer.runners.worker import init_worker, render_in_worker

# Each DELETE is bounded by providers.runway.CANCEL_TIMEOUT_S (they run side by side, alongside the tool
# kills), so this is plenty.
CANCEL_GRACE_S = 3.0


def job_count(cfg: DictConfig, scripts: int) -> int:
    """Scripts rendered at once: as asked, within limits.max_jobs, and only as many as the free memory
    gives limits.memory_gb each (each job checks again when it starts: renderer.ops.admission)."""
    wanted = max(1, min(cfg.batch.n_jobs, cfg.limits.max_jobs, scripts or 1))
    n_jobs, free_gb = admission.jobs_by_memory(cfg.limits, wanted)
    if n_jobs < wanted:
        logger.warning("{:.1f} GB free allows {} job(s) at limits.memory_gb={} each", free_gb, n_jobs,
                       cfg.limits.memory_gb)
    return n_jobs


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM ignored meanwhile (main thread only): a second Ctrl-C does not cut the grace short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def _alive(process: Any) -> bool:
    try:
        return process.exitcode is None
    except ValueError:  # closed: long gone
        return False


def stop_workers(processes: list[Any], futures: list[Future], grace: float) -> int:
    """Let a process pool's workers stop their own work before they are killed: scripts not yet handed to a
    worker never start, every live worker gets SIGTERM (``worker._stop_worker``), and this waits up to
    ``grace`` seconds for the scripts in flight to come back; return how many did not."""
    unfinished = [f for f in futures if not f.done()]
    for future in unfinished:
        future.cancel()  # only succeeds for a script no worker has taken
    in_flight = [f for f in unfinished if not f.done()]
    live = [p for p in processes if _alive(p)]
    if not in_flight or not live:
        return 0
    logger.warning("stopping {} script(s) in flight: {:.0f} s for the workers to cancel their work",
                   len(in_flight), grace)
    with signals_held():
        for process in live:
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        _, left = wait(in_flight, timeout=grace)
    if left:
        logger.warning("{} script(s) still in flight after {:.0f} s: their workers are killed", len(left), grace)
    return len(left)


class _Submitted:
    """The scripts a pool backend has submitted and not seen finish, for its abort to stop (joblib submits from
    two threads). ``finished`` tells a done one: a Future's ``done()``, an AsyncResult's ``ready()``."""

    def __init__(self, finished: Callable[[Any], bool]):
        self._finished = finished
        self._items: list[Any] = []
        self._lock = threading.Lock()

    def add(self, item: Any) -> Any:
        with self._lock:
            self._items = [i for i in self._items if not self._finished(i)] + [item]
        return item

    def take(self) -> list[Any]:
        with self._lock:
            items, self._items = self._items, []
        return items


class GracefulLokyBackend(LokyBackend):
    """joblib's loky backend, but an abort (Ctrl-C or SIGTERM to the parent, a failed pool) first gives the
    workers ``CANCEL_GRACE_S`` to stop their own work (``stop_workers``) before loky kills them with SIGKILL,
    which would leave their Runway tasks running (and billing)."""

    def __init__(self, **backend_kwargs: Any):
        super().__init__(initializer=init_worker, **backend_kwargs)
        self._submitted = _Submitted(lambda future: future.done())

    def submit(self, func, callback=None):  # type: ignore[no-untyped-def]
        return self._submitted.add(super().submit(func, callback=callback))

    def abort_everything(self, ensure_ready: bool = True) -> None:
        try:
            if self._workers is not None:
                processes = list(getattr(self._workers, "_processes", {}).values())  # loky's pid -> process
                stop_workers(processes, self._submitted.take(), CANCEL_GRACE_S)
        finally:
            super().abort_everything(ensure_ready=ensure_ready)


class GracefulThreadingBackend(ThreadingBackend):
    """joblib's threading backend, but an abort first stops the scripts its threads render (threads cannot be
    killed): ``reliability.cancel()`` makes each script's graph stop its own work, as a signal does in a worker
    process (Runway tasks DELETEd, media tools killed), and the abort waits up to ``CANCEL_GRACE_S`` for them."""

    def __init__(self, **backend_kwargs: Any):
        super().__init__(**backend_kwargs)
        self._submitted = _Submitted(lambda result: result.ready())  # the pool's AsyncResults

    def submit(self, func, callback=None):  # type: ignore[no-untyped-def]
        return self._submitted.add(super().submit(func, callback=callback))

    def abort_everything(self, ensure_ready: bool = True) -> None:
        try:
            reliability.cancel()
            deadline = time.monotonic() + CANCEL_GRACE_S
            for result in self._submitted.take():
                result.wait(max(0.0, deadline - time.monotonic()))
        finally:
            super().abort_everything(ensure_ready=ensure_ready)


class SequentialRunner(Runner):
    """One script after another, in this process."""

    name = "sequential"

    def jobs(self, cfg: DictConfig, scripts: int) -> int:
        return job_count(cfg, scripts)

    def run(self, plain_cfg: dict, tasks: list[Task], run_dir: Path) -> Records:
        for task in tasks:
            yield render_in_worker(plain_cfg, task.path, task.slug, str(run_dir))


class JoblibRunner(Runner):
    """joblib's ``Parallel`` over the scripts: loky processes (with a graceful abort) or another joblib
    backend by name (threading)."""

    def __init__(self, backend: str = "loky"):
        self.name = backend
        self.n_jobs = 1

    def jobs(self, cfg: DictConfig, scripts: int) -> int:
        self.n_jobs = job_count(cfg, scripts)
        return self.n_jobs

    def _backend(self) -> Any:
        """loky and threading with a graceful abort; other joblib backends by name."""
        return {"loky": GracefulLokyBackend, "threading": GracefulThreadingBackend}.get(self.name,
                                                                                         lambda: self.name)()

    def run(self, plain_cfg: dict, tasks: list[Task], run_dir: Path) -> Records:
        """Records as scripts finish. A worker that dies (killed, out of memory) takes the batch's pool with it:
        the scripts not finished then are rendered again one per pool, so a crash costs only its own script."""
        def job(task: Task):
            return delayed(render_in_worker)(plain_cfg, task.path, task.slug, str(run_dir))

        finished: set[str] = set()
        results = None
        try:
            results = Parallel(n_jobs=self.n_jobs, backend=self._backend(), return_as="generator_unordered")(
                job(t) for t in tasks)
            for record in results:
                finished.add(record["slug"])
                yield record
            return
        except Exception as exc:  # the pool broke, not a script: scripts return their failures as records
            left = [t for t in tasks if t.slug not in finished]
            logger.error("a worker died ({}: {}); rendering the {} unfinished script(s) one at a time",
                         type(exc).__name__, exc, len(left))
            ffmpeg.kill_strays(RunLayout(run_dir).tmp)  # what the dead worker had started
        finally:  # closed while a record was out (an interruption): joblib aborts the pool now, not when collected
            if results is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "tasks ... have been cancelled": they were meant to be
                    results.close()
        for task in left:
            try:
                (record,) = Parallel(n_jobs=2, backend=self._backend())([job(task)])  # 2: in a worker, not here
            except Exception as exc:
                record = new_record(Path(task.path), task.slug, f"the worker rendering it died "
                                                                f"({type(exc).__name__}: {exc}); resume to retry")
            yield record
