"""P8: the default neural voice (piper) vs espeak-ng: a 60 s script rendered cold with each, runs alternating
so a busy machine slows both alike; no memory sampled meanwhile (it would slow the run with more processes:
piper's, with its voice process)."""

from __future__ import annotations

from renderer.config import FormatConfig
from tests.benchmarks import measure, scripts
from tests.benchmarks.report import Row, failed

TARGET = 1.2


def rows(b) -> list[Row]:
    seconds = 10 if b.quick else 60
    lines = scripts.on_screen(scripts.blocks_that_fit(seconds, FormatConfig("benchmark", 1280, 720, 30)) // 2)
    script = scripts.write(b.dir("voices-in") / "bench.txt", [scripts.typing_scene(lines, 130 * seconds // 60)])
    times: dict[str, list[float]] = {"piper": [], "espeak": []}
    try:
        for n in range(b.runs):
            for voice in ("piper", "espeak") if n % 2 == 0 else ("espeak", "piper"):
                run = measure.renderer([f"batch.inputs=[{script}]", f"voice={voice}", f"cache.dir={b.dir('voices-cache')}",
                                        f"script.min_last_scene_s={seconds}", *b.format], b.dir("voices"),
                                       memory=False)
                times[voice].append(run.seconds)
    except measure.Failed as exc:
        return [failed("P8", "cold render, piper vs espeak-ng", f"≤ {TARGET}×", exc)]
    piper, espeak = measure.median(times["piper"]), measure.median(times["espeak"])
    return [Row("P8", f"a {seconds} s script cold with the default voice (piper) vs espeak-ng", f"piper {piper:.1f} s",
                f"espeak-ng {espeak:.1f} s", f"{piper / espeak:.2f}×", f"≤ {TARGET}×", piper / espeak <= TARGET,
                [f"piper {p:.1f} s, espeak-ng {e:.1f} s" for p, e in zip(times["piper"], times["espeak"])])]
