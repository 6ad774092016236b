"""Logging: loguru sinks in the run dir (human + JSON lines), secrets redacted and terminal escape sequences removed
before anything is written.

Every record carries correlation ids in ``extra``: ``run`` (the run dir, e.g. ``2026-11-24/10-31-07``), and
inside ``correlate(...)`` whatever it names (``script``, ``scene``, ``node``, ``stage``, ``provider``). They
live in context variables, so they follow a script into the stage threads its graph starts (the graph copies
the context into each task) and reach the health samples too (``ids()``). Standard-library logging (Hydra,
urllib3, requests, distributed) goes through loguru with the same ids.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator

from loguru import logger

from renderer.ops.files import RunLayout
from renderer.ops.secrets import secret_values
from renderer.ops.terminal_text import for_terminal

HUMAN_FORMAT = ("{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <7} | {extra[script]: <14} | {extra[node]: <12} | "
                "{message}")
LIBRARY_LEVEL = logging.INFO  # stdlib records at or above this reach the sinks (urllib3's DEBUG chatter does not)

_configured_for: str | None = None
_run_id = "-"
_ids: ContextVar[dict[str, str]] = ContextVar("renderer_log_ids", default={})


def redact(text: str) -> str:
    """Replace every API key in the environment with ***: the key as it is sent (``secrets.env_key``), which is
    also the core of the raw value, so neither form is left."""
    for value in secret_values():
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def run_id(run_dir: Path) -> str:
    """A run's id in logs and metrics: its dir relative to the outputs root, e.g. ``2026-11-24/10-31-07``."""
    run_dir = Path(run_dir)
    return f"{run_dir.parent.name}/{run_dir.name}" if run_dir.parent.name else run_dir.name


def ids() -> dict[str, str]:
    """The correlation ids in force here (run, script, node, ...), for records that are not log lines."""
    return {"run": _run_id, **_ids.get()}


@contextmanager
def correlate(**ids: Any) -> Iterator[None]:
    """Tag every log record (and health sample) made inside with ``ids``, in this thread and in the tasks it
    hands to a pool with its context (``contextvars.copy_context().run``)."""
    given = {k: str(v) for k, v in ids.items() if v is not None and v != ""}
    token = _ids.set({**_ids.get(), **given})
    try:
        with logger.contextualize(**given):
            yield
    finally:
        _ids.reset(token)


def _script_format(record: dict) -> str:
    """A script's own log: time, level, node (present whether or not ``setup`` ran in this process)."""
    record["extra"].setdefault("node", "-")
    return "{time:HH:mm:ss.SSS} | {level: <7} | {extra[node]: <12} | {message}\n{exception}"


def _patch(record: dict) -> None:
    """Every record, for every sink: secrets redacted, escape sequences gone (the console, and ``cat renderer.log``,
    show titles and messages quoting input files)."""
    record["message"] = for_terminal(redact(record["message"]))
    extra = record["extra"]
    for key, value in list(extra.items()):
        if isinstance(value, str):
            extra[key] = for_terminal(redact(value))
    extra.setdefault("run", _run_id)
    extra.setdefault("script", "-")
    extra.setdefault("node", "-")


class _InterceptHandler(logging.Handler):
    """Send stdlib logging (libraries, Hydra) through loguru, at the caller's place, tagged with its logger."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame, depth = frame.f_back, depth + 1
        logger.bind(stdlib=record.name).opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def route_stdlib() -> None:
    """Every stdlib logger into loguru: the root gets the one handler; libraries that add their own handlers
    (Hydra, distributed) hand their records up to it instead."""
    logging.basicConfig(handlers=[_InterceptHandler()], level=LIBRARY_LEVEL, force=True)
    for name in list(logging.root.manager.loggerDict):
        lib = logging.getLogger(name)
        if lib.handlers:
            lib.handlers = [h for h in lib.handlers if isinstance(h, _InterceptHandler)]
            lib.propagate = True


def setup(run_dir: Path, *, console: bool) -> None:
    """Log to the run's renderer.log and renderer.jsonl (and the console, in the main process). Idempotent."""
    global _configured_for, _run_id
    if _configured_for == str(run_dir):
        return
    _configured_for = str(run_dir)
    _run_id = run_id(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.configure(patcher=_patch, extra={"run": _run_id, "script": "-", "node": "-"})
    # diagnose=False: tracebacks never print local variables (a key could be one)
    layout = RunLayout(run_dir)
    logger.add(layout.log, format=HUMAN_FORMAT, level="DEBUG", encoding="utf-8", diagnose=False)
    logger.add(layout.log_json, serialize=True, level="DEBUG", encoding="utf-8", diagnose=False)
    if console:
        from tqdm import tqdm

        logger.add(lambda msg: tqdm.write(msg, end="", file=sys.stderr), level="INFO", colorize=True,
                   format="<level>{level: <7}</level> {message}", diagnose=False)
    route_stdlib()
    stacks_on_request()


def stacks_on_request() -> bool:
    """``kill -USR1 <pid>`` writes every thread's Python stack to this process's stderr (faulthandler: file, line
    and function only, never a value) and the process goes on: what a batch that seems stuck waits on. Whether
    it took (only the main thread can set a signal handler).

    The dump runs in a Python handler, in the main thread holding the GIL, so every other thread stands still
    while it is read. ``faulthandler.register(all_threads=True)`` dumps from inside the C signal handler while
    the other threads run, and one that pops a frame meanwhile crashes the process (seen: SIGSEGV mid-dump)."""
    if not hasattr(signal, "SIGUSR1"):
        return False
    try:
        signal.signal(signal.SIGUSR1, _write_stacks)
    except ValueError:  # not the main thread
        return False
    return True


def _write_stacks(_signum: int, _frame: Any) -> None:
    """Straight to stderr's file descriptor: the handler may have stopped the main thread in the middle of a write
    to ``sys.stderr``, whose buffer must not be touched again from here (a reentrant call raises)."""
    with suppress(OSError, ValueError, AttributeError):  # no stderr to write to: nothing to say it on
        faulthandler.dump_traceback(file=sys.stderr.fileno(), all_threads=True)


@contextmanager
def script_log(path: Path, slug: str) -> Iterator[None]:
    """While inside, ``path`` gets the log records of script ``slug`` (from every thread of this process)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sink = logger.add(path, format=_script_format, level="DEBUG", encoding="utf-8", mode="w", diagnose=False,
                      filter=lambda record: record["extra"].get("script") == slug)
    try:
        yield
    finally:
        logger.remove(sink)
