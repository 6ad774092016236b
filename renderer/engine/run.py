"""One run of a graph, as named steps (the way pydoit's Runner reads):

    GraphRun.run()
        while nodes are pending or running:
            select()          the ready nodes whose slot has room, in graph order
            start(node)       key it, hand it its inputs and the pool
            wait()            the nodes that finished (a cancelled run stops here)
            record(future)    keep a finished node's output for its dependents (release() those it was the
                              last input of), or break the node (and skip its dependents); settle() it
        finish()              the outputs and records, or GraphError
    execute(node)           in a pool thread: from_cache(), or call() with its retries then fall_back();
                            store() a clean result

Independent nodes run side by side on a thread pool (they mostly wait on subprocesses), at most
``slots[node.slot]`` of one slot at a time. The run keeps, for each pending node, how many of its inputs are
still to come, and a queue of ready nodes per slot (the way pydoit's and kedro's runners do): a pass looks
only at what may start, so a graph of thousands of nodes costs each node a constant amount of bookkeeping.
Keys are computed as nodes become ready, since a ``Part`` is keyed by the value it picks from an output. A
fallback's output is not cached, nor is anything keyed by it (the key would lie): such nodes are tainted. What
the run has to say (log tags, samples, the redaction of error texts) goes through the ``GraphObserver`` it is
given; whether it was cancelled, through a callable.
"""

from __future__ import annotations

import contextvars
import errno
import heapq
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from loguru import logger
from omegaconf import DictConfig

from renderer.engine import keys
from renderer.engine.cache import Cache
from renderer.engine.node import Dep, Node, NodeInput, NodeRecord, Part, SlotExecutor
from renderer.engine.observer import GraphObserver
from renderer.engine.output import StageOutput
from renderer.engine.records import Unrecordable

CANCEL_POLL_S = 0.2  # how often a running graph asks ``cancelled()``


class GraphError(RuntimeError):
    def __init__(self, records: list[NodeRecord]):
        self.records = records
        failed = [r for r in records if r.status == "failed"]
        super().__init__("; ".join(f"{r.name}: {r.error}" for r in failed) or "graph failed")


def _resolve(dep: Dep | tuple[Dep, ...], outputs: dict[str, Any], picks: keys.Picks) -> Any:
    if isinstance(dep, tuple):
        return [_resolve(one, outputs, picks) for one in dep]
    return picks.value(dep) if isinstance(dep, Part) else outputs[dep]


def _never() -> bool:
    return False


