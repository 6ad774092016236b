"""A stage graph: nodes that declare what they read, a content key per node, concurrent execution.

A node's key hashes its stage name and version, the config subtrees it reads, its own data and its inputs'
keys: two nodes with one key produce the same output. Independent nodes run side by side on a thread pool
(they mostly wait on subprocesses); a node whose function fails runs its fallback, and the fallback is
recorded; a node with no fallback fails its dependents.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class NodeInput:
    """Everything a stage function may look at."""

    data: Any  # the node's own plain data (e.g. its scene's narration)
    cfg: dict[str, Any]  # only the config subtrees the node declared, as plain containers
    deps: dict[str, Any]  # outputs of the nodes it depends on, by node name
    workdir: Path
    key: str


@dataclass
class Node:
    name: str  # unique in the graph, e.g. "voice/3"
    stage: str  # e.g. "voice"
    version: str
    fn: Callable[[NodeInput], Any]
    reads: tuple[str, ...] = ()  # config paths, e.g. ("voice", "format")
    data: Any = None
    deps: tuple[str, ...] = ()
    fallback: Callable[[NodeInput, Exception], Any] | None = None


@dataclass
class NodeRecord:
    name: str
    stage: str
    key: str
    status: str = "pending"  # ok | fallback | failed | skipped
    seconds: float = 0.0
    provider: str = ""
    error: str = ""


class GraphError(RuntimeError):
    def __init__(self, records: list[NodeRecord]):
        self.records = records
        failed = [r for r in records if r.status == "failed"]
        super().__init__("; ".join(f"{r.name}: {r.error}" for r in failed) or "graph failed")


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _select(cfg: DictConfig, paths: tuple[str, ...]) -> dict[str, Any]:
    return {path: _plain(OmegaConf.select(cfg, path, throw_on_missing=True)) for path in paths}


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)

    def add(self, node: Node) -> Node:
        if node.name in self.nodes:
            raise ValueError(f"duplicate node {node.name!r}")
        missing = [d for d in node.deps if d not in self.nodes]
        if missing:
            raise ValueError(f"node {node.name!r} depends on unknown {missing}")
        self.nodes[node.name] = node
        return node

    def keys(self, cfg: DictConfig) -> dict[str, str]:
        """The content key of every node (nodes are added after their deps, so insertion order works)."""
        keys: dict[str, str] = {}
        for node in self.nodes.values():
            payload = {
                "stage": node.stage,
                "version": node.version,
                "cfg": _select(cfg, node.reads),
                "data": _plain(node.data),
                "deps": [keys[d] for d in node.deps],
            }
            blob = json.dumps(payload, sort_keys=True, default=str).encode()
            keys[node.name] = hashlib.sha256(blob).hexdigest()
        return keys

    def run(self, cfg: DictConfig, workdir: Path, *, threads: int = 4,
            on_abort: Callable[[], Any] | None = None) -> tuple[dict[str, Any], list[NodeRecord]]:
        """Run every node once its deps are done; return outputs by name and one record per node.

        If the run is interrupted (Ctrl-C, SIGTERM turned into an exception), nodes not yet started are
        dropped and ``on_abort`` stops the ones running (e.g. kills their subprocesses) before re-raising.
        """
        keys = self.keys(cfg)
        records = {name: NodeRecord(name, node.stage, keys[name]) for name, node in self.nodes.items()}
        outputs: dict[str, Any] = {}
        pending = dict(self.nodes)
        running: dict[Future, str] = {}

        def execute(node: Node) -> Any:
            inp = NodeInput(node.data, _select(cfg, node.reads), {d: outputs[d] for d in node.deps}, workdir,
                            keys[node.name])
            record = records[node.name]
            started = time.perf_counter()
            try:
                result = node.fn(inp)
                record.status = "ok"
            except Exception as exc:  # a stage failure is data: recorded, then fallen back from
                record.error = f"{type(exc).__name__}: {exc}"
                record.status = "failed"
                if node.fallback is None:
                    raise
                result = node.fallback(inp, exc)  # a failing fallback leaves the node failed
                record.status = "fallback"
            finally:
                record.seconds = round(time.perf_counter() - started, 3)
            record.provider = getattr(result, "provider", "")
            return result

        pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="stage")
        try:
            while pending or running:
                for name, node in list(pending.items()):
                    dep_status = [records[d].status for d in node.deps]
                    if any(s in ("failed", "skipped") for s in dep_status):
                        records[name].status = "skipped"
                        del pending[name]
                    elif all(s in ("ok", "fallback") for s in dep_status):
                        running[pool.submit(execute, node)] = name
                        del pending[name]
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    if future.exception() is None:
                        outputs[name] = future.result()
        except BaseException:
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
