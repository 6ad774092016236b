"""Where a run's circuit breakers and API slots live, so every worker of the run shares them: on the Dask
cluster with ``batch.backend=dask``, else in flock'ed files under the run's tmp dir."""

from __future__ import annotations

from pathlib import Path

from renderer.ops.cluster_state import ClusterRunState
from renderer.ops.files import RunLayout
from renderer.ops.reliability import FileRunState, RunState


def local_state(run_dir: Path) -> FileRunState:
    """A run's breakers and API slots for the workers of one machine: files under its tmp dir."""
    return FileRunState(RunLayout(run_dir).breakers)


def shared_state(backend: str, run_dir: Path) -> RunState:
    """The run's shared state for ``batch.backend``: on the cluster for ``dask``, else ``local_state``."""
    return ClusterRunState(run_dir) if backend == "dask" else local_state(run_dir)
