"""P9: what the synthesised music bed (audio.music=ambient) costs: a 60 s script rendered cold with and without
it (runs alternating, so a busy machine slows both alike), its soundtrack stage alone, and the pad's synthesis
for five minutes."""

from __future__ import annotations

import time

from renderer.config import AmbientConfig, FormatConfig
from renderer.media import ambient
from tests.benchmarks import measure, scripts
from tests.benchmarks.report import Row, failed

TARGET = 1.1  # the whole cold render
SYNTH_TARGET_S = 1.0  # five minutes of stereo pad


def rows(b) -> list[Row]:
    seconds = 10 if b.quick else 60
    lines = scripts.on_screen(scripts.blocks_that_fit(seconds, FormatConfig("benchmark", 1280, 720, 30)) // 2)
    script = scripts.write(b.dir("ambient-in") / "bench.txt", [scripts.typing_scene(lines, 130 * seconds // 60)])
    times: dict[str, list[float]] = {"ambient": [], "none": []}
    soundtrack: dict[str, list[float]] = {"ambient": [], "none": []}
    try:
        for n in range(b.runs):
            for bed in ("ambient", "none") if n % 2 == 0 else ("none", "ambient"):
                run_dir = b.dir("ambient")
                run = measure.renderer([f"batch.inputs=[{script}]", "voice=espeak",
                                        f"cache.dir={b.dir('ambient-cache')}", f"script.min_last_scene_s={seconds}",
                                        *b.format, *(["audio.music=ambient"] if bed == "ambient" else [])], run_dir)
                times[bed].append(run.seconds)
                soundtrack[bed].append(measure.span(measure.record(run_dir, "bench"), {"soundtrack"}))
    except measure.Failed as exc:
        return [failed("P9a", "cold render with the ambient bed vs none", f"≤ {TARGET}×", exc)]
    pad = ambient.Pad.of(vars(AmbientConfig()))
    synthesis = []
    for _ in range(b.runs):
        started = time.perf_counter()
        ambient.synthesise("benchmark", 300, pad, channels=2)
        synthesis.append(time.perf_counter() - started)
    with_bed, without = measure.median(times["ambient"]), measure.median(times["none"])
    track_with, track_without = measure.median(soundtrack["ambient"]), measure.median(soundtrack["none"])
    synth = measure.median(synthesis)
    return [
        Row("P9a", f"a {seconds} s script cold with audio.music=ambient vs no music bed (espeak-ng)",
            f"ambient {with_bed:.1f} s (soundtrack {track_with:.1f} s)",
            f"none {without:.1f} s (soundtrack {track_without:.1f} s)", f"{with_bed / without:.2f}×",
            f"≤ {TARGET}×", with_bed / without <= TARGET,
            [f"ambient {a:.1f} s (soundtrack {sa:.2f} s), none {n:.1f} s (soundtrack {sn:.2f} s)"
             for a, n, sa, sn in zip(times["ambient"], times["none"], soundtrack["ambient"], soundtrack["none"])]),
        Row("P9b", "the ambient pad for a 5-minute script: synthesis, stereo", f"{synth:.2f} s", "—", "—",
            f"≤ {SYNTH_TARGET_S:g} s", synth <= SYNTH_TARGET_S, [", ".join(f"{s:.2f} s" for s in synthesis)]),
    ]
