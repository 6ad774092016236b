"""The batch on a Dask cluster: a ``distributed.Client`` at ``batch.dask.address``, or a LocalCluster of
``batch.dask.workers`` processes on this machine when no address is given.

Each script is one task (``render_in_worker`` with plain data, keyed ``render-<slug>-<run token>``: no
setting, let alone a secret, appears in a task name); records stream back as tasks finish. A worker that dies
mid-script is the scheduler's to handle: it runs the task again on another worker (up to
``distributed.scheduler.allowed-failures`` times) and the batch goes on; a task that raised is retried
``batch.dask.retries`` times. Credentials travel in the workers' own environment, never in a task.
The run and cache dirs must be on a filesystem every worker mounts at the same path: ``check_shared`` proves
it before any work starts.
"""

from __future__ import annotations

import logging
import itertools
import os
import random
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from pathlib import Path
from typing import Any

from loguru import logger
from omegaconf import DictConfig

from renderer.ops import reliability
from renderer.pipeline.render import new_record
from renderer.runners.base import Records, Runner, RunnerError, Task
from renderer.runners.local import CANCEL_GRACE_S, signals_held
from renderer.runners.worker import render_in_worker

PROBE_PREFIX = ".renderer-probe-"
STOP_POLL_S = 5.0  # a task's watcher asks the scheduler this often (a long poll) whether the batch stopped
# A worker's statistical profiler calls sys._current_frames() every 10 ms, which before CPython 3.12 can deadlock
# (python/cpython#106883: a threading.local the garbage collector frees inside it waits for a lock the call
# holds). A script's graph makes and drops such objects on many threads, and its worker hung for good, holding
# the batch. The renderer reads no profile: its own workers start without the profiler, and on an older Python
# a task stops it on whatever worker runs it.
NO_PROFILER = {"distributed.worker.profile.enabled": False}
PROFILER_CAN_DEADLOCK = sys.version_info < (3, 12)


def render_on_dask(plain_cfg: dict, path: str, slug: str, run_dir: str, stop: str) -> dict[str, Any]:
    """A script as a Dask task. No signal reaches a task's thread, so a watcher waits on the run's ``stop``
    Event (set by an interrupted batch): it cancels this process's work (``reliability.cancel``), the graph
    stops, its cloud tasks are cancelled and its tools killed, and the record says cancelled. One thread per
    worker (``dask worker --nthreads 1``) keeps one run's cancellation from touching another's script."""
    from distributed import Event

    _stop_profiler()
    event = Event(stop)
    if event.is_set():  # the batch stopped before this task began: it does not start
        return new_record(Path(path), slug, "cancelled (the batch was interrupted)") | {"status": "cancelled"}
    reliability.reset_cancel()  # a task after a cancelled one in this process starts afresh
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            try:
                if event.wait(timeout=STOP_POLL_S):
                    if not finished.is_set():
                        reliability.cancel()
                    return
            except Exception:  # the scheduler is gone: nobody can tell this script to stop any more
                return

    threading.Thread(target=watch, name=f"stop-{slug}", daemon=True).start()
    try:
        if not plain_cfg["batch"]["dask"]["split_scenes"]:
            return render_in_worker(plain_cfg, path, slug, run_dir)
        from distributed import worker_client

        with worker_client() as client:  # seceded: this worker's thread is free for encodes, its own or others'
            return render_in_worker(plain_cfg, path, slug, run_dir, {"encode": ClusterSlot(client)})
    except KeyboardInterrupt:  # the watcher cancelled it (render_script wrote its record as cancelled)
        return new_record(Path(path), slug, "cancelled (the batch was interrupted)") | {"status": "cancelled"}
    finally:
        finished.set()


def _stop_profiler() -> None:
    """Stop this worker's statistical profiler where it can deadlock (``NO_PROFILER``), on its event loop
    (tornado's callbacks are not thread-safe)."""
    if not PROFILER_CAN_DEADLOCK:
        return
    from distributed import get_worker

    with suppress(ValueError):  # not on a worker (a task run in the client's process)
        worker = get_worker()
        for name in ("profile", "profile-cycle"):
            if (callback := worker.periodic_callbacks.get(name)) is not None:
                worker.loop.add_callback(callback.stop)


