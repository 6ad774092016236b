"""Encoder settings the segments share, and the text card a placeholder shows.

Every segment of a video is encoded with the same codec settings, frame rate and timebase, so the mux can
join them by stream copy; each starts on an IDR frame because it is a file of its own. x264 is given a fixed
thread count per encode: its output is deterministic only then.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from renderer.media import ass

SAFE_AUDIO = {"encode.audio_bitrate": "96k", "encode.audio_rate": 48000, "encode.audio_channels": 1}  # stand-ins


def video_args(cfg: dict[str, Any], threads: int) -> list[str]:
    """x264 output options from the node's config (``encode.preset``, ``encode.crf``, ``format.fps``)."""
    return ["-c:v", "libx264", "-preset", cfg["encode.preset"], "-crf", str(cfg["encode.crf"]),
            "-pix_fmt", "yuv420p", "-r", str(cfg["format.fps"]), "-threads", str(threads),
            "-fflags", "+bitexact", "-an"]


def channel_layout(cfg: dict[str, Any]) -> str:
    return "mono" if cfg["encode.audio_channels"] == 1 else "stereo"


def audio_args(cfg: dict[str, Any]) -> list[str]:
    """AAC output options from the node's config (``encode.audio_bitrate``, ``_rate``, ``_channels``). Without
    perceptual noise substitution: the noise ffmpeg's encoder puts in its place overshoots a limited track's
    ceiling by up to 2 dB."""
    return ["-c:a", "aac", "-aac_pns", "0", "-b:a", str(cfg["encode.audio_bitrate"]),
            "-ar", str(cfg["encode.audio_rate"]),
            "-ac", str(cfg["encode.audio_channels"]), "-fflags", "+bitexact"]


def failure_reason(exc: Exception) -> str:
    """The first line ffmpeg complained with, without its "[aac @ 0x55…]" prefixes; else the error's name."""
    lines = (getattr(exc, "stderr_tail", "") or str(exc)).strip().splitlines()
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", lines[0])[:160] if lines else type(exc).__name__


def write_card(path: Path, width: int, height: int, duration_s: float, title: str, reason: str) -> Path:
    """An ASS file that puts ``title`` and ``reason`` in the middle of the frame for ``duration_s``."""
    size = max(12, height // 24)
    text = (f"{{\\an5\\pos({width // 2},{height // 2})}}{ass.escape(title)}"
            f"\\N{{\\fs{size * 2 // 3}}}{ass.escape(reason)}")
    head = ass.header(width, height, ass.plain_styles("DejaVu Sans", size, "#e0e0e0"))
    return ass.write(path, head, [ass.Event(0, round(duration_s * 100) + 1, 0, "Term", text)])
