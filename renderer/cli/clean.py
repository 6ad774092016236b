"""Remove old run directories from the outputs folder.

    python -m renderer.clean --older-than 7d [--outputs outputs] [--dry-run] [--keep N] [--grace 10m]

What counts as a run: a directory at a Hydra run position, ``<outputs>/<date>/<time>/`` or
``<outputs>/multirun/<date>/<time>/<job>/``, that the renderer made: it holds a renderer ``manifest.json`` (a
JSON object with ``started`` and ``scripts``), the renderer's run lock (``.renderer.lock``) or a
``.hydra/hydra.yaml`` whose job is ``renderer`` (other Hydra apps share ``outputs/``: their runs are not ours).
Nothing else is ever removed: not other folders or files at those positions, not ``<outputs>/.cache`` (the
stage cache: ``python -m renderer.cache prune``), not ``<outputs>/watch``, nor anything hidden, nor symlinks. The only extras that go are the folders a removal
leaves empty (a date folder; a multirun sweep folder left holding only Hydra's ``multirun.yaml``).

A run's age is its manifest's ``finished`` time or, when it has none (unfinished, interrupted, no manifest),
the newest mtime of anything inside it. ``--keep N`` keeps the newest N runs whatever their age.

A run that may still be running is never removed. ``finished: null`` alone says nothing (a run killed with
-9 or by a power cut keeps it for ever) and a fresh ``renderer.log`` alone misses a run that is quiet for a
while (one long encode or cloud request logs nothing), so a run counts as *in use*, whatever its manifest
says, when either

* anything inside it was modified within ``--grace`` (default 10m; a time in the future counts too: clock
  skew, a network file system), which also covers a ``resume=`` that is starting and has not yet reset
  ``finished``; or
* a process on this machine has a file open in it (the renderer keeps ``renderer.log`` open for the whole
  run, its workers too) or its working directory in it.

The process check sees only this machine, and only processes this user may inspect (all of them as root): a
run on another host writing to a shared disk is protected by the mtime rule only. Runs in use are kept,
with the reason on stderr when their age alone would have removed them, and do not count toward ``--keep``.
A run that holds a stage cache named in any manifest's ``cache_dir`` is kept too.

Right before each removal the run is checked again: clean takes the run's lock (a run that started
meanwhile keeps it: the run is kept) and looks at its newest mtime again, then renames it while holding the
lock, so a batch or ``resume=`` can never start in a run being removed. Removal survives a crash midway: the
run is renamed to a hidden ``.<name>.deleting`` sibling (one atomic
rename, so a run is either whole or marked for deletion), then deleted; every clean first finishes the
leftovers of one that was interrupted.

Output: a line per removed (or, with ``--dry-run``, would-be-removed) run with its size, then the total.
Exit codes: 0 done, 1 some run could not be removed (see stderr; what is left is finished by the next clean),
2 bad arguments or no outputs folder, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from omegaconf import OmegaConf

from renderer.ops import run_lock
from renderer.ops.exits import Exit
from renderer.ops.files import RunLayout, TreeStats, fsync_dir, human, tree_stats

MULTIRUN = "multirun"
RESERVED = {MULTIRUN, "watch"}  # top-level folders that are not date folders (hidden ones, like .cache, too)
SWEEP_FILE = "multirun.yaml"  # Hydra's record of a sweep, beside its job dirs
LEFTOVER = re.compile(r"\..+\.deleting")
DEFAULT_GRACE = 600.0
JOB_NAME = "renderer"  # hydra.job.name of the renderer's runs (conf/config.yaml)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'30m', '12h', '7d', '2w' (also '90s', '1.5d') -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text, re.I)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use a number and a unit: 30m, 12h, 7d, 2w)")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


def _non_negative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"not a count: {text!r} (a whole number, 0 or more)")
    return n


_AGO_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def ago(seconds: float) -> str:
    """3725 -> '1h 2m', 7205 -> '2h': the largest unit and, when not zero, the next one."""
    seconds = max(0, int(seconds))
    for i, (unit, size) in enumerate(_AGO_UNITS):
        if seconds >= size or unit == "s":
            text = f"{seconds // size}{unit}"
            if i + 1 < len(_AGO_UNITS):
                next_unit, next_size = _AGO_UNITS[i + 1]
                if rest := seconds % size // next_size:
                    text += f" {rest}{next_unit}"
            return text
    return "0s"


# --------------------------------------------------------------------------- finding runs


def _dirs(parent: Path) -> list[Path]:
    """Visible real directories in ``parent`` (no symlinks), sorted."""
    try:
        return sorted(p for p in parent.iterdir() if not p.name.startswith(".") and p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _containers(outputs: Path) -> list[Path]:
    """Folders whose children are run dirs: date folders, and multirun sweep folders."""
    dates = [d for d in _dirs(outputs) if d.name not in RESERVED]
    sweeps = [t for d in _dirs(outputs / MULTIRUN) for t in _dirs(d)]
    return dates + sweeps


def _read_manifest(run: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(RunLayout(run).manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_renderer_manifest(data: dict[str, Any] | None) -> bool:
    return data is not None and "started" in data and isinstance(data.get("scripts"), dict)


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()  # the renderer writes UTC with its offset
    except ValueError:
        return None


@dataclass
class Run:
    path: Path
    state: str  # finished | unfinished (finished: null) | unknown (no readable manifest or finish time)
    finished: float | None
    tree: TreeStats
    cache_dir: Path | None = None
    busy: str = ""  # why it counts as in use ("" if it does not)
    decision: str = ""  # remove | keep
    reason: str = ""
    notice: bool = False  # kept although its age alone would have removed it: say why

    @property
    def when(self) -> float:
        """The time its age is counted from."""
        if self.finished is not None:
            return self.finished
        return self.tree.newest_mtime or 0.0

    def describe(self, now: float) -> str:
        if self.state == "finished":
            return f"finished {ago(now - self.when)} ago"
        what = "interrupted" if self.state == "unfinished" else "no finish time"
        return f"{what}, last written {ago(now - self.when)} ago"


def _hydra_job_name(path: Path) -> str | None:
    """The job name in a run's ``.hydra/hydra.yaml`` (``renderer`` for ours), None when unreadable."""
    try:
        return str(OmegaConf.select(OmegaConf.load(RunLayout(path).hydra / "hydra.yaml"), "hydra.job.name"))
    except Exception:  # missing, not YAML, not a mapping: not a Hydra record we can read
        return None


