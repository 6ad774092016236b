"""Audio settings, ffmpeg's failure reasons, and the text card a placeholder shows.

The picture's encoder settings, which every segment of a video shares so the mux can join them by stream
copy, are in renderer/media/codecs.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from renderer.media import ass

SAFE_AUDIO = {"encode.audio_bitrate": "96k", "encode.audio_rate": 48000, "encode.audio_channels": 1}  # stand-ins


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
