"""The one place that runs ffmpeg and ffprobe (and the other media tools: espeak-ng goes through ``run_tool``).

Argument lists only, never a shell. Every process runs in its own process group, is registered while it
lives, and has a timeout: on timeout, cancellation or interruption its whole group gets SIGTERM, then SIGKILL
after a grace period, and is reaped. It also dies with the thread that started it (PR_SET_PDEATHSIG, set by
util-linux's ``setpriv`` before the tool is exec'd), so a renderer killed with SIGKILL leaves nothing running. ``kill_all`` stops every live process of this Python process (used on
Ctrl-C / SIGTERM). Failures raise ``FFmpegError`` carrying the command (secrets redacted), exit code and the
last lines of stderr.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import psutil

from renderer.config import LimitsConfig
from renderer.media import tool_notes
from renderer.ops import health

DEFAULT_TIMEOUT_S = LimitsConfig().ffmpeg_timeout_s  # a run given no timeout (the stages give the config's)
MEDIA_TOOLS = ("ffmpeg", "ffprobe", "espeak-ng", "espeak")  # what this module starts
KILL_GRACE_S = 3.0
STDERR_TAIL_LINES = 20
REQUIRED_ENCODERS = ("libx264", "aac")
REQUIRED_FILTERS = ("ass", "scale", "concat", "color", "anullsrc", "gradients", "life", "mandelbrot", "geq")
GRAPH_FILE_OPTIONS = ("-/filter_complex", "-filter_complex_script")  # ffmpeg >= 7, ffmpeg < 8
GRAPH_FILE_TRIAL = "reads a filter graph from a file with"  # its note's key (tool_notes.py)
INSTALL_HINT = "install ffmpeg with libx264, aac and libass (Debian/Ubuntu: apt-get install ffmpeg)"
# files one run opens as inputs at most, whatever the scene count (far under any open-file limit): the stages
# that read something of every scene do it in batches of this many
MAX_INPUTS = 48

# a tool started ``in_background()`` runs this much nicer than the renderer: sharing a core with an encode it gets
# about a quarter of it (the scheduler's weights for nice 5 and 0: 335 and 1024), a core left idle all of it
BACKGROUND_NICE = 5

_paths: dict[str, str] = {}  # tool -> path set by configure()
SETPRIV = shutil.which("setpriv")  # util-linux; without it, strays of a killed run are stopped by the next one
NICE = shutil.which("nice")  # coreutils: a tool run in the background is niced before it runs its first instruction
_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()
_background: ContextVar[bool] = ContextVar("background", default=False)


class FFmpegError(RuntimeError):
    """A media tool run that failed, timed out, was cancelled or could not start."""

    def __init__(self, message: str, cmd: list[str] | None = None, returncode: int | None = None,
                 stderr_tail: str = ""):
        from renderer.ops.logs import redact

        self.cmd = [redact(part) for part in (cmd or [])]
        self.returncode = returncode
        self.stderr_tail = redact(stderr_tail)
        text = redact(message)
        if returncode is not None:
            text += f" (exit {returncode})"
        if self.stderr_tail:
            text += f"\n{self.stderr_tail}"
        super().__init__(text)


def could_not_open(exc: BaseException, paths: Iterable[Path | str] = ()) -> bool:
    """Whether ``exc`` says input files could not be opened: the open-file limit was reached (by ffmpeg, or
    by this process starting it), or ffmpeg named one of ``paths`` as unreadable."""
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        return True
    text = str(exc)
    return "Too many open files" in text or any(f"{path}: " in text for path in paths)


# --- binaries --------------------------------------------------------------------------------------------
def configure(*, ffmpeg_path: str = "", ffprobe_path: str = "") -> None:
    """Binaries from config (``ffmpeg.path`` / ``ffmpeg.probe_path``); FFMPEG_PATH / FFPROBE_PATH still win."""
    global _paths
    chosen = {"ffmpeg": ffmpeg_path, "ffprobe": ffprobe_path}
    _paths = {tool: path for tool, path in chosen.items() if path}  # one swap: threads never see it half-set


def binary(tool: str) -> str:
    """Path of ffmpeg/ffprobe: $FFMPEG_PATH / $FFPROBE_PATH, then config, then PATH, then imageio-ffmpeg."""
    candidate = os.environ.get(f"{tool.upper()}_PATH") or _paths.get(tool) or shutil.which(tool)
    if not candidate and tool == "ffmpeg":
        try:
            import imageio_ffmpeg  # optional: ships a static ffmpeg (no ffprobe, no libass guarantee)

            candidate = imageio_ffmpeg.get_ffmpeg_exe()
        except Exception:
            candidate = None
    if not candidate:
        raise FFmpegError(f"{tool} not found: {INSTALL_HINT}, or set {tool.upper()}_PATH")
    resolved = shutil.which(candidate) or candidate
    if not os.access(resolved, os.X_OK):
        raise FFmpegError(f"{tool} at {candidate!r} is not an executable file: fix {tool.upper()}_PATH")
    return resolved


def check_features() -> None:
    """Fail early, with the fix, if this ffmpeg lacks an encoder or filter the renderer uses. A binary found to
    have them all is noted (renderer/media/tool_notes.py) and not asked again: ~0.25 s off every run's start."""
    ffmpeg_binary, needed = binary("ffmpeg"), "has " + " ".join(REQUIRED_ENCODERS + REQUIRED_FILTERS)
    if tool_notes.recall(ffmpeg_binary, needed):
        binary("ffprobe")
        return
    encoders = run(["-hide_banner", "-encoders"], tool="ffmpeg", raw=True, timeout=30)
    filters = run(["-hide_banner", "-filters"], tool="ffmpeg", raw=True, timeout=30)
    have_encoders = {line.split()[1] for line in encoders.splitlines() if len(line.split()) > 1}
    have_filters = {line.split()[1] for line in filters.splitlines() if len(line.split()) > 1}
    missing = [e for e in REQUIRED_ENCODERS if e not in have_encoders]
    missing += [f for f in REQUIRED_FILTERS if f not in have_filters]
    if missing:
        raise FFmpegError(f"{binary('ffmpeg')} lacks {', '.join(missing)}: {INSTALL_HINT}, or point FFMPEG_PATH "
                          "at a build that has them")
    binary("ffprobe")
    tool_notes.note(ffmpeg_binary, needed, {"ok": True, "at": time.time()})


