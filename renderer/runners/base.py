"""The interface every runner of the batch has (kedro's AbstractRunner is the model): it is a context
(a cluster is started or joined on entry, left on exit), says how many scripts share one machine's cores,
checks that its workers see the run's files, and renders tasks, yielding each record as its script finishes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator

from omegaconf import DictConfig

from renderer.ops.reliability import RunState
from renderer.ops.run_state import local_state

Records = Generator[dict[str, Any], None, None]


@dataclass(frozen=True)
class Task:
    """One script to render: its absolute path and its slug in the run."""

    path: str
    slug: str


class RunnerError(RuntimeError):
    """The runner cannot start, its workers cannot see the run's files, or it lost its cluster; the message
    says what to do."""


class Runner(ABC):
    name = ""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Let go of what ``__enter__`` took (a cluster, a client)."""

    @abstractmethod
    def jobs(self, cfg: DictConfig, scripts: int) -> int:
        """How many scripts render at once on one machine: each script's share of its cores is reckoned from it."""

    def shared_state(self, run_dir: Path) -> RunState:
        """Where this runner's workers keep the run's breakers and API slots, as the batch can read them."""
        return local_state(run_dir)

    def check_shared(self, dirs: dict[str, Path], inputs: list[Path]) -> None:
        """Raise RunnerError unless every worker can write and read ``dirs`` (by name) and read ``inputs``.
        Local runners work in this machine's filesystem: nothing to check."""

    @abstractmethod
    def run(self, plain_cfg: dict, tasks: list[Task], run_dir: Path) -> Records:
        """Render ``tasks`` with ``plain_cfg``; yield each script's record as it finishes. Closing the generator
        (an interruption) stops the work still in flight before it returns."""
