"""The voice warmed up as soon as Hydra has composed the config (a Hydra callback, listed in conf/config.yaml
after the run dir's claim): piper's voice process starts and loads its model while Hydra sets the job up and
the batch machinery is imported, ~0.25 s sooner than from the task function. Its model takes ~1 s from the
process's start to its first sentence, and an edit reaches that sentence ~0.8 s after the config is
composed: from the task function, the edit's first sentence waited ~0.35 s for it."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig


def warm_up(config: DictConfig) -> None:
    if config.batch.backend == "dask":  # the voice process belongs where the workers are
        return
    from renderer.providers import chain

    chain.warm_up(config)


class WarmUpVoice(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        warm_up(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:  # a sweep's job, in its launcher's process, with its own config
            warm_up(config)