def _encode(fn: Any, inp: Any) -> Any:
    """A ``ClusterSlot`` encode, on whichever worker takes it: that worker's profiler stopped too."""
    _stop_profiler()
    return fn(inp)


def probe_file(folder: Path | str, token: str, worker: str = "") -> Path:
    """The file that shows ``folder`` is shared: the client's (holding ``token``), or a worker's answer to it."""
    return Path(folder) / f"{PROBE_PREFIX}{token}{'-' + worker if worker else ''}"


def probe_shared(dirs: dict[str, str], inputs: list[str], token: str) -> dict[str, Any]:
    """Runs on each worker: read the client's probe file in every dir, write this worker's own, and look for
    the input scripts. Returns what this worker could not do, and the files it wrote (for the client to read)."""
    problems: dict[str, str] = {}
    written: dict[str, str] = {}
    me = f"{socket.gethostname()}-{os.getpid()}"
    for name, folder in dirs.items():
        try:
            if probe_file(folder, token).read_text(encoding="utf-8") != token:
                raise OSError("its content differs from what the client wrote")
            mine = probe_file(folder, token, me)
            mine.write_text(me, encoding="utf-8")
            written[name] = str(mine)
        except OSError as exc:
            problems[name] = f"{type(exc).__name__}: {exc}"
    unreadable = [path for path in inputs if not os.access(path, os.R_OK)]
    return {"host": socket.gethostname(), "problems": problems, "written": written, "unreadable": unreadable}


class ClusterSlot:
    """A graph slot whose nodes run as tasks on the cluster (``Graph.run``'s executors): a script's encodes
    spread over every worker, the way Remotion Lambda renders chunks. They go before scripts not yet started
    (a higher priority); each runs with the x264 threads its script's composition chose, so the bytes are
    those of an encode at home. Waiting ends on ``reliability.cancel()``.

    Each encode is offered to the workers' threads in turn (a loose restriction: a worker that left is passed
    over, and a waiting encode may be stolen by one that frees up). Left to itself the scheduler counts a
    seceded script as work in progress and sends its worker nothing while another has a thread free, so one
    video on two workers would encode on one."""

    def __init__(self, client: Any):
        self.client = client
        threads = client.nthreads()
        self.capacity = max(1, sum(threads.values()))
        # worker A's first thread, B's first, …, A's second …: consecutive encodes land on different workers
        turns = [address for n in range(max(threads.values(), default=0))
                 for address, count in sorted(threads.items()) if count > n]
        self.turns = itertools.islice(itertools.cycle(turns), random.randrange(len(turns)), None) if turns else None
        self.lock = threading.Lock()

    def __call__(self, fn: Any, inp: Any) -> Any:
        with self.lock:
            where = {} if self.turns is None else {"workers": [next(self.turns)], "allow_other_workers": True}
        future = self.client.submit(_encode, fn, inp, key=f"encode-{inp.key[:16]}-{uuid.uuid4().hex[:8]}",
                                    pure=False, priority=10, **where)
        # Waited for through a done callback, not ``result(timeout=)`` in a loop: a timed-out wait can race the
        # task's end inside distributed and raise UnboundLocalError instead (dask/distributed#8514).
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        while not done.wait(STOP_POLL_S / 10):
            if reliability.cancelled():
                future.cancel()
                raise reliability.Cancelled("cancelled while encoding on the cluster")
        return future.result()


