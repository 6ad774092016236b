"""A script's graph run as its logs and health samples tell it (the engine's ``GraphObserver``, with ops)."""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from typing import Any, Callable, Iterator

from loguru import logger

from renderer.engine.node import Node, NodeRecord
from renderer.engine.observer import GraphObserver
from renderer.ops import health, logs


class ScriptObserver(GraphObserver):
    """Every record a node's work logs (and every sample it takes) is tagged with its node, stage and scene;
    the live view sees it running; a debug line says how it ended; cache calls are samples of the service
    "cache"; error texts lose their secrets. ``stage_over(stage)`` is told when a stage's last node is over
    (the providers let go of what they held for it)."""

    def __init__(self, stage_over: Callable[[str], None] | None = None):
        self.stage_over = stage_over

    @contextmanager
    def node_running(self, node: Node, total: int) -> Iterator[None]:
        with logs.correlate(node=node.name, stage=node.stage, scene=node.scene), \
                health.node_running(node.name, total):
            yield

    def node_finished(self, node: Node, record: NodeRecord) -> None:
        logger.bind(provider=record.provider).debug("{}: {} in {:.2f} s{}", node.name, record.status, record.seconds,
                                                    f" ({record.provider})" if record.provider else "")

    def stage_finished(self, stage: str) -> None:
        if self.stage_over is not None:
            self.stage_over(stage)

    def cache_call(self, op: str) -> AbstractContextManager[dict[str, Any]]:
        return health.timed("cache", "cache", op=op)

    def redact(self, text: str) -> str:
        return logs.redact(text)
