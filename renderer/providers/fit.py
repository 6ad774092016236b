"""Fitting a clip to a scene: looped, or held on its last frame, to exactly the scene's length."""

from __future__ import annotations

from pathlib import Path

from renderer.media import ffmpeg

FITS = ("loop", "extend")


def fit_clip(src: Path, out: Path, duration: float, *, fit: str, timeout: float,
             size: tuple[int, int] | None = None) -> None:
    """``src`` looped (``fit=loop``) or held on its last frame (``extend``) to ``duration`` seconds, as an
    h264 mp4 at ``out``; ``size`` (w, h): scaled to cover it and cropped, so a 4K source costs no more
    downstream than the format needs."""
    if fit not in FITS:
        raise ValueError(f"fit={fit!r}: use loop or extend")
    filters = []
    if size:
        w, h = size
        filters.append(f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1")
    if fit == "loop":
        args = ["-stream_loop", "-1", "-i", str(src)]
    else:
        args = ["-i", str(src)]
        filters.append(f"tpad=stop_mode=clone:stop_duration={duration:.3f}")
    ffmpeg.run([*args, *(["-vf", ",".join(filters)] if filters else []), "-t", f"{duration:.3f}", "-an",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", "-f", "mp4", str(out)], timeout=timeout)
