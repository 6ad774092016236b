"""``python -m renderer``'s run dir, claimed before Hydra writes anything into it (a Hydra callback, listed in
conf/config.yaml): a timestamped dir (the default ``outputs/<date>/<time>``) that is taken already gets a
suffix (``10-31-07-2``), so two batches (or sweeps) started in the same second never share one; a dir named outright
(``hydra.run.dir=``, ``resume=``) is locked (renderer/ops/run_lock.py) and one in use stops the command with
exit code 2, naming its holder. The lock is held until the process ends; the batch holds it too
(``run_batch``), for callers that start it without this command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from renderer.ops import run_lock
from renderer.ops.exits import Exit

TIMESTAMPED = "${now:"  # a dir named after the start time: one per run, made unique when taken


def fresh_dir(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3`` ...: the first that this call creates (mkdir is atomic: two
    processes never both make one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = path, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = path.with_name(f"{path.name}-{n}")


def _claim(config: DictConfig, key: str, what: str) -> None:
    """Give ``config``'s ``hydra.<key>.dir`` to this process: a fresh one if timestamped, else lock it."""
    node = config.hydra[key]
    raw = str(OmegaConf.to_container(node, resolve=False)["dir"])
    path = Path(node.dir)
    fresh = TIMESTAMPED in raw and not config.get("resume")
    if fresh:
        path = fresh_dir(path)
        with read_write(node), open_dict(node):
            node.dir = str(path)
    if key == "sweep":  # each job composes its config again from the overrides, and locks its dir in run_batch
        if fresh:
            _pin_override(config, f"hydra.sweep.dir={_quoted(str(path))}")
        return
    try:
        run_lock.acquire(path, what)
    except run_lock.RunDirInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(Exit.CANNOT_START)


def _quoted(value: str) -> str:
    """``value`` as one quoted string of Hydra's override grammar (no interpolation in it)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _pin_override(config: DictConfig, override: str) -> None:
    """Put ``override`` among the run's Hydra overrides, replacing one of the same key."""
    key = override.split("=", 1)[0]
    overrides = config.hydra.overrides
    with read_write(overrides), open_dict(overrides):
        overrides.hydra = [o for o in overrides.hydra if o.split("=", 1)[0] != key] + [override]


class ClaimRunDir(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _claim(config, "run", "resume" if config.get("resume") else "batch")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        run_lock.release(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _claim(config, "sweep", "sweep")

