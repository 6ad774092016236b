"""``python -m renderer.watch``: render one script, then re-render it on every save.

Usage::

    python -m renderer.watch SCRIPT [--out DIR] [hydra overrides ...]
    python -m renderer.watch scripts/descent.txt +experiment=draft theme=matrix

The config is composed from ``conf/`` with the same overrides as ``python -m renderer`` (``batch.n_jobs=1``
unless given: the one script gets every core). The video lands in ``<out>/<slug>/<slug>.mp4`` (``--out``
defaults to ``outputs/watch``), logs in ``<out>/renderer.log``, work files under ``<out>/tmp``. The stage
cache makes a re-render redo only the nodes whose inputs changed; after each render one line on stdout says
how long the refresh took and what was redone::

    refreshed in 2.4 s: outputs/watch/descent/descent.mp4 (3:16; redone: voice/4, narration/4, soundtrack, mux)

A save that breaks the script prints its errors (``file:line: message — hint``) on stderr and keeps the last
good video; watching goes on. Ctrl-C or SIGTERM stops running ffmpeg processes and exits with 130.
Exit code 2: a bad override, no usable ffmpeg, or ``--out`` in use by another watcher or batch (the message
names it: pid, host, start time). The watcher owns its ``--out`` dir while it runs and removes only what the
renderer names there.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator

import watchfiles
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from renderer import batch
from renderer.config import CONF_MODULE  # importing the schema registers it with Hydra
from renderer.engine.cache import Cache
from renderer.media import ffmpeg
from renderer.ops import logs, run_lock
from renderer.ops.exits import Exit
from renderer.ops.files import RunLayout, slugify
from renderer.ops.terminal_text import for_terminal
from renderer.pipeline.render import render_script
from renderer.providers.voice_server import VoiceClient
from renderer.script import format_time

QUIET_MS = 250  # a save is handled once the directory has been quiet this long (editors write, then rename)
MAX_GROUP_MS = 1500  # ... or after this long, if it never goes quiet
POLL_MS = 1000  # how often the script's mtime is checked too (a save the watcher missed: one during start-up)
WORKED = ("ok", "fallback")  # node statuses that did work (the rest: cached, skipped, failed)


# --- config -------------------------------------------------------------------------------------------------
def with_single_job(overrides: list[str]) -> list[str]:
    """The overrides, plus ``batch.n_jobs=1`` unless the user set it."""
    given = any(o.lstrip("+~").startswith("batch.n_jobs=") for o in overrides)
    return overrides if given else [*overrides, "batch.n_jobs=1"]


def compose_config(overrides: list[str]) -> DictConfig:
    """The renderer config from ``conf/`` as ``python -m renderer`` would build it; ``cache.dir`` absolute."""
    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        cfg = compose("config", overrides=with_single_job(overrides))
    cfg.cache.dir = str(Path(cfg.cache.dir).absolute())
    return cfg


def hydra_message(exc: Exception) -> str:
    """Hydra's message, with the reason it wraps (as its command line shows it)."""
    cause = exc.__cause__
    return f"{exc}\n{cause}" if cause and str(cause) not in str(exc) else str(exc)


# --- reporting ----------------------------------------------------------------------------------------------
def shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def redone(stages: list[dict[str, Any]]) -> str:
    """The nodes that did work, in graph order; several of one stage as ``segment ×9``."""
    worked = [s for s in stages if s["status"] in WORKED]
    per_stage = Counter(s["stage"] for s in worked)
    parts: list[str] = []
    for s in worked:
        part = s["name"] if per_stage[s["stage"]] == 1 else f"{s['stage']} ×{per_stage[s['stage']]}"
        if part not in parts:
            parts.append(part)
    return f"redone: {', '.join(parts)}" if parts else "nothing changed"


