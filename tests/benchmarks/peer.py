"""P2: the renderer vs MoviePy 2.x on the same 60 s composition: the theme's background, on-screen text typed
at the configured rhythm, narration; 720p30, the same x264 and AAC settings.

The renderer renders the script cold (assembly=ui_only, the default offline voice). MoviePy is given the
narration the renderer spoke, as a WAV, so its time leaves out the speech synthesis the renderer's includes;
its program is tests/benchmarks/moviepy_peer.py, run with the system's ffmpeg. Memory is the peak PSS of each
process tree (its RSS with pages shared between its processes counted once), against the x264 floor: one
ffmpeg re-encoding the renderer's MP4 with the same settings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from omegaconf import OmegaConf

from renderer.config import EncodeConfig, FormatConfig, TerminalConfig
from tests.benchmarks import measure, scripts
from tests.benchmarks.edits import ENCODE
from tests.benchmarks.report import Row, failed

SPEED_TARGET, MEMORY_ROOM_MB = 5.0, 100.0
WORDS_PER_MINUTE = 130  # narration that ends before the scene does


def rows(b) -> list[Row]:
    seconds = 10 if b.quick else 60
    claim = f"the same {seconds} s composition, renderer vs MoviePy"
    fmt = FormatConfig("benchmark", 1280, 720, 30)
    lines = scripts.on_screen(scripts.blocks_that_fit(seconds, fmt))
    with_peer = importlib.util.find_spec("moviepy") is not None
    try:
        runs = [_one(b, lines, seconds, fmt, with_peer) for _ in range(b.runs)]
    except measure.Failed as exc:
        return [failed("P2a", claim, f"≥ {SPEED_TARGET:g}× faster", exc)]
    if not with_peer:  # the renderer against its floor still stands
        return [failed("P2a", claim, f"≥ {SPEED_TARGET:g}× faster",
                       RuntimeError('MoviePy is not installed: pip install -e ".[bench]"')),
                _floor_row(claim, [r[0] for r in runs], [r[1] for r in runs])]
    ours, floor, peer = ([r[k] for r in runs] for k in range(3))
    speed = measure.median([p.seconds / o.seconds for o, p in zip(ours, peer)])
    mem = {name: measure.median([r.pss_mb for r in group]) for name, group in
           [("ours", ours), ("floor", floor), ("peer", peer)]}
    detail = [f"renderer {o.seconds:.1f} s / {o.pss_mb:.0f} MB PSS ({o.rss_mb:.0f} MB RSS), MoviePy {p.seconds:.1f} s / "
              f"{p.pss_mb:.0f} MB PSS ({p.rss_mb:.0f} MB RSS), floor {f.seconds:.1f} s / {f.pss_mb:.0f} MB"
              for o, f, p in zip(ours, floor, peer)]
    return [Row("P2a", f"{claim}: wall time", f"renderer {measure.median([o.seconds for o in ours]):.1f} s",
                f"MoviePy {measure.median([p.seconds for p in peer]):.1f} s", f"{speed:.1f}× faster",
                f"≥ {SPEED_TARGET:g}× faster", speed >= SPEED_TARGET, detail),
            _floor_row(claim, ours, floor),
            Row("P2c", f"{claim}: peak memory of the process tree vs MoviePy", f"renderer {mem['ours']:.0f} MB",
                f"MoviePy {mem['peer']:.0f} MB", f"{mem['ours'] / mem['peer']:.2f}×", "below MoviePy's",
                mem["ours"] < mem["peer"])]


def _floor_row(claim: str, ours: list[measure.Run], floor: list[measure.Run]) -> Row:
    mine, least = measure.median([o.pss_mb for o in ours]), measure.median([f.pss_mb for f in floor])
    return Row("P2b", f"{claim}: peak memory of the process tree vs the x264 floor", f"renderer {mine:.0f} MB",
               f"floor {least:.0f} MB", f"+{mine - least:.0f} MB", f"≤ floor + {MEMORY_ROOM_MB:g} MB",
               mine <= least + MEMORY_ROOM_MB,
               [f"renderer {o.seconds:.1f} s / {o.pss_mb:.0f} MB PSS ({o.rss_mb:.0f} MB RSS; voice process "
                f"{o.voice_mb:.0f} MB), floor {f.seconds:.1f} s / {f.pss_mb:.0f} MB" for o, f in zip(ours, floor)])


def _one(b, lines: list[tuple[str, str]], seconds: int, fmt: FormatConfig,
         with_peer: bool = True) -> tuple[measure.Run, ...]:
    script = scripts.write(b.dir("peer-in") / "bench.txt",
                           [scripts.typing_scene(lines, WORDS_PER_MINUTE * seconds // 60)])
    run_dir = b.dir("peer")
    ours = measure.renderer([f"batch.inputs=[{script}]", "assembly=ui_only", f"cache.dir={b.dir('peer-cache')}",
                             f"script.min_last_scene_s={seconds}", *b.format], run_dir)
    mp4, work = run_dir / "bench" / "bench.mp4", b.dir("peer-work")
    floor = measure.run(["ffmpeg", "-y", "-v", "error", "-i", str(mp4), *ENCODE, str(work / "floor.mp4")])
    if not with_peer:
        return ours, floor
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-i", str(mp4), "-vn", "-c:a", "pcm_s16le", str(work / "voice.wav")],
                   check=True)
    spec = work / "spec.json"
    spec.write_text(json.dumps(_spec(lines, measure.record(run_dir, "bench")["duration"], fmt, work)), encoding="utf-8")
    peer = measure.run([sys.executable, "-m", "tests.benchmarks.moviepy_peer", str(spec)],
                       env={**os.environ, "FFMPEG_BINARY": "ffmpeg"})
    return ours, floor, peer


def _spec(lines: list[tuple[str, str]], duration: float, fmt: FormatConfig, work) -> dict:
    theme, enc = OmegaConf.load(scripts.CONF / "theme" / "dark.yaml"), EncodeConfig()
    font = subprocess.run(["fc-match", theme.font_family, "--format=%{file}"], capture_output=True, text=True).stdout
    line_h = round(theme.font_size * theme.line_spacing)
    return {"width": fmt.width, "height": fmt.height, "fps": fmt.fps, "duration": duration,
            "background": theme.background, "foreground": theme.foreground, "font": font,
            "font_size": theme.font_size, "line_height": line_h, "padding": theme.padding,
            "rows": (fmt.height - 2 * theme.padding) // line_h,
            "lines": [{"kind": kind, "text": text, "prompt": "$" if kind == "command" else ""} for kind, text in lines],
            "rhythm": OmegaConf.to_container(OmegaConf.structured(TerminalConfig())), "audio": str(work / "voice.wav"),
            "out": str(work / "moviepy.mp4"), "preset": enc.preset, "crf": enc.crf, "audio_bitrate": enc.audio_bitrate,
            "audio_rate": enc.audio_rate}
