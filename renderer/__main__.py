"""``python -m renderer``: compose the config, render the batch.

Exit codes: 0 all rendered, 1 some failed (or the cluster went away: resume= finishes), 2 nothing to render, no
usable ffmpeg or no reachable cluster, 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from loguru import logger
from omegaconf import DictConfig

import renderer.config  # noqa: F401  (registers the structured config schema)
from renderer import batch, logs
from renderer.runners import RunnerError
from renderer.ffmpeg import FFmpegError

EXIT_INTERRUPTED = 130

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
_sweep: list[tuple[str, int]] = []  # (job overrides, exit code) of each multirun job


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    logs.setup(run_dir, console=True)
    batch.interrupt_on_sigterm()
    try:
        code = batch.run_batch(cfg, run_dir, overrides=list(hydra_cfg.overrides.task)).exit_code
    except KeyboardInterrupt:  # stops a sweep too
        logger.error("interrupted: work stopped and temp files removed; finished scripts are in {}", run_dir)
        sys.exit(EXIT_INTERRUPTED)
    except (FFmpegError, batch.ResumeError, RunnerError) as exc:
        logger.error("{}", exc)
        code = batch.EXIT_CANNOT_START
    if hydra_cfg.mode == RunMode.RUN:
        sys.exit(code)
    _sweep.append((" ".join(hydra_cfg.overrides.task) or "(defaults)", code))  # the sweep goes on


def _sweep_summary() -> int:
    """Multirun: one failing job does not stop the sweep; report each job and exit non-zero if any failed."""
    for overrides, code in _sweep:
        print(f"{'ok    ' if code == 0 else 'FAILED'}  {overrides}  (exit {code})", file=sys.stderr)
    return max((code for _, code in _sweep), default=0)


if __name__ == "__main__":
    try:
        main()
    finally:  # even when a sweep job raised: say how each job ended
        worst = _sweep_summary()
    sys.exit(worst)
