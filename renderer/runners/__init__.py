"""The batch's runners, one interface (``Runner``): sequential, joblib/loky processes, Dask."""

from __future__ import annotations

from typing import Any

from renderer.runners.base import Runner, RunnerError, Task

__all__ = ["Runner", "RunnerError", "Task", "runner_for"]


def runner_for(batch_cfg: Any) -> Runner:
    """The runner ``batch.backend`` names: sequential, dask, or a joblib backend (loky, threading)."""
    if batch_cfg.backend == "sequential":
        from renderer.runners.local import SequentialRunner

        return SequentialRunner()
    if batch_cfg.backend == "dask":
        from renderer.runners.dask import DaskRunner

        return DaskRunner(batch_cfg.dask)
    from renderer.runners.local import JoblibRunner

    return JoblibRunner(batch_cfg.backend)
