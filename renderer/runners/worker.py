"""The worker side of every runner: what one worker does with one script (plain data in, a record out),
how a pooled worker process (loky) handles the stop signals of an interrupted batch, and the run's roll of
workers that lets the batch find them to stop."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator, Mapping

import psutil
from loguru import logger
from omegaconf import OmegaConf

from renderer.engine.node import SlotExecutor
from renderer.media import ffmpeg
from renderer.ops import health, logs, reliability
from renderer.ops.files import RunLayout, write_text_atomic
from renderer.pipeline.render import render_script


def interrupt_on_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C, so one cleanup path serves both (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


class _Worker:
    """This process as a worker of the batch's process pool (see ``init_worker``)."""

    pooled = False  # the pool's initializer ran here: SIGTERM / SIGINT are handled by ``_stop_worker``
    rendering = False  # a script is being rendered: a stop signal interrupts it
    stopping = False  # a stop signal came (``_stop_worker`` ran): this worker starts no script any more


def _stop_worker(signum: int, frame: Any) -> None:
    """SIGTERM / SIGINT in a pool worker. The first one interrupts the script being rendered (KeyboardInterrupt:
    its graph cancels its cloud tasks and stops its tools, render_script records it cancelled); any later one
    (the parent's SIGTERM after a Ctrl-C the terminal sent everyone) is ignored, so it cannot cut that cleanup
    short. Between scripts, the worker only notes it is stopping: it stays alive, for joblib to collect, and
    renders nothing more (a worker dying here would make loky kill its busy siblings at once).
    No locks here: a second signal runs this again in the middle of the first call."""
    first, _Worker.stopping = not _Worker.stopping, True
    if first and _Worker.rendering:
        raise KeyboardInterrupt


def _relay_stop_signals(read_fd: int, main_thread: int) -> None:
    """Make sure a stop signal reaches the main thread's handler. Python runs handlers in the main thread only,
    when it next runs bytecode: a signal the kernel gave another thread (or one that came just before the main
    thread blocked) leaves it asleep in the graph's wait, maybe for the whole task. Every signal's number comes
    through the wakeup fd; after a stop signal, the main thread is signalled itself (pthread_kill interrupts its
    wait) until its handler has run."""
    while chunk := os.read(read_fd, 64):
        if not {signal.SIGINT, signal.SIGTERM}.intersection(chunk):
            continue
        for relayed in range(100):  # 5 s at most: by then the parent has killed this worker anyway
            time.sleep(0.05)
            if _Worker.stopping:
                if relayed:
                    logger.debug("the stop signal was relayed to the main thread ({} time(s))", relayed)
                break
            signal.pthread_kill(main_thread, signal.SIGTERM)


def init_worker() -> None:
    """The process pool's initializer, run in each worker (in its main thread) before anything else."""
    _Worker.pooled = True
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_worker)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_relay_stop_signals, args=(read_fd, threading.get_ident()), name="stop-signals",
                     daemon=True).start()


def render_in_worker(plain_cfg: dict, path: str, slug: str, run_dir: str,
                     executors: Mapping[str, SlotExecutor] | None = None) -> dict[str, Any]:
    """Runs in a worker (of any runner): it gets plain data and builds its own config, loggers and providers;
    ``executors`` run a slot's nodes elsewhere (see ``Graph.run``)."""
    if not _Worker.pooled:  # in this process (n_jobs=1, sequential, threading): SIGTERM is a Ctrl-C
        interrupt_on_sigterm()
    _Worker.rendering = True
    try:
        if _Worker.stopping:  # told to stop before this script began: it does not start
            raise KeyboardInterrupt
        logs.setup(Path(run_dir), console=False)
        health.attach(Path(run_dir))
        cfg = OmegaConf.create(plain_cfg)
        ffmpeg.configure(ffmpeg_path=cfg.ffmpeg.path, ffprobe_path=cfg.ffmpeg.probe_path)
        return render_script(Path(path), slug, cfg, RunLayout(Path(run_dir)), executors)
    finally:
        _Worker.rendering = False


class Roll:
    """Who renders a run's scripts, as files in its ``tmp/workers/``: what lets an interrupted batch stop its
    workers gracefully without reaching into the pool's internals. A process puts itself on the roll when it
    takes a script (``<pid>``: its start time, which tells it from a later process given the same pid), and a
    thread marks each script while it renders it (``<pid>.<thread>``: the slug). Best effort: a worker that
    cannot write here is only killed by its pool, as without the roll."""

    def __init__(self, run_dir: Path):
        self.dir = RunLayout(run_dir).workers

    @contextmanager
    def rendering(self, slug: str) -> Iterator[None]:
        """This thread renders ``slug`` meanwhile."""
        me, marker = self.dir / str(os.getpid()), self.dir / f"{os.getpid()}.{threading.get_ident()}"
        with suppress(OSError):
            self.dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(me, repr(psutil.Process().create_time()))  # over a file a dead namesake left
            marker.write_text(slug, encoding="utf-8")
        try:
            yield
        finally:
            with suppress(OSError):
                marker.unlink(missing_ok=True)

    def workers(self) -> dict[int, psutil.Process]:
        """The processes on the roll that still run (this one among them, for a pool of threads)."""
        found: dict[int, psutil.Process] = {}
        for path in self.dir.glob("[0-9]*"):
            if not path.name.isdigit():
                continue
            try:
                started, process = float(path.read_text()), psutil.Process(int(path.name))
                if abs(process.create_time() - started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE:
                    found[process.pid] = process
            except (OSError, ValueError, psutil.Error):  # gone, or half written
                continue
        return found

    def scripts(self, workers: Mapping[int, psutil.Process]) -> list[tuple[int, str]]:
        """(pid, slug) of each script ``workers`` are rendering, but for this thread's own."""
        own = f"{os.getpid()}.{threading.get_ident()}"
        found = []
        for path in self.dir.glob("[0-9]*.*"):
            pid, _, thread = path.name.partition(".")
            if pid.isdigit() and thread.isdigit() and int(pid) in workers and path.name != own:
                with suppress(OSError):
                    found.append((int(pid), path.read_text(encoding="utf-8")))
        return sorted(found)


def render_on_roll(plain_cfg: dict, path: str, slug: str, run_dir: str) -> dict[str, Any]:
    """``render_in_worker``, with this worker on the run's roll while it renders (a pool's worker). A pool's
    thread starts no script once its process was cancelled (a stopping batch), as a stopping process does not."""
    with Roll(Path(run_dir)).rendering(slug):
        if reliability.cancelled():
            raise KeyboardInterrupt("cancelled before it began")
        return render_in_worker(plain_cfg, path, slug, run_dir)
