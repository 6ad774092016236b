"""Terminal typing animation: render cost against text length at 720p (a comparison, not a test).

The 1x workload is a 60-second typing segment (comments, commands, output, long wrapped lines) that fits
its scene at the configured speeds; 2x, 4x, 8x repeat it in scenes 2, 4, 8 times as long. Each track is built,
written as an ASS file and burnt by libass over a solid background with the encoder settings a segment uses
(libx264, conf encode defaults), through ``renderer.ffmpeg.run``. Cost is linear in the text when every
"x" column grows like the size; the 1x case must render at >= 10x realtime.

    python -m tests.benchmarks.terminal [--sizes 1,2,4,8] [--seconds 60] [--width 1280] [--height 720]
                                        [--theme dark] [--profile]

``--profile`` splits the 1x render into its parts: the encoder alone, the ass filter alone (libass and the
blend onto each frame), and the panel alone. Exit code 0 when the 1x case meets the target, 1 otherwise.
The machine's load average is printed too: on a shared machine the wall-clock numbers move with it.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from renderer import ffmpeg
from renderer.config import EncodeConfig, FormatConfig, PanelConfig, TerminalConfig
from renderer.stages.terminal import TerminalTrack, build_track

TARGET_REALTIME = 10.0
CONF = Path(__file__).resolve().parents[2] / "conf"
BACKGROUND = "0x203040"  # stands in for the visual under the panel


def block(i: int) -> list[dict]:
    """One beat of a typical script: a comment, a command, its output (one line long enough to wrap)."""
    return [
        {"kind": "comment", "text": f"# step {i}: follow the loop through the planner", "prompt": ""},
        {"kind": "command", "text": f"grep -n 'loop' /var/log/descent-{i:03d}.log | tail -3", "prompt": "$"},
        {"kind": "output", "text": f"{1200 + i}: WARN planner loop detected (depth={i}) {{retry}} 100%", "prompt": ""},
        {"kind": "output", "text": f"{1201 + i}: ERROR mirror of mirror: " + "recursion " * 9, "prompt": ""},
    ]


@dataclass
class Workload:
    lines: list[dict]
    duration_s: float

    @property
    def chars(self) -> int:
        return sum(len(line["text"]) for line in self.lines)


def build(lines: list[dict], duration_s: float, theme, fmt: FormatConfig, terminal_only: bool = False
          ) -> TerminalTrack:
    panel = PanelConfig(0.0, 0.0, 1.0, 1.0) if terminal_only else PanelConfig()
    return build_track(lines, title="LOG_0002 — THE DESCENT — benchmark", duration_s=duration_s, theme=theme,
                       timing=TerminalConfig(), fmt=fmt, panel=panel, always_show=terminal_only)


def base_blocks(seconds: float, theme, fmt: FormatConfig) -> int:
    """The most blocks that type out in ``seconds`` at the configured speeds."""
    n = 1
    while build([line for i in range(n + 1) for line in block(i)], seconds, theme, fmt).speed_scale == 1.0:
        n += 1
    return n


def ass_text(track: TerminalTrack, duration_s: float) -> str:
    end_cs = round(duration_s * 100)
    events = [e for e in (ev.shifted(0, end_cs) for ev in track.events) if e]
    return track.header + "\n" + "\n".join(e.line() for e in events) + "\n"


def timed_ffmpeg(args: list[str], workdir: Path, duration_s: float) -> tuple[float, float]:
    """Run ffmpeg; return (wall seconds, CPU seconds of the ffmpeg process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    ffmpeg.run(args, cwd=workdir, timeout=max(300.0, duration_s * 2))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def source(fmt: FormatConfig, duration_s: float, colour: str = BACKGROUND) -> list[str]:
    return ["-f", "lavfi", "-i", f"color=c={colour}:s={fmt.width}x{fmt.height}:r={fmt.fps}:d={duration_s:.2f}"]


def encode(fmt: FormatConfig) -> list[str]:
    enc = EncodeConfig()
    return ["-c:v", "libx264", "-preset", enc.preset, "-crf", str(enc.crf), "-pix_fmt", "yuv420p",
            "-r", str(fmt.fps), "-an", "-f", "mp4", "out.mp4"]


def render(ass_file: str, workdir: Path, fmt: FormatConfig, duration_s: float, colour: str = BACKGROUND
           ) -> tuple[float, float]:
    """Burn ``ass_file`` over the background and encode it, as a segment does."""
    return timed_ffmpeg([*source(fmt, duration_s, colour), "-vf", f"ass=filename={ass_file}", *encode(fmt)],
                        workdir, duration_s)


def profile(track: TerminalTrack, workdir: Path, fmt: FormatConfig, duration_s: float) -> None:
    """Where the 1x render's time goes: x264, the ass filter (libass + blend), the panel alone."""
    chrome = TerminalTrack(track.header, [e for e in track.events if e.layer < 2], 1.0, 0, 0)
    (workdir / "chrome.ass").write_text(ass_text(chrome, duration_s), encoding="utf-8")
    null = ["-f", "null", "-"]
    parts = [
        ("background + x264 (no subtitles)", [*source(fmt, duration_s), *encode(fmt)]),
        ("background only (no filter, no encode)", [*source(fmt, duration_s), *null]),
        ("ass filter, all events (no encode)", [*source(fmt, duration_s), "-vf", "ass=filename=t.ass", *null]),
        ("ass filter, panel + title bar only", [*source(fmt, duration_s), "-vf", "ass=filename=chrome.ass", *null]),
    ]
    print(f"\nprofile of the 1x render ({duration_s:.0f} s of video):")
    print(f"  {'part':<42} {'wall s':>7} {'cpu s':>7} {'cpu ms/frame':>13}")
    frames = duration_s * fmt.fps
    for label, args in parts:
        wall, cpu = timed_ffmpeg(args, workdir, duration_s)
        print(f"  {label:<42} {wall:7.2f} {cpu:7.2f} {cpu * 1000 / frames:13.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8", help="text multiples (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the 1x segment")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--theme", default="dark")
    parser.add_argument("--profile", action="store_true", help="break the 1x render down into its parts")
    parser.add_argument("--strategy", choices=["ui_only", "overlay"], default="ui_only",
                        help="the terminal alone on its background (assembly=ui_only, default), or as a panel "
                             "over a picture (assembly=overlay)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    fmt = FormatConfig("benchmark", args.width, args.height, 25)
    theme = OmegaConf.load(CONF / "theme" / f"{args.theme}.yaml")
    n_base = base_blocks(args.seconds, theme, fmt)
    terminal_only = args.strategy == "ui_only"
    colour = "0x" + theme.background.lstrip("#") if terminal_only else BACKGROUND
    enc = EncodeConfig()
    print(f"terminal typing ({args.strategy}): {fmt.width}x{fmt.height} @ {fmt.fps} fps, theme {args.theme}, "
          f"libx264 {enc.preset} "
          f"crf {enc.crf}; 1x = {n_base} blocks in {args.seconds:.0f} s; load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    header = (f"{'size':>4} {'chars':>6} {'events':>7} {'scene s':>8} {'speed':>6} {'build s':>8} {'render s':>9} "
              f"{'cpu s':>7} {'realtime':>9} | {'x chars':>7} {'x events':>8} {'x build':>7} {'x render':>8}")
    print(header)
    print("-" * len(header))
    first = first_track = None
    realtime_1x = 0.0
    with tempfile.TemporaryDirectory(prefix="terminal-bench-") as tmp:
        workdir = Path(tmp)
        for size in sizes:
            work = Workload([line for i in range(n_base * size) for line in block(i)], args.seconds * size)
            started = time.perf_counter()
            track = build(work.lines, work.duration_s, theme, fmt, terminal_only)
            text = ass_text(track, work.duration_s)
            build_s = time.perf_counter() - started
            (workdir / "t.ass").write_text(text, encoding="utf-8")
            wall, cpu = render("t.ass", workdir, fmt, work.duration_s, colour)
            row = (work.chars, len(track.events), build_s, wall)
            first = first or row
            realtime = work.duration_s / wall
            if size == 1:
                realtime_1x, first_track = realtime, (track, text, work.duration_s)
            ratios = [now / then if then else 0.0 for now, then in zip(row, first)]
            print(f"{size:>3}x {work.chars:>6} {len(track.events):>7} {work.duration_s:>8.0f} "
                  f"{track.speed_scale:>6.2f} {build_s:>8.2f} {wall:>9.2f} {cpu:>7.2f} {realtime:>8.1f}x | "
                  + " ".join(f"{r:>{w}.2f}" for r, w in zip(ratios, (7, 8, 7, 8))), flush=True)
        if args.profile and first_track:
            track, text, duration_s = first_track
            (workdir / "t.ass").write_text(text, encoding="utf-8")
            profile(track, workdir, fmt, duration_s)
        blank_wall, _ = timed_ffmpeg([*source(fmt, args.seconds, colour), *encode(fmt)], workdir, args.seconds)
    met = realtime_1x >= TARGET_REALTIME
    print(f"\n1x: {realtime_1x:.1f}x realtime (target >= {TARGET_REALTIME:.0f}x): {'met' if met else 'NOT met'}; "
          f"the encoder alone on a blank frame: {args.seconds / blank_wall:.1f}x (the ceiling on this machine)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