def first_line(text: str, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def say(text: str, *, err: bool = False) -> None:
    """One line for the user; what it quotes of the script (titles, messages) cannot drive the terminal."""
    print(for_terminal(text), file=sys.stderr if err else sys.stdout, flush=True)


def report_notes(record: dict[str, Any]) -> None:
    """Warnings and fallbacks of a render, one short line each (the details are in renderer.log)."""
    for issue in record.get("issues", []):
        if issue["severity"] != "error":
            say(f"warning: {first_line(issue['message'])}", err=True)
    for warning in record.get("warnings", []):
        say(f"warning: {first_line(str(warning))}", err=True)
    for fb in record.get("fallbacks", []):
        say(f"fallback: {fb.get('node', '?')} -> {fb.get('to', '?')}: {first_line(str(fb.get('reason', '')))}",
            err=True)


def report_failure(record: dict[str, Any], video: Path) -> None:
    """The script's errors (or the render's), and whether an earlier video is still there."""
    errors = [i for i in record.get("issues", []) if i["severity"] == "error"]
    for issue in errors:
        say(f"{issue['message']} — {issue['hint']}", err=True)
    if not errors:
        say(f"render failed: {record.get('error') or 'unknown error'}", err=True)
    if video.exists():
        say(f"keeping the last good video: {shown(video)}", err=True)
    else:
        say("no video yet: fix the script and save again", err=True)


def report(record: dict[str, Any], video: Path, since: float) -> None:
    report_notes(record)
    if record["status"] != "ok":
        report_failure(record, video)
        return
    took = time.time() - since
    say(f"refreshed in {took:.1f} s: {shown(video)} ({format_time(record.get('duration') or 0)}; "
        f"{redone(record.get('stages', []))})")


# --- rendering ----------------------------------------------------------------------------------------------
class Watcher:
    """One script, one run dir; ``render`` once per save."""

    def __init__(self, script: Path, cfg: DictConfig, out: Path):
        self.script = script
        self.cfg = cfg
        self.layout = RunLayout(out)
        self.slug = slugify(script.stem)
        self.rendered_stat: tuple[int, int, int] | None = None
        self.render_started = 0.0

    @property
    def video(self) -> Path:
        return self.layout.video(self.slug)

    def stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.script.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def changed_since_render(self) -> bool:
        return self.stat() != self.rendered_stat

    def saved_at(self) -> float:
        """When the script was last saved: its mtime, unless that is older than the last render's start
        (``cp -p``, ``touch -d``) or in the future; then now."""
        now, stat = time.time(), self.stat()
        mtime = stat[0] / 1e9 if stat else now
        return mtime if self.render_started <= mtime <= now else now

    def render(self, since: float) -> None:
        """Render the script as it is now and say how it went; ``since``: when the save (or start) was."""
        self.render_started = time.time()
        self.rendered_stat = self.stat()
        if self.rendered_stat is None:
            say(f"{self.script} is gone: waiting for it to be saved again", err=True)
            return
        with Cache(self.cfg.cache.dir).in_use() if self.cfg.cache.enabled else nullcontext():
            record = render_script(self.script, self.slug, self.cfg, self.layout)
        report(record, self.video, since)


def saves(script: Path) -> Iterator[bool]:
    """Yields True for each save of ``script`` and False every POLL_MS without one. The parent directory is
    watched (editors save by writing a temp file and renaming it over the script)."""
    for changes in watchfiles.watch(script.parent, watch_filter=lambda _change, path: Path(path).name == script.name,
                                    debounce=MAX_GROUP_MS, step=QUIET_MS, rust_timeout=POLL_MS,
                                    yield_on_timeout=True, recursive=False, raise_interrupt=True):
        yield bool(changes)


def watch(watcher: Watcher, started: float) -> None:
    """Render now, then after every save; a save the watcher could not see is caught by the mtime check."""
    watcher.render(since=started)
    for saved in saves(watcher.script):
        if saved or watcher.changed_since_render():
            watcher.render(since=watcher.saved_at())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m renderer.watch", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", type=Path, help="the script to render and watch")
    parser.add_argument("--out", type=Path, default=Path("outputs/watch"), help="run dir (default outputs/watch)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for python -m renderer")
    return parser.parse_intermixed_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    args = parse_args(argv)
    script = args.script.absolute()
    if not script.is_file():
        say(f"{args.script}: no such file", err=True)
        return Exit.CANNOT_START
    try:
        cfg = compose_config(args.overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        say(hydra_message(exc), err=True)
        return Exit.CANNOT_START
    if not cfg.cache.enabled:
        say("warning: cache.enabled=false: every save re-renders everything", err=True)
    out = args.out.absolute()
    try:
        run_lock.acquire(out, "watch")  # held until this process ends
    except run_lock.RunDirInUse as exc:
        say(f"error: {exc}", err=True)
        return Exit.CANNOT_START
    try:
        return _watch(args, script, cfg, out, started)
    finally:
        run_lock.release(out)


def _watch(args: argparse.Namespace, script: Path, cfg: DictConfig, out: Path, started: float) -> int:
    logs.setup(out, console=False)
    batch.interrupt_on_sigterm()
    watcher = Watcher(script, cfg, out)
    # piper's voice process would exit after each render's narration: held while watching, a save speaks at once
    voice = VoiceClient(cfg.voice.server_idle_s) if cfg.voice.get("server_idle_s", 0) > 0 else None
    try:
        ffmpeg.configure(ffmpeg_path=cfg.ffmpeg.path, ffprobe_path=cfg.ffmpeg.probe_path)
        ffmpeg.check_features()
        say(f"watching {args.script} (Ctrl-C to stop)")
        if voice is not None:
            voice.hold()
        watch(watcher, started)
    except ffmpeg.FFmpegError as exc:
        say(f"{exc}", err=True)
        return Exit.CANNOT_START
    except KeyboardInterrupt:
        say("stopped", err=True)
        return Exit.INTERRUPTED
    finally:
        if voice is not None:
            voice.release()
        ffmpeg.kill_all()
        batch.clean_leftovers(watcher.layout)
    return Exit.OK