class DaskRunner(Runner):
    name = "dask"

    def __init__(self, dask_cfg: Any):
        import dask
        from distributed import Client, LocalCluster

        self.cfg = dask_cfg
        logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO chatter is not the batch's log
        self.token = uuid.uuid4().hex[:12]  # one run's task names, distinct from any other run on the cluster
        self.stop_name = f"renderer-stop-{self.token}"  # the Event an interrupted batch sets
        self.cluster = None
        self.lost = False  # the scheduler went away
        self.where = dask_cfg.address or f"a LocalCluster of {dask_cfg.workers} worker(s)"
        try:
            if dask_cfg.address:
                self.client = Client(dask_cfg.address, timeout=dask_cfg.timeout_s, set_as_default=False)
            else:
                with dask.config.set(NO_PROFILER):  # what its workers' nannies start them with, restarts too
                    self.cluster = LocalCluster(n_workers=dask_cfg.workers, threads_per_worker=1, processes=True,
                                                host="127.0.0.1", dashboard_address=None)
                self.client = Client(self.cluster, set_as_default=False)
            self.client.wait_for_workers(1, timeout=dask_cfg.timeout_s)
        except (OSError, TimeoutError) as exc:
            self.close()
            if not dask_cfg.address:
                raise RunnerError(f"batch.backend=dask: {self.where} did not start within {dask_cfg.timeout_s:g} s "
                                  f"({type(exc).__name__}: {exc}); raise batch.dask.timeout_s, or give a running "
                                  "cluster's batch.dask.address") from exc
            raise RunnerError(f"batch.dask.address={dask_cfg.address}: cannot reach the Dask scheduler or none of "
                              f"its workers within {dask_cfg.timeout_s:g} s ({type(exc).__name__}: {exc}); start "
                              "it (dask scheduler; dask worker ADDRESS) or fix the address") from exc
        logger.info("dask: {} worker(s) at {}", len(self._workers()), self.client.scheduler.address)

    def _workers(self) -> dict[str, Any]:
        return self.client.scheduler_info(n_workers=-1)["workers"]

    def _threads(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def shared_state(self, run_dir: Path) -> Any:
        from renderer.ops.cluster_state import ClusterRunState

        return ClusterRunState(run_dir, client=self.client)

    def close(self) -> None:
        if self.lost:  # the client's last attempts to reach the scheduler are not news
            logging.disable(logging.ERROR)
        try:
            for thing in (getattr(self, "client", None), self.cluster):
                if thing is not None:
                    try:
                        thing.close()
                    except Exception as exc:  # a scheduler already gone: nothing left to let go of
                        logger.debug("dask: closing {}: {}", type(thing).__name__, exc)
        finally:
            logging.disable(logging.NOTSET)

    def jobs(self, cfg: DictConfig, scripts: int) -> int:
        """Scripts at once on the busiest machine: the worker threads on one host share its cores."""
        per_host = Counter()
        for worker in self._workers().values():
            per_host[worker["host"]] += worker["nthreads"]
        return max(1, min(max(per_host.values(), default=1), scripts or 1))

    def check_shared(self, dirs: dict[str, Path], inputs: list[Path]) -> None:
        token = uuid.uuid4().hex
        probes = []
        try:
            for folder in dirs.values():
                folder.mkdir(parents=True, exist_ok=True)
                probe = probe_file(folder, token)
                probe.write_text(token, encoding="utf-8")
                probes.append(probe)
            answers = self.client.run(probe_shared, {n: str(p) for n, p in dirs.items()},
                                      [str(p) for p in inputs], token)
            problems = []
            for worker, answer in sorted(answers.items()):
                probes += [Path(p) for p in answer["written"].values()]
                for name, error in answer["problems"].items():
                    problems.append(f"worker {worker} (host {answer['host']}) cannot see the {name} dir "
                                    f"{dirs[name]}: {error}")
                for name, written in answer["written"].items():
                    if not Path(written).exists():
                        problems.append(f"worker {worker} (host {answer['host']}) writes to its own copy of the "
                                        f"{name} dir {dirs[name]}: this machine does not see its probe file")
                if answer["unreadable"]:
                    problems.append(f"worker {worker} (host {answer['host']}) cannot read the script(s) "
                                    f"{', '.join(answer['unreadable'][:3])}")
        finally:
            for probe in probes:
                probe.unlink(missing_ok=True)
        if problems:
            raise RunnerError("the run dir and the cache dir (and the scripts) must be on a filesystem every Dask "
                              "worker mounts at the same path: " + "; ".join(problems) + ". Put them there "
                              "(hydra.run.dir=/shared/..., cache.dir=/shared/..., batch.inputs=[/shared/...]) or "
                              "mount that filesystem on those workers")

    def run(self, plain_cfg: dict, tasks: list[Task], run_dir: Path) -> Records:
        from distributed import Event, as_completed

        from renderer.ops.cluster_state import forget

        services = list(plain_cfg["breaker"])
        forget(run_dir, services, self.client, start=True)  # this run's breakers start closed, as on local backends
        by_key = {f"render-{t.slug}-{self.token}": t for t in tasks}
        queued = list(by_key.items())
        futures: list[Any] = []

        def submit(count: int) -> list[Any]:
            out = [self.client.submit(render_on_dask, plain_cfg, t.path, t.slug, str(run_dir), self.stop_name,
                                      key=key, pure=False, retries=self.cfg.retries) for key, t in queued[:count]]
            del queued[:count]
            futures.extend(out)
            return out

        # split scenes: scripts secede while their encodes run, so the scheduler would start every script at once;
        # as many are let in as the cluster has threads (counted again as each finishes: a cluster may grow)
        split = plain_cfg["batch"]["dask"]["split_scenes"]
        running = as_completed(submit(self._threads() if split else len(queued)), loop=self.client.loop)
        done = set()
        try:
            for future in running:
                done.add(future.key)
                if future.status == "cancelled":  # not by us: the client lost its scheduler
                    raise self._went_away(len(by_key) - len(done) + 1, run_dir)
                if queued:
                    running.update(submit(max(1, self._threads() - running.count())))
                yield self._record(future, by_key[future.key])
        except OSError as exc:  # the comm layer closing under a call (CommClosedError, StreamClosedError)
            raise self._went_away(len(by_key) - len(done), run_dir) from exc
        finally:
            left = [f for f in futures if f.key not in done]
            try:
                if left and not self.lost:
                    self._cancel(left)
                if not self.lost:
                    forget(run_dir, services, self.client)
                    # every task's stop watcher (render_on_dask) returns now: its script is over. Left waiting,
                    # the long polls would be cut off by the cluster's shutdown, which the scheduler logs as errors.
                    Event(self.stop_name, client=self.client).set()
            except OSError as exc:  # the scheduler went away as the batch ended: nothing left to tidy there
                logger.warning("dask: the scheduler at {} went away while the batch ended: {}", self.where, exc)

    def _went_away(self, unfinished: int, run_dir: Path) -> RunnerError:
        self.lost = True
        return RunnerError(f"the Dask scheduler at {self.where} went away with {unfinished} script(s) unfinished; "
                           f"start it (and its workers) again, or use another backend, and finish this batch with "
                           f"resume={run_dir}")

    def _record(self, future: Any, task: Task) -> dict[str, Any]:
        from distributed import KilledWorker

        if future.status == "finished":
            return future.result()
        exc = future.exception()
        why = ("every worker that took it died (out of memory? killed?)" if isinstance(exc, KilledWorker)
               else f"{type(exc).__name__}: {exc}")
        return new_record(Path(task.path), task.slug, f"{why}; resume to retry")

    def _cancel(self, futures: list[Any]) -> None:
        """An interrupted batch: every task of it is told to stop (the Event ``render_on_dask`` watches), so tasks
        not started never start and those running cancel their own work (Runway tasks, tools); after
        ``CANCEL_GRACE_S`` the futures still out are cancelled on the scheduler."""
        from distributed import Event

        logger.warning("dask: stopping {} script(s): {:.0f} s for the workers to cancel their work", len(futures),
                       CANCEL_GRACE_S)
        try:
            with signals_held():
                Event(self.stop_name, client=self.client).set()
                # each future's own wait: ``distributed.wait`` asks for a default client, which this one is not
                deadline = time.monotonic() + CANCEL_GRACE_S
                for future in futures:
                    with suppress(Exception):  # its outcome is the record it wrote; only its end matters here
                        future.result(timeout=max(0.0, deadline - time.monotonic()))
                if running := sum(not f.done() for f in futures):
                    logger.warning("dask: {} script(s) still running after {:.0f} s: cancelled", running,
                                   CANCEL_GRACE_S)
            self.client.cancel(futures, force=True, reason="the batch was interrupted")
        except Exception as exc:  # the scheduler is gone: nothing will run them anyway
            logger.debug("dask: cancelling: {}", exc)
