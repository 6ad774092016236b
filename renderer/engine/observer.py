"""What a graph run tells whoever watches it, in the manner of kedro's hooks: the run is given an observer
and calls it at fixed points; it imports no logging or metrics of its own. This one does nothing, and is
the base of those that do (renderer/pipeline/observer.py: a script's logs and health samples)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from renderer.engine.node import Node, NodeRecord


class GraphObserver:
    def node_running(self, node: Node, total: int) -> AbstractContextManager[Any]:
        """Around all of a node's work, in its pool thread (cache read, stage function, retries, fallback,
        cache write); what it sets in its context (log tags) stays with that work. The graph has ``total``
        nodes."""
        return nullcontext()

    def node_finished(self, node: Node, record: NodeRecord) -> None:
        """The node's work is over, whatever came of it (still inside ``node_running``)."""

    def stage_finished(self, stage: str) -> None:
        """Every node of ``stage`` is over (done, cached, failed or skipped), in the run's main thread: what was
        held for that stage (the voice process for the voice stage) can be let go while the rest runs."""

    def cache_call(self, op: str) -> AbstractContextManager[dict[str, Any]]:
        """Around one call of the cache, ``op`` "get" or "put"; the yielded dict takes what the run learnt
        of it (``hit``)."""
        return nullcontext({})

    def redact(self, text: str) -> str:
        """An error's text as a record may keep it (secrets taken out)."""
        return text
