"""P10: what each codec costs and saves at about equal quality. A fixed lossless reference — 10 s of the
renderer's own output at 720p30 (procedural picture, a terminal typing over it), rendered with
``encode.crf=0`` (x264's lossless mode) — is encoded with each software codec exactly as the segments are
(``renderer.media.codecs.video_args``, at the default ``encode.preset`` and ``encode.crf``, the machine's cores),
and each result is measured: encode time, file size, and SSIM against the reference (ffmpeg's ssim filter; this
ffmpeg has no libvmaf). HEVC and AV1 are compared with H.264: smaller, at an SSIM within ``SSIM_TOLERANCE``.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from renderer.config import EncodeConfig
from renderer.media.codecs import SOFTWARE, Encoder, video_args
from tests.benchmarks import measure, scripts
from tests.benchmarks.report import Row, failed

SECONDS, FPS = 10, 30
SSIM_TOLERANCE = 0.001  # "about equal quality": SSIM within this of x264's (x264 crf 23 vs 24 differ by ~0.0002)
IDS = {"hevc": "P10a", "av1": "P10b"}


@dataclass
class Encoded:
    seconds: float
    mb: float
    ssim: float

    def __str__(self) -> str:
        return f"{self.seconds:.1f} s, {self.mb:.2f} MB, SSIM {self.ssim:.4f}"


def rows(b) -> list[Row]:
    seconds = 3 if b.quick else SECONDS
    try:
        reference = lossless_reference(b, seconds)
        runs = {codec: [encode(b, reference, codec) for _ in range(b.runs)] for codec in SOFTWARE}
    except (measure.Failed, subprocess.CalledProcessError) as exc:
        return [failed("P10", "codecs at equal quality", "smaller than h264 at its SSIM", exc)]
    med = {codec: Encoded(measure.median([r.seconds for r in rs]), rs[0].mb, rs[0].ssim) for codec, rs in runs.items()}
    base = med["h264"]
    out = []
    for codec, row_id in IDS.items():
        mine = med[codec]
        equal = abs(mine.ssim - base.ssim) <= SSIM_TOLERANCE
        out.append(Row(row_id, f"encode.codec={codec} ({SOFTWARE[codec]}) vs h264 (libx264), {seconds} s of the "
                               f"renderer's 720p30 output, default preset and crf",
                       f"{mine}", f"h264 {base}",
                       f"size {mine.mb / base.mb:.2f}×, time {mine.seconds / base.seconds:.1f}×",
                       f"smaller at SSIM within {SSIM_TOLERANCE:g}", equal and mine.mb < base.mb,
                       [f"{c} {r}" for c in ("h264", codec) for r in runs[c]]))
    return out


def lossless_reference(b, seconds: int) -> Path:
    """The renderer's picture (overlay: procedural visual, typing terminal), lossless, video only."""
    fmt = ["format=landscape_720p", f"format.fps={FPS}"]
    lines = scripts.on_screen(2 if seconds < SECONDS else 4)
    script = scripts.write(b.dir("codecs-in") / "bench.txt", [scripts.typing_scene(lines, 8)])
    run_dir = b.dir("codecs-ref")
    measure.renderer([f"batch.inputs=[{script}]", "voice=espeak", "cache.enabled=false", "encode.crf=0",
                      "encode.preset=ultrafast", f"script.min_last_scene_s={seconds}", *fmt], run_dir)
    reference = run_dir / "reference.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(run_dir / "bench" / "bench.mp4"), "-map", "0:v",
                    "-t", str(seconds), "-c:v", "ffv1", str(reference)], check=True)
    return reference


def encode(b, reference: Path, codec: str) -> Encoded:
    settings = EncodeConfig()
    out = b.dir(f"codecs-{codec}") / "out.mp4"
    args = video_args(Encoder(codec, SOFTWARE[codec]), preset=settings.preset, x264_crf=settings.crf, fps=FPS,
                      threads=len(os.sched_getaffinity(0)))
    took = measure.run(["ffmpeg", "-v", "error", "-y", "-threads", str(len(os.sched_getaffinity(0))), "-i",
                        str(reference), *args, "-f", "mp4", str(out)])
    return Encoded(took.seconds, out.stat().st_size / 1e6, ssim(out, reference))


def ssim(encoded: Path, reference: Path) -> float:
    """SSIM (all planes) of ``encoded`` against ``reference``, frame by frame."""
    err = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", str(encoded), "-i", str(reference),
                          "-lavfi", "[0:v][1:v]ssim", "-f", "null", "-"], capture_output=True, text=True,
                         check=True).stderr
    return float(re.search(r"SSIM .* All:([0-9.]+)", err).group(1))