def graph_file(path: Path | str) -> list[str]:
    """The arguments that have ffmpeg read its filter graph from the file at ``path``: ``-/filter_complex`` since
    ffmpeg 7 (8 has dropped ``-filter_complex_script``, 5.1 knows only it). Tried once per binary and noted."""
    return [_graph_option(binary("ffmpeg")), str(path)]


@functools.cache
def _graph_option(ffmpeg_binary: str) -> str:
    noted = tool_notes.recall(ffmpeg_binary, GRAPH_FILE_TRIAL)
    if noted and noted.get("option") in GRAPH_FILE_OPTIONS:
        return str(noted["option"])
    with tempfile.TemporaryDirectory(prefix="renderer-graph-") as folder:
        graph = Path(folder) / "trial.filter"
        graph.write_text("[0:a]anull[out]\n", encoding="utf-8")
        try:  # ffmpeg 7's "-/option file": what an option reads from a file
            run(["-f", "lavfi", "-i", "anullsrc", "-t", "0.01", "-/filter_complex", str(graph), "-map", "[out]",
                 "-f", "null", "-"], timeout=30)
            option = GRAPH_FILE_OPTIONS[0]
        except FFmpegError as exc:
            if "Unrecognized option" not in str(exc):  # not an answer (cancelled, timed out): asked again next time
                raise
            option = GRAPH_FILE_OPTIONS[1]
    tool_notes.note(ffmpeg_binary, GRAPH_FILE_TRIAL, {"option": option, "at": time.time()})
    return option