def is_renderer_run(path: Path, manifest: dict[str, Any] | None) -> bool:
    return (_is_renderer_manifest(manifest) or RunLayout(path).lock.is_file()
            or _hydra_job_name(path) == JOB_NAME)


def inspect_run(path: Path) -> Run | None:
    """The run at ``path``, or None when it is not a renderer run."""
    manifest = _read_manifest(path)
    renderer_manifest = _is_renderer_manifest(manifest)
    if not is_renderer_run(path, manifest):
        return None
    if renderer_manifest:
        finished = _timestamp(manifest.get("finished"))
        state = ("finished" if finished is not None else
                 "unfinished" if manifest.get("finished") is None else "unknown")
        cache_dir = Path(manifest["cache_dir"]) if isinstance(manifest.get("cache_dir"), str) else None
    else:
        finished, state, cache_dir = None, "unknown", None
    return Run(path, state, finished, tree_stats(path), cache_dir)


def find_runs(outputs: Path) -> list[Run]:
    runs = []
    for container in _containers(outputs):
        for candidate in _dirs(container):
            run = inspect_run(candidate)
            if run is not None:
                runs.append(run)
    return runs


def find_leftovers(outputs: Path) -> list[Path]:
    """``.<name>.deleting`` dirs an interrupted clean left beside the runs."""
    found = []
    for container in _containers(outputs):
        try:
            entries = sorted(container.iterdir())
        except OSError:
            continue
        found += [p for p in entries if LEFTOVER.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    return found


# --------------------------------------------------------------------------- is it in use?


def _processes_using(runs: list[Run]) -> dict[Path, str]:
    """Runs that a process on this machine has a file open in, or its working directory in."""
    owners = {os.path.realpath(run.path): run.path for run in runs}
    found: dict[Path, str] = {}
    if not owners:
        return found
    me = os.getpid()
    for proc in psutil.process_iter(["name"]):
        if proc.pid == me:
            continue
        try:
            paths = [(f.path, "has a file open in it") for f in proc.open_files()]
            paths.append((proc.cwd(), "has its working directory in it"))
        except (psutil.Error, OSError):  # gone, a zombie, or another user's: not ours to see
            continue
        for path, how in paths:
            probe = path
            while True:
                if probe in owners and owners[probe] not in found:
                    found[owners[probe]] = f"process {proc.pid} ({proc.info['name']}) {how}"
                parent = os.path.dirname(probe)
                if parent == probe:
                    break
                probe = parent
    return found


def _holds_cache(run: Run, cache_dirs: set[str]) -> str:
    root = os.path.realpath(run.path) + os.sep
    for cache_dir in sorted(cache_dirs):
        if (cache_dir + os.sep).startswith(root):
            return cache_dir
    return ""


def _written_lately(newest: float | None, now: float, grace: float) -> str:
    if newest is None or newest < now - grace:
        return ""
    when = f"{ago(now - newest)} ago" if newest <= now else "in the future"
    return f"may be running: written to {when} (within --grace {ago(grace)})"


def mark_in_use(runs: list[Run], now: float, grace: float) -> None:
    for run in runs:
        if holder := run_lock.in_use(run.path):
            run.busy = f"in use: held by {holder}"
        else:
            run.busy = _written_lately(run.tree.newest_mtime, now, grace)
    for path, why in _processes_using([r for r in runs if not r.busy]).items():
        next(r for r in runs if r.path == path).busy = f"in use: {why}"


# --------------------------------------------------------------------------- deciding and removing


def plan(runs: list[Run], now: float, older_than: float, keep: int, grace: float) -> list[Run]:
    """Decide every run (newest first): in use, among the newest ``keep``, young enough, or removed."""
    mark_in_use(runs, now, grace)
    cache_dirs = {os.path.realpath(r.cache_dir) for r in runs if r.cache_dir is not None}
    kept_newest = 0
    ordered = sorted(runs, key=lambda r: r.when, reverse=True)
    for run in ordered:
        old = now - run.when >= older_than
        if run.busy:
            run.decision, run.reason = "keep", run.busy
        elif kept_newest < keep:
            kept_newest += 1
            run.decision, run.reason = "keep", f"one of the newest {keep} (--keep)"
        elif not old:
            run.decision, run.reason = "keep", "younger than --older-than"
        elif cache := _holds_cache(run, cache_dirs):
            run.decision, run.reason = "keep", f"it holds the stage cache {cache} (named in a manifest)"
        else:
            run.decision = "remove"
        run.notice = run.decision == "keep" and old and not run.reason.startswith("one of")
    return ordered


def _rmtree(path: Path) -> None:
    def onerror(func, name, exc_info):  # another clean removing the same tree is no error
        if not isinstance(exc_info[1], FileNotFoundError):
            raise exc_info[1]
    shutil.rmtree(path, onerror=onerror)


class InUse(RuntimeError):
    """The run turned out to be in use right before its removal."""


def remove_run(path: Path, grace: float = DEFAULT_GRACE) -> None:
    """Check once more that nobody uses it (``InUse`` if somebody does), then, holding its lock so no run can
    start in it, rename it to ``.<name>.deleting`` (atomic: the run is whole or marked); then delete it."""
    doomed = path.with_name(f".{path.name}.deleting")
    if doomed.exists():
        _rmtree(doomed)
    if busy := _written_lately(tree_stats(path).newest_mtime, time.time(), grace):
        raise InUse(busy)
    try:
        with run_lock.hold(path, "clean", patience=0, create=False):
            os.rename(path, doomed)
    except run_lock.RunDirInUse as exc:
        raise InUse(f"in use: {exc}") from None
    fsync_dir(path.parent)  # the mark is on disk before any of the contents goes
    _rmtree(doomed)


def tidy(parent: Path, outputs: Path) -> None:
    """Remove the folders a removal left empty: a date folder; a sweep folder holding only multirun.yaml,
    then its date folder. Never ``outputs`` or ``outputs/multirun`` themselves."""
    stop = {outputs, outputs / MULTIRUN}
    while parent not in stop and outputs in parent.parents:
        try:
            names = [p.name for p in parent.iterdir()]
            if names == [SWEEP_FILE] and parent.parent.parent == outputs / MULTIRUN:
                (parent / SWEEP_FILE).unlink()
                names = []
            if names:
                return
            parent.rmdir()
        except OSError:  # not empty after all (a new run just started there), or not ours to remove
            return
        parent = parent.parent


# --------------------------------------------------------------------------- command line


@dataclass
class Outcome:
    removed: list[tuple[Path, int]] = field(default_factory=list)
    leftovers: list[tuple[Path, int]] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    kept: int = 0


def _say(line: str = "", *, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)  # progress as it goes, even into a pipe


def clean(outputs: Path, older_than: float, *, keep: int = 0, dry_run: bool = False, grace: float = DEFAULT_GRACE,
          now: float | None = None) -> Outcome:
    now = time.time() if now is None else now
    outcome = Outcome()
    for leftover in find_leftovers(outputs):
        size = tree_stats(leftover).bytes
        if dry_run:
            _say(f"would finish removing {leftover} ({human(size)}, left by an interrupted clean)")
        else:
            try:
                _rmtree(leftover)
            except OSError as exc:
                _say(f"error: could not finish removing {leftover}: {exc}", err=True)
                outcome.failed.append(leftover)
                continue
            tidy(leftover.parent, outputs)
            _say(f"finished removing {leftover} ({human(size)}, left by an interrupted clean)")
        outcome.leftovers.append((leftover, size))

    for run in sorted(plan(find_runs(outputs), now, older_than, keep, grace), key=lambda r: r.when):
        if run.decision == "keep":
            outcome.kept += 1
            if run.notice:
                _say(f"kept {run.path}: {run.reason}", err=True)
            continue
        size, what = run.tree.bytes, run.describe(now)
        if dry_run:
            _say(f"would remove {run.path} ({human(size)}, {what})")
            outcome.removed.append((run.path, size))
            continue
        try:
            remove_run(run.path, grace)
        except FileNotFoundError:  # another clean got there first
            continue
        except InUse as exc:  # started (or resumed) since the plan was made
            outcome.kept += 1
            _say(f"kept {run.path}: {exc}", err=True)
            continue
        except OSError as exc:
            _say(f"error: could not remove {run.path}: {exc} (a later clean finishes it)", err=True)
            outcome.failed.append(run.path)
            continue
        tidy(run.path.parent, outputs)
        _say(f"removed {run.path} ({human(size)}, {what})")
        outcome.removed.append((run.path, size))
    return outcome


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(outcome: Outcome, dry_run: bool) -> str:
    freed = sum(size for _, size in outcome.removed)
    line = (f"{'would remove' if dry_run else 'removed'} {_plural(len(outcome.removed), 'run')}, {human(freed)}; "
            f"{'would keep' if dry_run else 'kept'} {outcome.kept}")
    if outcome.leftovers:
        left = sum(size for _, size in outcome.leftovers)
        line += (f"; {'would finish' if dry_run else 'finished'} "
                 f"{_plural(len(outcome.leftovers), 'interrupted removal')} ({human(left)})")
    if outcome.failed:
        line += f"; {len(outcome.failed)} could not be removed"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m renderer.clean",
        description="Remove old run directories (outputs/<date>/<time>/, outputs/multirun/<date>/<time>/<job>/). "
                    "Never touches the stage cache (outputs/.cache), outputs/watch, anything that is not a run, "
                    "or a run that may still be running.")
    parser.add_argument("--older-than", type=parse_duration, required=True, metavar="AGE",
                        help="remove runs that finished (or were last written) longer ago than this: 30m, 12h, 7d, 2w")
    parser.add_argument("--outputs", type=Path, default=Path("outputs"), help="the outputs folder (default: outputs)")
    parser.add_argument("--keep", type=_non_negative, default=0, metavar="N",
                        help="keep the newest N runs whatever their age (runs in use are kept besides)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    parser.add_argument("--grace", type=parse_duration, default=DEFAULT_GRACE, metavar="AGE",
                        help="a run written to within this long counts as running and is kept (default: 10m)")
    args = parser.parse_args(argv)
    if not args.outputs.is_dir():
        print(f"error: no outputs folder at {args.outputs} (pass --outputs DIR)", file=sys.stderr)
        return Exit.CANNOT_START
    try:
        outcome = clean(args.outputs, args.older_than, keep=args.keep, dry_run=args.dry_run, grace=args.grace)
    except KeyboardInterrupt:
        print("interrupted: every run is either whole or a hidden .<name>.deleting dir the next clean finishes",
              file=sys.stderr)
        return Exit.INTERRUPTED
    _say(summary(outcome, args.dry_run))
    return Exit.FAILED if outcome.failed else Exit.OK
