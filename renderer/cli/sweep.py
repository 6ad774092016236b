"""Sweeps (``python -m renderer -m ...``): the launchers' schemas for conf/hydra/launcher/, and the summary of
how each job ended, whichever launcher ran it (here, joblib processes, submitit jobs on SLURM): read back from
the jobs' run dirs once the sweep is over, since a job run elsewhere leaves nothing in this process."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from renderer.ops.exits import Exit
from renderer.ops.files import RunLayout

# Not news: conf/hydra/launcher/joblib.yaml (and the submitit ones) extend the plugin's schema explicitly
# (register_launchers); that each file is also named like the plugin's own config is the point
# (hydra/launcher=joblib). Set at import because a joblib sweep job composes its config in a fresh worker
# process that imports renderer.__main__ (the task function's globals), and with it this module, first.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")

results: list[tuple[str, int]] = []  # (job overrides, exit code) of the last sweep of this process


def register_launchers() -> None:
    """The launcher plugins' own schemas under ``<name>_schema``, for conf/hydra/launcher/<name>.yaml to extend
    (a file named like the plugin's config replaces it: Hydra reads the config dir first)."""
    from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
    from hydra_plugins.hydra_submitit_launcher.config import (
        LocalQueueConf,
        SlurmQueueConf,
    )

    cs = ConfigStore.instance()
    for name, schema in {"joblib": JobLibLauncherConf, "submitit_local": LocalQueueConf,
                         "submitit_slurm": SlurmQueueConf}.items():
        # as plain data: Hydra's plugin scan loads these modules again, and two copies of a class do not merge
        cs.store(group="hydra/launcher", name=f"{name}_schema", provider="renderer",
                 node=OmegaConf.to_container(OmegaConf.structured(schema)))


def job_exit_code(job_dir: Path) -> int:
    """A job's exit code from its manifest, as ``BatchResult.exit_code`` reckons it (no manifest: it could not
    start)."""
    from renderer.batch import BatchResult

    try:
        manifest = json.loads(RunLayout(job_dir).manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Exit.CANNOT_START
    return BatchResult(job_dir, manifest).exit_code


def summarize(sweep_dir: Path) -> list[tuple[str, int]]:
    """(overrides, exit code) of every job under ``sweep_dir``, in job order."""
    jobs = [RunLayout(d) for d in (sweep_dir.iterdir() if sweep_dir.is_dir() else ())]
    jobs = sorted((job for job in jobs if job.overrides.is_file()), key=lambda job: _job_order(job.run_dir.name))
    return [(" ".join(OmegaConf.load(job.overrides)) or "(defaults)", job_exit_code(job.run_dir)) for job in jobs]


def _job_order(name: str) -> tuple[bool, int, str]:
    """Hydra's job dirs 0, 1, ... 10 in number order; any other dir after them."""
    return not name.isdigit(), int(name) if name.isdigit() else 0, name


class SweepSummary(Callback):
    """Once every job of a multirun is done: one line per job on stderr; ``results`` for the exit code."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        results[:] = summarize(Path(config.hydra.sweep.dir))
        for overrides, code in results:
            print(f"{'ok    ' if code == 0 else 'FAILED'}  {overrides}  (exit {code})", file=sys.stderr)


register_launchers()