class GraphRun:
    """See the module's docstring. The main thread selects, starts and records; pool threads execute."""

    def __init__(self, nodes: Mapping[str, Node], cfg: DictConfig, workdir: Path, *, threads: int = 4,
                 cache: Cache | None = None, slots: Mapping[str, int] | None = None,
                 executors: Mapping[str, SlotExecutor] | None = None, observer: GraphObserver | None = None,
                 cancelled: Callable[[], bool] | None = None, on_interrupt: Callable[[], Any] | None = None,
                 on_abort: Callable[[], Any] | None = None):
        self.nodes, self.cfg, self.workdir, self.threads, self.cache = nodes, cfg, workdir, threads, cache
        self.executors = dict(executors or {})
        self.caps = dict(slots or {}) | {slot: executor.capacity for slot, executor in self.executors.items()}
        self.observer = observer or GraphObserver()
        self.cancelled, self.on_interrupt, self.on_abort = cancelled or _never, on_interrupt, on_abort
        self.records = {name: NodeRecord(name, node.stage, "", scene=node.scene, part=node.part)
                        for name, node in nodes.items()}
        self.keys: dict[str, str] = {}
        self.outputs: dict[str, Any] = {}
        self.picks = keys.Picks(self.outputs)  # each Part's value, picked once for all the nodes reading it
        self.tainted: set[str] = set()  # not cacheable, fell back, or keyed by such a node
        self.broken: set[str] = set()  # failed or skipped
        self.pending = dict(nodes)
        self.names = list(nodes)
        self.order = {name: n for n, name in enumerate(self.names)}
        # for each pending node, how many of its inputs have not yet given an output; who reads each node
        self.waiting: dict[str, int] = {}
        self.dependents: dict[str, list[str]] = {name: [] for name in nodes}
        self.ready: dict[str, list[int]] = {}  # per slot, a heap of the graph positions of its ready nodes
        for name, node in nodes.items():
            inputs = set(node.upstream())
            self.waiting[name] = len(inputs)
            for dep in inputs:
                self.dependents[dep].append(name)
            if not inputs:
                self.release(name)
        self.running: dict[Future, str] = {}
        self.busy: Counter[str] = Counter()  # nodes running per slot
        self.unsettled = Counter(node.stage for node in nodes.values())  # per stage, nodes not yet over
        self.aborting = threading.Event()  # set on interruption: no retry, no fallback, nothing new starts
        self.began = time.perf_counter()
        # a thread for every node that may run at once: ``threads`` for the unnamed slot, each named slot's cap
        # (an executor's waits among them), so a node with room in its slot never queues behind another slot's
        pooled = max(1, threads) + sum(cap for slot, cap in self.caps.items() if slot)
        self.pool = ThreadPoolExecutor(max_workers=pooled, thread_name_prefix="stage")

    def run(self) -> tuple[dict[str, Any], list[NodeRecord]]:
        try:
            while self.pending or self.running:
                for node in self.select():
                    self.start(node)
                if not self.running:
                    break
                for future in self.wait():
                    self.record(future)
        except BaseException as exc:
            self.abort(exc)
            raise
        finally:
            self.pool.shutdown(wait=True)
        return self.finish()

    # --- the main thread -----------------------------------------------------------------------------------
    def select(self) -> Iterator[Node]:
        """The ready nodes (all their inputs there) whose slot has room, in graph order. Lazy: each is started
        before the next is judged."""
        heads = [(queue[0], slot) for slot, queue in self.ready.items() if queue and self.room(slot)]
        heapq.heapify(heads)
        while heads:
            _, slot = heapq.heappop(heads)
            queue = self.ready[slot]
            name = self.names[heapq.heappop(queue)]
            del self.pending[name]
            yield self.nodes[name]
            if queue and self.room(slot):
                heapq.heappush(heads, (queue[0], slot))

    def room(self, slot: str) -> bool:
        return self.busy[slot] < self.caps.get(slot, self.threads)

    def release(self, name: str) -> None:
        """``name`` has all its inputs: it joins its slot's queue."""
        heapq.heappush(self.ready.setdefault(self.nodes[name].slot, []), self.order[name])

    def done(self, name: str) -> None:
        """``name`` gave its output: the dependents it was the last missing input of become ready."""
        for dependent in self.dependents[name]:
            self.waiting[dependent] -= 1
            if not self.waiting[dependent] and dependent in self.pending:
                self.release(dependent)

    def broke(self, name: str) -> None:
        """``name`` failed: every node that reads it, directly or not, is skipped (none of them can run)."""
        self.broken.add(name)
        stack = list(self.dependents[name])
        while stack:
            dependent = stack.pop()
            if dependent in self.pending and dependent not in self.broken:
                self.records[dependent].status = "skipped"
                self.broken.add(dependent)
                del self.pending[dependent]
                self.settle(dependent)
                stack.extend(self.dependents[dependent])

    def settle(self, name: str) -> None:
        """``name`` is over for good: the observer hears when it was the last of its stage."""
        stage = self.nodes[name].stage
        self.unsettled[stage] -= 1
        if not self.unsettled[stage]:
            self.observer.stage_finished(stage)

    def start(self, node: Node) -> None:
        """Key the node and hand it to the pool (here only, so keys and taint stay consistent); a node that
        cannot be keyed or given its inputs (e.g. a Part that cannot be picked from its output) fails."""
        try:
            key = self.keys[node.name] = self.records[node.name].key = keys.key(node, self.cfg, self.keys,
                                                                                self.outputs, self.picks)
            if not node.cacheable or self.tainted.intersection(node.upstream(by_key=True)):
                self.tainted.add(node.name)
            deps = {name: _resolve(dep, self.outputs, self.picks) for name, dep in node.deps.items()}
            inp = NodeInput(node.data, keys.select(self.cfg, node.reads), deps, self.workdir, key)
            cacheable = self.cache is not None and node.name not in self.tainted
            # the task runs in a copy of this thread's context: the script's correlation ids go with it
            self.running[self.pool.submit(contextvars.copy_context().run, self.execute, node, inp, cacheable)] \
                = node.name
            self.busy[node.slot] += 1
        except Exception as exc:
            self.fail(node.name, exc)
            self.settle(node.name)

    def wait(self) -> set[Future]:
        """The nodes that finished within CANCEL_POLL_S. A ``cancelled()`` run (from a thread no signal
        reaches: a Dask task, the threading backend) is interrupted here."""
        done, _ = wait(self.running, timeout=CANCEL_POLL_S, return_when=FIRST_COMPLETED)
        if self.cancelled():
            raise KeyboardInterrupt("cancelled")
        return done

    def record(self, future: Future) -> None:
        """A finished node: its output kept for its dependents, or the node broken (and so its dependents)."""
        name = self.running.pop(future)
        self.busy[self.nodes[name].slot] -= 1
        error = future.exception()
        if error is None:
            self.outputs[name] = future.result()
            self.done(name)
        elif self.records[name].status != "failed":  # broke outside its stage function
            self.fail(name, error)
        else:
            self.broke(name)
        self.settle(name)

    def fail(self, name: str, error: BaseException) -> None:
        record = self.records[name]
        record.status, record.error = "failed", self.observer.redact(f"{type(error).__name__}: {error}")
        self.broke(name)

    def abort(self, exc: BaseException) -> None:
        """Interrupted (Ctrl-C, SIGTERM turned into an exception, ``cancelled()``) or broken: nodes not yet
        started are dropped, none retries or falls back, and ``on_abort`` stops those running (e.g. kills their
        subprocesses). An interruption calls ``on_interrupt`` first (e.g. so backoffs wake)."""
        self.aborting.set()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and self.on_interrupt is not None:
            self.on_interrupt()
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.on_abort is not None:
            self.on_abort()

    def finish(self) -> tuple[dict[str, Any], list[NodeRecord]]:
        """The outputs by name and a record per node, in graph order; GraphError if any failed or was skipped."""
        ordered = [self.records[name] for name in self.nodes]
        if any(r.status in ("failed", "skipped") for r in ordered):
            raise GraphError(ordered)
        return self.outputs, ordered

    # --- a pool thread -------------------------------------------------------------------------------------
    def execute(self, node: Node, inp: NodeInput, cacheable: bool) -> Any:
        """A node's work, inside the observer's ``node_running``: its cached output, or its stage function
        (retried, then fallen back from); a clean result is stored."""
        record = self.records[node.name]
        with self.observer.node_running(node, len(self.nodes)):
            try:
                started = time.perf_counter()
                record.started = round(started - self.began, 3)
                if cacheable and (hit := self.from_cache(node, inp.key)) is not None:
                    record.status = "cached"
                    self.note(record, hit)
                    record.seconds = round(time.perf_counter() - started, 3)
                    return hit
                try:
                    result = self.call(node, inp)
                    record.status = "ok"
                except Exception as exc:  # a stage failure is data: recorded, then fallen back from
                    result = self.fall_back(node, inp, exc)
                finally:
                    record.seconds = round(time.perf_counter() - started, 3)
                self.note(record, result)
                if cacheable and record.status == "ok":
                    result = self.store(node, inp.key, result)
                return result
            finally:
                self.observer.node_finished(node, record)

    def from_cache(self, node: Node, key: str) -> Any | None:
        with self.observer.cache_call("get") as call:
            hit = self.cache.get(node.stage, key)
            call["hit"] = hit is not None
        return hit

    def call(self, node: Node, inp: NodeInput) -> Any:
        """The stage function, where its slot's executor runs it (or in this thread), tried as its retry says."""
        executor = self.executors.get(node.slot)
        call = (lambda: node.fn(inp)) if executor is None else (lambda: executor(node.fn, inp))
        return call() if node.retry is None else node.retry.run(call, node.name, cancelled=self.aborting.is_set)

    def fall_back(self, node: Node, inp: NodeInput, exc: Exception) -> Any:
        """The node's fallback for the failure ``exc``, its output tainted; with none, in a run being aborted
        (it starts nothing new), or when the fallback fails too (the node then fails with both reasons), raises."""
        record = self.records[node.name]
        record.status, record.error = "failed", self.observer.redact(f"{type(exc).__name__}: {exc}")
        if node.fallback is None or self.aborting.is_set():
            raise exc
        try:
            result = node.fallback(inp, exc)
        except Exception as fallback_exc:
            record.error += self.observer.redact(f"; fallback: {type(fallback_exc).__name__}: {fallback_exc}")
            raise
        record.status = "fallback"
        record.error += "".join(self.observer.redact(f"; {note}") for note in getattr(exc, "__notes__", ()))
        self.tainted.add(node.name)
        return result

    @staticmethod
    def note(record: NodeRecord, output: Any) -> None:
        """What the output says of itself: its provider and warnings."""
        if isinstance(output, StageOutput):
            record.provider, record.warnings = output.provider, list(output.warnings)

    def store(self, node: Node, key: str, result: Any) -> Any:
        """Keep a clean result for later runs, pointing at the cached files; a cache that cannot be written
        costs speed, not the render (the record says so); so does an output no cache record can hold."""
        try:
            with self.observer.cache_call("put"):
                return self.cache.put(node.stage, key, result)
        except (OSError, Unrecordable) as exc:
            full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
            warning = (f"the cache in {self.cache.root} is full ({exc.strerror}): outputs were not cached; prune it "
                       "(python -m renderer.cache prune --max-size ...) or free space" if full else
                       f"outputs could not be cached in {self.cache.root}: {exc}")
            self.records[node.name].warnings.append(warning)
            logger.warning("{}: {}", node.name, warning)
            return result