# --- running ---------------------------------------------------------------------------------------------
@contextmanager
def in_background() -> Iterator[None]:
    """The tools this thread starts meanwhile run at a lower CPU priority (``BACKGROUND_NICE``): work that nothing
    waits for yet (the soundtrack, which only the last step needs) fills the cores without slowing the encodes."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def _register(proc: subprocess.Popen) -> None:
    with _live_lock:
        _live.add(proc)


def _unregister(proc: subprocess.Popen) -> None:
    with _live_lock:
        _live.discard(proc)


def live_pids() -> list[int]:
    with _live_lock:
        return [p.pid for p in _live]


def _kill_group(proc: subprocess.Popen, grace: float = KILL_GRACE_S) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap the leader."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        pass


def kill_all(grace: float = 1.0) -> int:
    """Stop every live process started here (Ctrl-C, SIGTERM, cancelled job); return how many were running."""
    with _live_lock:
        procs = list(_live)
    threads = [threading.Thread(target=_kill_group, args=(p, grace), daemon=True) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(procs)


def _orphaned(proc: psutil.Process) -> bool:
    """Whether ``proc``'s parent is gone: adopted by init (ppid 1), or its parent is dead or younger than it
    (the parent's pid given to a later process)."""
    ppid = proc.ppid()
    if ppid <= 1:
        return True
    try:
        return psutil.Process(ppid).create_time() > proc.create_time()
    except psutil.NoSuchProcess:
        return True


def kill_strays(folder: Path) -> int:
    """Stop processes of ours that work in ``folder`` (an argument names a path below it) and whose parent is
    gone (a worker killed with SIGKILL cannot stop its children); return how many there were. A tool whose
    parent lives is that parent's to stop: another run's, or a worker still winding down."""
    marker = str(folder).rstrip(os.sep) + os.sep
    strays = []
    for proc in psutil.process_iter(["name", "cmdline", "uids"]):
        try:
            ours = proc.info["uids"] is not None and proc.info["uids"].real == os.getuid()
            if (ours and proc.info["name"] in MEDIA_TOOLS and any(marker in a for a in proc.info["cmdline"] or [])
                    and _orphaned(proc)):
                strays.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for proc in strays:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(strays, timeout=5)
    return len(strays)


def _feeder(proc: subprocess.Popen, feed: Iterable[bytes], failed: list[BaseException]) -> threading.Thread:
    """A thread writing ``feed`` to the tool's stdin, then closing it; what the feed raises stops the tool."""
    def write() -> None:
        sink = proc.stdin.buffer  # type: ignore[union-attr]
        try:
            for chunk in feed:
                sink.write(chunk)
        except (BrokenPipeError, ValueError, OSError):
            pass  # the tool stopped reading: its exit status says why
        except BaseException as exc:  # noqa: BLE001  (re-raised by the caller)
            failed.append(exc)
            _kill_group(proc)
        finally:
            try:
                sink.close()
            except OSError:
                pass

    return threading.Thread(target=write, daemon=True, name="tool-stdin")


def run_tool(cmd: list[str], *, timeout: float | None = None, cwd: Path | None = None,
             on_progress: Callable[[dict[str, str]], None] | None = None, feed: Iterable[bytes] | None = None) -> str:
    """Run ``cmd`` in its own process group; return stdout (or, with ``on_progress``, stream stdout's
    ``key=value`` lines to it, one dict per block); ``feed``: chunks written to its stdin (e.g. raw frames).
    Raise FFmpegError on failure, timeout or interruption."""
    limit = timeout or DEFAULT_TIMEOUT_S
    launch = [SETPRIV, "--pdeathsig", "KILL", "--", *cmd] if SETPRIV else cmd
    if _background.get() and NICE:
        launch = [NICE, "-n", str(BACKGROUND_NICE), *launch]
    try:
        proc = subprocess.Popen(launch, cwd=cwd, stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True,
                                errors="replace")
    except OSError as exc:
        raise FFmpegError(f"could not start {Path(cmd[0]).name}: {exc}", cmd) from exc
    _register(proc)
    started = time.perf_counter()
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        _kill_group(proc)

    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    reader = threading.Thread(target=lambda: tail.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    watchdog = threading.Timer(limit, on_timeout)
    feed_failed: list[BaseException] = []
    writer = _feeder(proc, feed, feed_failed) if feed is not None else None
    reader.start()
    watchdog.start()
    if writer is not None:
        writer.start()
    try:
        if on_progress is None:
            out = proc.stdout.read()  # type: ignore[union-attr]
        else:
            out, block = "", {}
            for line in proc.stdout:  # type: ignore[union-attr]
                key, _, value = line.strip().partition("=")
                block[key] = value
                if key == "progress":
                    on_progress(block)
                    block = {}
        proc.wait()
        reader.join(timeout=5)
        if writer is not None:
            writer.join(timeout=5)
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        watchdog.cancel()
        _unregister(proc)
    if feed_failed:
        raise feed_failed[0]
    name = Path(cmd[0]).name
    failed = timed_out.is_set() or proc.returncode != 0
    health.record(name, time.perf_counter() - started, not failed, kind="tool",
                  error=(f"timed out after {limit:.0f} s" if timed_out.is_set() else
                         f"exit {proc.returncode}: {''.join(tail).strip()[-300:]}" if failed else ""))
    if timed_out.is_set():
        raise FFmpegError(f"{name} timed out after {limit:.0f} s and was stopped", cmd, proc.returncode,
                          "".join(tail).strip())
    if proc.returncode != 0:
        what = f"{name} was stopped by signal {-proc.returncode}" if proc.returncode < 0 else f"{name} failed"
        raise FFmpegError(what, cmd, proc.returncode, "".join(tail).strip())
    return out


def run(args: list[str], *, timeout: float | None = None, cwd: Path | None = None, tool: str = "ffmpeg",
        duration: float | None = None, on_progress: Callable[[float], None] | None = None,
        raw: bool = False, feed: Iterable[bytes] | None = None) -> str:
    """Run ffmpeg (or ffprobe) with ``args``; return stdout.

    With ``on_progress`` and the ``duration`` the output will have, ffmpeg reports its position and the
    callback receives the fraction done (0..1) about twice a second, and 1.0 at the end. With a ``duration``
    alone, the fraction goes to the health monitor's live view of the current node (``health.progress``).
    ``feed``: what ffmpeg reads from ``-i pipe:0`` (raw frames drawn in Python).
    """
    if duration and on_progress is None and tool == "ffmpeg" and not raw:
        on_progress = health.progress
    cmd = [binary(tool)]
    if tool == "ffmpeg" and not raw:
        cmd += ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
        if on_progress is not None:
            cmd += ["-nostats", "-progress", "pipe:1"]
    cmd += args
    if on_progress is None or tool != "ffmpeg" or raw:
        return run_tool(cmd, timeout=timeout, cwd=cwd, feed=feed)

    def report(block: dict[str, str]) -> None:
        if block.get("progress") == "end":
            on_progress(1.0)
            return
        micros = block.get("out_time_us", block.get("out_time_ms", ""))
        if micros.isdigit() and duration:
            on_progress(max(0.0, min(1.0, int(micros) / 1e6 / duration)))

    return run_tool(cmd, timeout=timeout, cwd=cwd, on_progress=report, feed=feed)


# --- probing ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stream:
    index: int
    codec_type: str  # video | audio | subtitle | data
    codec_name: str
    width: int = 0
    height: int = 0
    fps: float = 0.0
    duration: float = 0.0
    sample_rate: int = 0


@dataclass(frozen=True)
class MediaInfo:
    path: str
    duration: float
    format_name: str
    streams: tuple[Stream, ...]

    def first(self, codec_type: str) -> Stream | None:
        return next((s for s in self.streams if s.codec_type == codec_type), None)

    @property
    def codecs(self) -> list[str]:
        return [s.codec_name for s in self.streams]

    @property
    def resolution(self) -> tuple[int, int]:
        video = self.first("video")
        return (video.width, video.height) if video else (0, 0)


def _rate(text: str) -> float:
    num, _, den = (text or "0/1").partition("/")
    try:
        return float(num) / float(den or 1) if float(den or 1) else 0.0
    except ValueError:
        return 0.0


def image_input(path: Path | str) -> list[str]:
    """ffmpeg's input arguments for one image file, read as that one file whatever its name. ffmpeg's image2
    demuxer reads a name with a ``%d`` pattern (``x%03d.jpg``) as a numbered sequence (x001.jpg, x002.jpg …),
    so for such a name pattern matching is turned off; any other name is left to ffmpeg's content probe (which
    turns no pattern on, and opens a PNG named .jpg)."""
    if "%" in str(path):
        return ["-f", "image2", "-pattern_type", "none", "-i", str(path)]
    return ["-i", str(path)]


def probe(path: Path | str, *, timeout: float = 60.0) -> MediaInfo:
    """Duration, container and streams of a media file."""
    out = run(["-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
              tool="ffprobe", timeout=timeout)
    data = json.loads(out)
    streams = tuple(
        Stream(
            index=s["index"],
            codec_type=s.get("codec_type", ""),
            codec_name=s.get("codec_name", ""),
            width=int(s.get("width", 0)),
            height=int(s.get("height", 0)),
            fps=_rate(s.get("avg_frame_rate", "0/1")),
            duration=float(s.get("duration", 0) or 0),
            sample_rate=int(s.get("sample_rate", 0) or 0),
        )
        for s in data.get("streams", [])
    )
    fmt = data.get("format", {})
    return MediaInfo(str(path), float(fmt.get("duration", 0) or 0), fmt.get("format_name", ""), streams)
