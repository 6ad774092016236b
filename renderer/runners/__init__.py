"""The batch's runners, one interface (``Runner``): sequential, joblib/loky processes, Dask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from renderer.reliability import RunState
from renderer.runners.base import Runner, RunnerError, Task, local_state

__all__ = ["Runner", "RunnerError", "Task", "runner_for", "shared_state"]


def shared_state(cfg: Any, run_dir: Path) -> RunState:
    """Where a run's breakers and API slots live for every worker: on the cluster with batch.backend=dask,
    else in files under its tmp dir."""
    if cfg.batch.backend == "dask":
        from renderer.runners.cluster_state import ClusterRunState

        return ClusterRunState(run_dir)
    return local_state(run_dir)


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
