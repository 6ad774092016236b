"""Logging: loguru sinks in the run dir (human + JSON lines), secrets redacted before anything is written."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from loguru import logger

SECRET_ENV_VARS = ("ELEVENLABS_API_KEY", "RUNWAY_API_KEY")
HUMAN_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {extra[script]: <14} | {message}"

_configured_for: str | None = None

# Not news: conf/hydra/launcher/joblib.yaml (and the submitit ones) extend the plugin's schema explicitly
# (renderer/sweep.py); that each file is also named like the plugin's own config is the point
# (hydra/launcher=joblib). Set here because a joblib sweep job composes its config in a fresh worker process
# that imports this module (the task function's globals) before anything else of the renderer.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")


def redact(text: str) -> str:
    """Replace the value of every secret in the environment with ***."""
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _patch(record: dict) -> None:
    record["message"] = redact(record["message"])
    record["extra"].setdefault("script", "-")


class _InterceptHandler(logging.Handler):
    """Send stdlib logging (libraries, Hydra) through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def setup(run_dir: Path, *, console: bool) -> None:
    """Log to <run_dir>/renderer.log and renderer.jsonl (and the console, in the main process). Idempotent."""
    global _configured_for
    if _configured_for == str(run_dir):
        return
    _configured_for = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.configure(patcher=_patch, extra={"script": "-"})
    # diagnose=False: tracebacks never print local variables (a key could be one)
    logger.add(run_dir / "renderer.log", format=HUMAN_FORMAT, level="DEBUG", encoding="utf-8", diagnose=False)
    logger.add(run_dir / "renderer.jsonl", serialize=True, level="DEBUG", encoding="utf-8", diagnose=False)
    if console:
        from tqdm import tqdm

        logger.add(lambda msg: tqdm.write(msg, end="", file=sys.stderr), level="INFO", colorize=True,
                   format="<level>{level: <7}</level> {message}", diagnose=False)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.WARNING, force=True)
