"""P7: what typing costs. A scene that types for 60 s vs ten times the text in a scene ten times as long
(linear: ≤ 11× the time), and the 60 s scene vs x264 encoding a blank frame of the same size and duration
with the same settings (≤ 1.3×).

The scenes are rendered by `python -m renderer` with assembly=ui_only (the terminal on the theme's
background) at 720p30; a scene's cost is the span of its terminal and segment nodes in the script's record.
The 1× text is the most the terminal types in 60 s at the configured rhythm, so it is typed at that rhythm.
"""

from __future__ import annotations

from renderer.config import FormatConfig
from tests.benchmarks import measure, scripts
from tests.benchmarks.edits import X264
from tests.benchmarks.report import Row, failed

LINEAR_TARGET, BLANK_TARGET = 11.0, 1.3
BACKGROUND = "0x1e1e1e"  # the dark theme's, under the terminal


def rows(b) -> list[Row]:
    seconds = 6 if b.quick else 60
    fmt = FormatConfig("benchmark", 1280, 720, 30)
    blocks = scripts.blocks_that_fit(seconds, fmt)
    try:
        one = [_scene(b, blocks, seconds) for _ in range(b.runs)]
        ten = [_scene(b, blocks * 10, seconds * 10) for _ in range(b.runs)]
        blank = [_blank(b, seconds, fmt) for _ in range(b.runs)]
    except measure.Failed as exc:
        return [failed("P7a", "typing: 10× text vs 1×", f"≤ {LINEAR_TARGET:g}×", exc)]
    t1, t10, t0 = measure.median(one), measure.median(ten), measure.median(blank)
    return [Row("P7a", f"typing: 10× the on-screen text ({blocks * 40} lines, {seconds * 10} s) vs 1×",
                f"{t10:.1f} s", f"1× {t1:.1f} s", f"{t10 / t1:.2f}×", f"≤ {LINEAR_TARGET:g}× (linear)",
                t10 / t1 <= LINEAR_TARGET, [f"1× {a:.1f} s, 10× {c:.1f} s" for a, c in zip(one, ten)]),
            Row("P7b", f"a {seconds} s typing scene vs x264 on a blank frame", f"{t1:.1f} s",
                f"blank {t0:.1f} s", f"{t1 / t0:.2f}×", f"≤ {BLANK_TARGET}×", t1 / t0 <= BLANK_TARGET,
                [f"typing {a:.1f} s, blank {c:.1f} s" for a, c in zip(one, blank)])]


def _scene(b, blocks: int, seconds: int) -> float:
    script = scripts.write(b.dir("typing-in") / "bench.txt", [scripts.typing_scene(scripts.on_screen(blocks), 8)])
    run_dir = b.dir("typing")
    measure.renderer([f"batch.inputs=[{script}]", "assembly=ui_only", "voice=espeak", "cache.enabled=false",
                      f"script.min_last_scene_s={seconds}", *b.format], run_dir)
    record = measure.record(run_dir, "bench")
    if any("faster to fit" in w for w in record.get("warnings", [])):
        raise measure.Failed(f"the text did not fit its {seconds} s: {record['warnings']}")
    return measure.span(record, {"terminal", "segment"})


def _blank(b, seconds: int, fmt: FormatConfig) -> float:
    out = b.dir("typing-blank") / "blank.mp4"
    return measure.run(["ffmpeg", "-y", "-v", "error", "-f", "lavfi", "-i",
                        f"color=c={BACKGROUND}:s={fmt.width}x{fmt.height}:r={fmt.fps}:d={seconds}", *X264,
                        str(out)]).seconds
