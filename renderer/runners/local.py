"""Runners on this machine: one script after another in this process, or joblib's process pool (loky).

An interrupted loky pool first gives its workers ``CANCEL_GRACE_S`` to stop their own work (DELETE their
Runway tasks, stop their media tools, record their scripts as cancelled) before joblib kills them; a worker
that dies (killed, out of memory) costs only its own scripts, which are rendered again one per pool. Only
joblib's public interface is used: the workers put themselves on the run's roll (``worker.Roll``), and the
runner stops them before it lets joblib abort the pool."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
from loguru import logger
from omegaconf import DictConfig

from renderer.media import ffmpeg
from renderer.ops import admission, reliability
from renderer.ops.files import RunLayout
from renderer.pipeline.render import new_record
from renderer.runners.base import Records, Runner, Task
from renderer.runners.worker import Roll, init_worker, render_in_worker, render_on_roll

# Each DELETE is bounded by providers.runway.CANCEL_TIMEOUT_S (they run side by side, alongside the tool
# kills), so this is plenty.
CANCEL_GRACE_S = 3.0
STOP_POLL_S = 0.05  # how often a graceful stop looks at the roll

# The joblib backends whose workers stop gracefully, and what Parallel gets for each (joblib >= 1.5 passes an
# initializer on to loky's executor): loky's workers handle the stop signals (worker.init_worker); threads are
# stopped by reliability.cancel().
GRACEFUL: dict[str, dict[str, Any]] = {"loky": {"initializer": init_worker}, "threading": {}}


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


def stop_workers(roll: Roll, grace: float) -> int:
    """Let the workers on ``roll`` stop their own work before their pool is killed: every other worker process
    gets SIGTERM (``worker._stop_worker``: it interrupts its script and starts no other), this process's threads
    are cancelled (``reliability.cancel``), and this waits up to ``grace`` seconds for the scripts they are
    rendering to end; return how many did not. A worker that takes a script meanwhile is stopped too."""
    deadline, signalled, warned = time.monotonic() + grace, {os.getpid()}, False
    with signals_held():
        while True:
            workers = roll.workers()
            if os.getpid() in workers:  # this process renders too (a pool of threads)
                reliability.cancel()
            for pid in workers.keys() - signalled:
                signalled.add(pid)
                with suppress(psutil.Error):  # psutil checks it is still the process on the roll
                    workers[pid].send_signal(signal.SIGTERM)
            scripts = roll.scripts(workers)
            if not scripts or time.monotonic() >= deadline:
                break
            if not warned:
                logger.warning("stopping {} script(s) in flight ({}): {:.0f} s for the workers to cancel their work",
                               len(scripts), ", ".join(slug for _, slug in scripts), grace)
                warned = True
            time.sleep(STOP_POLL_S)
    if scripts:
        logger.warning("{} script(s) still in flight after {:.0f} s: their workers are killed", len(scripts), grace)
    return len(scripts)


class GracefulStop:
    """The graceful stop of one run's workers (``stop_workers``), done once: on SIGINT / SIGTERM while the run
    goes on (``on_signals``), or when the runner is closed early; joblib kills what is left after it."""

    def __init__(self, roll: Roll | None):
        self.roll, self.done = roll, False

    def __call__(self) -> None:
        if self.roll is not None and not self.done:
            self.done = True
            stop_workers(self.roll, CANCEL_GRACE_S)

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        """Meanwhile a signal that interrupts this process (KeyboardInterrupt: SIGINT, and SIGTERM once
        ``interrupt_on_sigterm`` ran) first stops the workers, then interrupts. Main thread only. The
        KeyboardInterrupt may well be raised inside joblib, which aborts the pool at once: hence first."""
        if self.roll is None or threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop_then_interrupt(signum: int, frame: Any) -> None:
            self()
            signal.default_int_handler(signum, frame)

        previous = {sig: signal.signal(sig, stop_then_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
                    if signal.getsignal(sig) is signal.default_int_handler}
        try:
            yield
        finally:
            if threading.current_thread() is threading.main_thread():  # a generator may be closed elsewhere
                for sig, handler in previous.items():
                    signal.signal(sig, handler)


class SequentialRunner(Runner):
    """One script after another, in this process."""

    name = "sequential"

    def jobs(self, cfg: DictConfig, scripts: int) -> int:
        return job_count(cfg, scripts)

    def run(self, plain_cfg: dict, tasks: list[Task], run_dir: Path) -> Records:
        for task in tasks:
            yield render_in_worker(plain_cfg, task.path, task.slug, str(run_dir))


class JoblibRunner(Runner):
    """joblib's ``Parallel`` over the scripts: loky processes or threads (both with a graceful stop), or another
    joblib backend by name."""

    def __init__(self, backend: str = "loky"):
        self.name = backend
        self.n_jobs = 1

    def jobs(self, cfg: DictConfig, scripts: int) -> int:
        self.n_jobs = job_count(cfg, scripts)
        return self.n_jobs

    def run(self, plain_cfg: dict, tasks: list[Task], run_dir: Path) -> Records:
        """Records as scripts finish. A worker that dies (killed, out of memory) takes the batch's pool with it:
        the scripts not finished then are rendered again one per pool, so a crash costs only its own script."""
        from joblib import Parallel, delayed  # here: a render of one script at a time never pays its ~17 MB

        graceful = self.name in GRACEFUL
        render: Callable[..., dict[str, Any]] = render_on_roll if graceful else render_in_worker
        pool = {"backend": self.name, **GRACEFUL.get(self.name, {})}
        stop = GracefulStop(Roll(run_dir) if graceful else None)

        def job(task: Task):
            return delayed(render)(plain_cfg, task.path, task.slug, str(run_dir))

        finished: set[str] = set()
        results = None
        with stop.on_signals():
            try:
                results = Parallel(n_jobs=self.n_jobs, return_as="generator_unordered", **pool)(job(t) for t in tasks)
                for record in results:
                    finished.add(record["slug"])
                    yield record
                return
            except Exception as exc:  # the pool broke, not a script: scripts return their failures as records
                left = [t for t in tasks if t.slug not in finished]
                logger.error("a worker died ({}: {}); rendering the {} unfinished script(s) one at a time",
                             type(exc).__name__, exc, len(left))
                ffmpeg.kill_strays(RunLayout(run_dir).tmp)  # what the dead worker had started
            except BaseException:  # interrupted, or closed while a record was out: the workers stop their work
                stop()
                raise
            finally:  # joblib aborts the pool now (it kills what is left), not when the generator is collected
                if results is not None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # "tasks ... have been cancelled": they were meant to be
                        results.close()
            for task in left:
                try:
                    (record,) = Parallel(n_jobs=2, **pool)([job(task)])  # 2: in a worker, not here
                except Exception as exc:
                    record = new_record(Path(task.path), task.slug, f"the worker rendering it died "
                                                                    f"({type(exc).__name__}: {exc}); resume to retry")
                yield record
