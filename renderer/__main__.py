"""``python -m renderer``: compose the config, render the batch.

Exit codes: 0 all rendered, 1 some failed (or the cluster went away: resume= finishes), 2 nothing to render, no
usable ffmpeg, no reachable cluster or a run dir in use (renderer/cli/run_dir.py), 130 interrupted.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from loguru import logger
from omegaconf import DictConfig

from renderer.cli import sweep  # registers the launchers' schemas
from renderer.config import CONF_MODULE  # importing the schema registers it with Hydra
from renderer.ops.exits import Exit


@hydra.main(version_base="1.3", config_path="pkg://" + CONF_MODULE, config_name="config")
def main(cfg: DictConfig) -> None:
    # imported here, not at the top: `--cfg job`, `--help` and tab completion never load the batch machinery
    # (the voice is warmed up before this, by renderer.cli.warm_up)
    from renderer import batch
    from renderer.media.ffmpeg import FFmpegError
    from renderer.ops import logs
    from renderer.ops.endpoints import MonitorError
    from renderer.runners import RunnerError

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    logs.setup(run_dir, console=True)
    batch.interrupt_on_sigterm()
    try:
        code = batch.run_batch(cfg, run_dir, overrides=list(hydra_cfg.overrides.task)).exit_code
    except KeyboardInterrupt:  # stops a sweep too
        logger.error("interrupted: work stopped and temp files removed; finished scripts are in {}", run_dir)
        sys.exit(Exit.INTERRUPTED)
    except (FFmpegError, batch.CannotStart, MonitorError, RunnerError) as exc:
        logger.error("{}", exc)
        code = Exit.CANNOT_START
    if hydra_cfg.mode == RunMode.RUN:
        sys.exit(code)
    # multirun: the sweep goes on; renderer.cli.sweep.SweepSummary reports each job once all are done


def run() -> None:
    """``python -m renderer`` and the ``renderer`` command."""
    try:
        main()
        sys.exit(max((code for _, code in sweep.results), default=Exit.OK))  # a sweep with a failed job fails
    finally:
        # every output is written and closed: the interpreter's last collection would only walk the ~700
        # modules' objects on the way out (~0.1 s of every command, an edit's 3 %)
        gc.freeze()


if __name__ == "__main__":
    run()
