"""A stage graph: nodes that declare what they read (renderer/engine/node.py), a content key per node
(keys.py), run concurrently with retries, fallbacks and a cache (run.py).

A node whose function fails runs its fallback, and the fallback is recorded; a node with no fallback fails
its dependents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from omegaconf import DictConfig

from renderer.engine.cache import Cache
from renderer.engine.keys import key as content_key
from renderer.engine.node import Node, NodeRecord, SlotExecutor
from renderer.engine.observer import GraphObserver
from renderer.engine.run import GraphRun


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
        return content_key(node, cfg, keys, outputs)

    def keys(self, cfg: DictConfig) -> dict[str, str]:
        """The content key of every node, for a graph without Parts (those are known only while running)."""
        keys: dict[str, str] = {}
        for node in self.nodes.values():  # nodes are added after their deps, so insertion order works
            keys[node.name] = content_key(node, cfg, keys, {})
        return keys

    def run(self, cfg: DictConfig, workdir: Path, *, threads: int = 4, cache: Cache | None = None,
            on_abort: Callable[[], Any] | None = None, slots: Mapping[str, int] | None = None,
            executors: Mapping[str, SlotExecutor] | None = None, observer: GraphObserver | None = None,
            cancelled: Callable[[], bool] | None = None, on_interrupt: Callable[[], Any] | None = None
            ) -> tuple[dict[str, Any], list[NodeRecord]]:
        """Run every node once its deps are done; return outputs by name and one record per node.

        With a ``cache``, a node whose key is stored is not run ("cached"), and a node that ran cleanly is
        stored. Fallback outputs are never stored, nor is anything keyed by them (their keys would lie);
        a node reading a Part of one is keyed by the value it got, so it may be. ``slots`` caps how many
        nodes of each slot run at once. If the run is interrupted (Ctrl-C, SIGTERM turned into an exception,
        ``cancelled()`` turning true, as polled every CANCEL_POLL_S), ``on_interrupt`` is called, nodes not yet
        started are dropped and ``on_abort`` stops the ones running (e.g. kills their subprocesses) before
        re-raising. A slot with an ``executor`` runs its nodes' functions there (e.g. on other machines), up to
        the executor's ``capacity`` at once; the waits take pool threads of their own, so the other nodes keep
        all of ``threads``. ``observer`` is told of every node and cache call (the default: nothing is).
        """
        return GraphRun(self.nodes, cfg, workdir, threads=threads, cache=cache, slots=slots, executors=executors,
                        observer=observer, cancelled=cancelled, on_interrupt=on_interrupt, on_abort=on_abort).run()
