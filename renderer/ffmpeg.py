"""The one place that runs ffmpeg and ffprobe.

Argument lists only (never a shell), every run in its own process group with a timeout; on timeout or any
interruption the whole group gets SIGTERM, then SIGKILL after a grace period, and is reaped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DEFAULT_TIMEOUT_S = 300.0
KILL_GRACE_S = 3.0


class FFmpegError(RuntimeError):
    """An ffmpeg/ffprobe run that failed, timed out or could not start."""

    def __init__(self, message: str, cmd: list[str], returncode: int | None = None, stderr_tail: str = ""):
        self.cmd = cmd
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        detail = f"\n{stderr_tail}" if stderr_tail else ""
        super().__init__(f"{message} (exit {returncode}): {' '.join(cmd[:1] + cmd[-1:])}{detail}")


@cache
def binary(name: str) -> str:
    """ffmpeg or ffprobe: $FFMPEG_PATH / $FFPROBE_PATH, else PATH."""
    override = os.environ.get(f"{name.upper()}_PATH")
    found = override or shutil.which(name)
    if not found:
        raise FFmpegError(
            f"{name} not found: install it (Debian/Ubuntu: apt-get install ffmpeg) or set {name.upper()}_PATH",
            [name],
        )
    return found


def run(args: list[str], *, timeout: float | None = None, cwd: Path | None = None, tool: str = "ffmpeg") -> str:
    """Run ffmpeg (or ffprobe) with ``args``; return stdout. Raises FFmpegError with the stderr tail."""
    cmd = [binary(tool), *args]
    if tool == "ffmpeg":
        cmd[1:1] = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    try:
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True
        )
    except OSError as exc:
        raise FFmpegError(f"could not start {tool}: {exc}", cmd) from exc
    try:
        out, err = proc.communicate(timeout=timeout or DEFAULT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise FFmpegError(f"{tool} timed out after {timeout or DEFAULT_TIMEOUT_S:.0f} s", cmd) from None
    except BaseException:
        _kill_group(proc)
        raise
    if proc.returncode != 0:
        tail = "\n".join(deque(err.splitlines(), maxlen=20))
        raise FFmpegError(f"{tool} failed", cmd, proc.returncode, tail)
    return out


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.communicate(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


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


def _rate(text: str) -> float:
    num, _, den = (text or "0/1").partition("/")
    return float(num) / float(den or 1) if float(den or 1) else 0.0


def probe(path: Path | str, *, timeout: float = 60.0) -> MediaInfo:
    """Duration, container and streams of a media file."""
    out = run(
        ["-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)],
        tool="ffprobe",
        timeout=timeout,
    )
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
