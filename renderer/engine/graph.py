"""A stage graph: nodes that declare what they read, a content key per node, concurrent execution.

A node's key hashes its stage name and version, the config subtrees it reads, its own data and its inputs'
keys: two nodes with one key produce the same output. An input can instead be a ``Part`` of another node's
output, plain data that is hashed by value (early cutoff): a node keyed by its scene's span is not redone
when only another scene's length changed. Keys are therefore computed as nodes become ready.
Independent nodes run side by side on a thread pool (they mostly wait on subprocesses), at most
``slots[node.slot]`` of one slot at a time; a node whose function fails runs its fallback, and the fallback
is recorded; a node with no fallback fails its dependents.
"""

from __future__ import annotations

import contextvars
import dataclasses
import errno
import hashlib
import json
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Union

from loguru import logger
from omegaconf import DictConfig, OmegaConf

from renderer.engine.cache import Cache
from renderer.ops import health, reliability
from renderer.ops.logs import correlate, redact
from renderer.ops.reliability import RetryPolicy

CANCEL_POLL_S = 0.2  # how often a running graph looks whether this process was cancelled (reliability.cancel)


def _whole(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Part:
    """An input that is what ``node``'s output says rather than how it was made: the stage receives
    ``pick(output)``, which must be plain data (no files), and its key hashes that value. Two outputs
    saying the same thing (a voice of the same length, a terminal with nothing to show in any theme) leave
    the dependent's key as it was, and a fallback's value is as good a key as any other."""

    node: str
    pick: Callable[[Any], Any] = _whole


Dep = Union[str, Part]
Deps = Mapping[str, Union[Dep, tuple[Dep, ...]]]


@dataclass(frozen=True)
class NodeInput:
    """Everything a stage function may look at."""

    data: Any  # the node's own plain data (e.g. its scene's narration)
    cfg: dict[str, Any]  # only the config paths the node declared, as plain containers, by path
    deps: dict[str, Any]  # its inputs by the names it declared (a tuple of deps gives a list)
    workdir: Path
    key: str

    def tree(self, prefix: str) -> dict[str, Any]:
        """The declared settings under ``prefix`` as one nested dict: reads ``theme.foreground`` and
        ``theme.font_size`` give ``tree("theme") == {"foreground": ..., "font_size": ...}``."""
        out: dict[str, Any] = {}
        for path, value in self.cfg.items():
            if path == prefix and isinstance(value, dict):
                out.update(value)
            elif path.startswith(prefix + "."):
                *parents, leaf = path[len(prefix) + 1:].split(".")
                node = out
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = value
        return out


@dataclass
class Node:
    name: str  # unique in the graph, e.g. "voice/3"
    stage: str  # e.g. "voice"
    version: str
    fn: Callable[[NodeInput], Any]
    reads: tuple[str, ...] = ()  # config paths, e.g. ("voice", "format.fps")
    data: Any = None
    deps: Deps | tuple[str, ...] = ()  # input name -> node name, Part, or a tuple of them; names alone
    fallback: Callable[[NodeInput, Exception], Any] | None = None
    cacheable: bool = True  # False when the key cannot vouch for the output (e.g. a stand-in provider)
    retry: RetryPolicy | None = None  # tries of ``fn`` before the fallback (or the failure)
    unkeyed: tuple[str, ...] = ()  # read settings that cannot change the output (e.g. "visual.poll_interval_s")
    slot: str = ""  # nodes of one slot share the run's cap for it (e.g. "encode": the CPU-bound encodes)

    def __post_init__(self) -> None:
        if not isinstance(self.deps, Mapping):
            self.deps = {name: name for name in self.deps}

    def upstream(self, *, by_key: bool = False) -> list[str]:
        """Names of the nodes this one depends on (``by_key``: only those it is keyed by, not Parts)."""
        out: list[str] = []
        for dep in self.deps.values():
            for one in dep if isinstance(dep, tuple) else (dep,):
                if isinstance(one, Part):
                    if not by_key:
                        out.append(one.node)
                else:
                    out.append(one)
        return out


@dataclass
class NodeRecord:
    name: str
    stage: str
    key: str
    status: str = "pending"  # ok | cached | fallback | failed | skipped
    started: float = 0.0  # seconds after the graph began (with ``seconds``: the waterfall in report.html)
    seconds: float = 0.0
    provider: str = ""
    error: str = ""
    warning: str = ""  # e.g. the cache could not keep the output (the output itself is fine)


class SlotExecutor(Protocol):
    """Runs a slot's node functions elsewhere: ``executor(fn, inp)`` returns ``fn(inp)`` computed there (or
    raises what it raised); at most ``capacity`` at once."""

    capacity: int

    def __call__(self, fn: Callable[[NodeInput], Any], inp: NodeInput) -> Any: ...


class GraphError(RuntimeError):
    def __init__(self, records: list[NodeRecord]):
        self.records = records
        failed = [r for r in records if r.status == "failed"]
        super().__init__("; ".join(f"{r.name}: {r.error}" for r in failed) or "graph failed")


def _plain(value: Any) -> Any:
    """``value`` as JSON-able plain data: configs and dataclasses as containers, sequences item by item."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _without(selected: dict[str, Any], unkeyed: tuple[str, ...]) -> dict[str, Any]:
    """``selected`` minus the dotted ``unkeyed`` settings, at any depth below one of its read paths."""
    for dotted in unkeyed:
        if dotted in selected:
            del selected[dotted]
            continue
        path = next((p for p in selected if dotted.startswith(p + ".")), None)
        if path is None:
            continue
        *parents, leaf = dotted[len(path) + 1:].split(".")
        node = selected[path]
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return selected


def _select(cfg: DictConfig, paths: tuple[str, ...]) -> dict[str, Any]:
    return {path: _plain(OmegaConf.select(cfg, path, throw_on_missing=True)) for path in paths}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(_plain(value), sort_keys=True, default=str).encode()).hexdigest()


def _resolve(dep: Dep | tuple[Dep, ...], outputs: dict[str, Any]) -> Any:
    if isinstance(dep, tuple):
        return [_resolve(one, outputs) for one in dep]
    return dep.pick(outputs[dep.node]) if isinstance(dep, Part) else outputs[dep]


def _fingerprint(dep: Dep | tuple[Dep, ...], keys: dict[str, str], outputs: dict[str, Any]) -> Any:
    """What a dependency adds to a key: the node's key, or the digest of a Part's value."""
    if isinstance(dep, tuple):
        return [_fingerprint(one, keys, outputs) for one in dep]
    if isinstance(dep, Part):
        if dep.node not in outputs:
            raise ValueError(f"the key of a node reading part of {dep.node!r} is known only once it has run")
        return "part:" + _digest(dep.pick(outputs[dep.node]))
    return keys[dep]


def _scene_of(name: str) -> str:
    """The scene a node is for, when its name says (``voice/3``, ``segment/3.1``: renderer/pipeline/compose.py), else ""."""
    _, _, tail = name.partition("/")
    scene = tail.split(".")[0]
    return scene if scene.isdigit() else ""


def first_that_works(fallbacks: list[Callable[[NodeInput], Any]]) -> Callable[[NodeInput, Exception], Any] | None:
    """A node fallback trying ``fallbacks`` in order; the last one's error if all fail; None if there are none."""
    if not fallbacks:
        return None

    def fallback(inp: NodeInput, exc: Exception) -> Any:
        for attempt in fallbacks[:-1]:
            try:
                return attempt(inp)
            except Exception as error:  # each step that failed is noted on the node's error, for its record
                logger.warning("fallback failed too: {}", error)
                exc.add_note(f"{getattr(attempt, 'label', 'fallback')} failed too: {type(error).__name__}: {error}")
        return fallbacks[-1](inp)

    return fallback


def _store(cache: Cache, node: Node, key: str, result: Any, record: NodeRecord) -> Any:
    """Keep a clean result for later runs; a cache that cannot be written costs speed, not the render."""
    try:
        return cache.put(node.stage, key, result)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        record.warning = (f"the cache in {cache.root} is full ({exc.strerror}): outputs were not cached; prune it "
                          "(python -m renderer.cache prune --max-size ...) or free space" if full else
                          f"outputs could not be cached in {cache.root}: {exc}")
        logger.warning("{}: {}", node.name, record.warning)
        return result


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, node: Node) -> Node:
        if node.name in self.nodes:
            raise ValueError(f"duplicate node {node.name!r}")
        missing = [d for d in node.upstream() if d not in self.nodes]
        if missing:
            raise ValueError(f"node {node.name!r} depends on unknown {missing}")
        self.nodes[node.name] = node
        return node

    @staticmethod
    def key(node: Node, cfg: DictConfig, keys: dict[str, str], outputs: dict[str, Any]) -> str:
        """The content key of ``node``, given its deps' keys (and, for Parts, their outputs)."""
        payload = {
            "stage": node.stage,
            "version": node.version,
            "cfg": _without(_select(cfg, node.reads), node.unkeyed),
            "data": _plain(node.data),
            "deps": {name: _fingerprint(dep, keys, outputs) for name, dep in node.deps.items()},
        }
        return _digest(payload)

    def keys(self, cfg: DictConfig) -> dict[str, str]:
        """The content key of every node, for a graph without Parts (those are known only while running)."""
        keys: dict[str, str] = {}
        for node in self.nodes.values():  # nodes are added after their deps, so insertion order works
            keys[node.name] = self.key(node, cfg, keys, {})
        return keys

    def run(self, cfg: DictConfig, workdir: Path, *, threads: int = 4, cache: Cache | None = None,
            on_abort: Callable[[], Any] | None = None, slots: Mapping[str, int] | None = None,
            executors: Mapping[str, SlotExecutor] | None = None) -> tuple[dict[str, Any], list[NodeRecord]]:
        """Run every node once its deps are done; return outputs by name and one record per node.

        With a ``cache``, a node whose key is stored is not run ("cached"), and a node that ran cleanly is
        stored. Fallback outputs are never stored, nor is anything keyed by them (their keys would lie);
        a node reading a Part of one is keyed by the value it got, so it may be. ``slots`` caps how many
        nodes of each slot run at once. If the run is interrupted (Ctrl-C, SIGTERM turned into an exception,
        ``reliability.cancel()`` from another thread), nodes not yet started are dropped and ``on_abort`` stops
        the ones running (e.g. kills their subprocesses) before re-raising. A slot with an ``executor`` runs
        its nodes' functions there (e.g. on other machines), up to the executor's ``capacity`` at once; the
        waits take pool threads of their own, so the other nodes keep all of ``threads``.
        """
        records = {name: NodeRecord(name, node.stage, "") for name, node in self.nodes.items()}
        keys: dict[str, str] = {}
        outputs: dict[str, Any] = {}
        tainted: set[str] = set()  # not cacheable, fell back, or keyed by such a node
        pending = dict(self.nodes)
        running: dict[Future, str] = {}
        busy: Counter[str] = Counter()  # nodes running per slot
        executors = dict(executors or {})
        caps = dict(slots or {}) | {slot: executor.capacity for slot, executor in executors.items()}
        broken: set[str] = set()  # failed or skipped
        aborting = threading.Event()  # set on interruption: no retry, no fallback, nothing new starts
        began = time.perf_counter()

        def execute(node: Node, inp: NodeInput, cacheable: bool) -> Any:
            """A node in a pool thread, its log records and samples tagged with its name and stage."""
            with correlate(node=node.name, stage=node.stage, scene=_scene_of(node.name)), \
                    health.node_running(node.name, len(self.nodes)):
                try:
                    return attempt(node, inp, cacheable)
                finally:
                    r = records[node.name]
                    logger.bind(provider=r.provider).debug("{}: {} in {:.2f} s{}", node.name, r.status, r.seconds,
                                                           f" ({r.provider})" if r.provider else "")

        def attempt(node: Node, inp: NodeInput, cacheable: bool) -> Any:
            key, record = inp.key, records[node.name]
            started = time.perf_counter()
            record.started = round(started - began, 3)
            if cacheable and (hit := cache.get(node.stage, key)) is not None:
                record.status, record.provider = "cached", getattr(hit, "provider", "")
                record.seconds = round(time.perf_counter() - started, 3)
                return hit
            try:
                executor = executors.get(node.slot)
                call = (lambda: node.fn(inp)) if executor is None else (lambda: executor(node.fn, inp))
                result = call() if node.retry is None else node.retry.run(call, node.name, cancelled=aborting.is_set)
                record.status = "ok"
            except Exception as exc:  # a stage failure is data: recorded, then fallen back from
                record.error = redact(f"{type(exc).__name__}: {exc}")
                record.status = "failed"
                if node.fallback is None or aborting.is_set():  # an interrupted run starts nothing new
                    raise
                try:
                    result = node.fallback(inp, exc)
                except Exception as fallback_exc:  # the node stays failed, with both reasons
                    record.error += redact(f"; fallback: {type(fallback_exc).__name__}: {fallback_exc}")
                    raise
                record.status = "fallback"
                record.error += "".join(redact(f"; {note}") for note in getattr(exc, "__notes__", ()))
                tainted.add(node.name)
            finally:
                record.seconds = round(time.perf_counter() - started, 3)
            record.provider = getattr(result, "provider", "")
            if cacheable and record.status == "ok":
                result = _store(cache, node, key, result, record)
            return result

        def start(node: Node) -> None:
            """Key the node and hand it to the pool (main thread only, so keys and taint stay consistent)."""
            key = keys[node.name] = records[node.name].key = self.key(node, cfg, keys, outputs)
            if not node.cacheable or tainted.intersection(node.upstream(by_key=True)):
                tainted.add(node.name)
            deps = {name: _resolve(dep, outputs) for name, dep in node.deps.items()}
            inp = NodeInput(node.data, _select(cfg, node.reads), deps, workdir, key)
            cacheable = cache is not None and node.name not in tainted
            # the task runs in a copy of this thread's context: the script's correlation ids go with it
            running[pool.submit(contextvars.copy_context().run, execute, node, inp, cacheable)] = node.name
            busy[node.slot] += 1

        waits = sum(executor.capacity for executor in executors.values())
        pool = ThreadPoolExecutor(max_workers=max(1, threads) + waits, thread_name_prefix="stage")
        try:
            while pending or running:
                for name, node in list(pending.items()):  # readiness is judged here, on the main thread only
                    upstream = node.upstream()
                    if any(d in broken for d in upstream):
                        records[name].status = "skipped"
                        broken.add(name)
                        del pending[name]
                    elif all(d in outputs for d in upstream) and busy[node.slot] < caps.get(node.slot, threads):
                        try:
                            start(node)
                        except Exception as exc:  # e.g. a Part that cannot be picked from its output
                            records[name].status = "failed"
                            records[name].error = redact(f"{type(exc).__name__}: {exc}")
                            broken.add(name)
                        del pending[name]
                if not running:
                    break
                done, _ = wait(running, timeout=CANCEL_POLL_S, return_when=FIRST_COMPLETED)
                if reliability.cancelled():  # from a thread no signal reaches: a Dask task, the threading backend
                    raise KeyboardInterrupt("cancelled")
                for future in done:
                    name = running.pop(future)
                    busy[self.nodes[name].slot] -= 1
                    error = future.exception()
                    if error is None:
                        outputs[name] = future.result()
                        continue
                    broken.add(name)
                    if records[name].status != "failed":  # broke outside its stage function
                        records[name].status = "failed"
                        records[name].error = redact(f"{type(error).__name__}: {error}")
        except BaseException as exc:
            aborting.set()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                reliability.cancel()  # backoffs wake, and no retry in this process sends another request
            pool.shutdown(wait=False, cancel_futures=True)
            if on_abort is not None:
                on_abort()
            raise
        finally:
            pool.shutdown(wait=True)
        ordered = [records[name] for name in self.nodes]
        if any(r.status in ("failed", "skipped") for r in ordered):
            raise GraphError(ordered)
        return outputs, ordered
