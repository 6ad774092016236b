"""P3: the API-bound stages, sequential vs the configured concurrency, against the local doubles.

A script of N scenes with voice=elevenlabs and visual=runway against renderer.devtools.fakes on 127.0.0.1: every
voice request answers after a fixed latency, every Runway task takes a fixed time (polled every 0.25 s).
Measured from the script's record: the span from the first voice or visual node starting to the last one
ending. Sequential is one stage thread and one request in flight per service; configured is the defaults.
The ideal is the total latency of all requests over the configured concurrency.
"""

from __future__ import annotations

import os

from renderer.config import ApiConcurrencyConfig, LimitsConfig
from renderer.devtools.fakes import FakeAPI
from tests.benchmarks import measure, scripts
from tests.benchmarks.report import Row, failed

KEY = "benchmark-key"  # only ever sent to the double on 127.0.0.1
SAVING_TARGET, IDEAL_TARGET = 0.70, 1.3
SEQUENTIAL = ["limits.stage_threads=1", "limits.api_concurrency.elevenlabs=1", "limits.api_concurrency.runway=1"]


def rows(b) -> list[Row]:
    scenes, voice_s, task_s = (4, 0.5, 1.5) if b.quick else (12, 1.0, 3.0)
    concurrency = min(LimitsConfig.stage_threads, ApiConcurrencyConfig.elevenlabs, ApiConcurrencyConfig.runway)
    ideal = scenes * (voice_s + task_s) / concurrency
    script = scripts.write(b.dir("cloud-in") / "bench.txt", scripts.edit_scenes(scenes * 5, scenes))
    env = {**os.environ, "ELEVENLABS_API_KEY": KEY, "RUNWAY_API_KEY": KEY}
    try:
        with FakeAPI(elevenlabs_key=KEY, runway_key=KEY, latency={"tts": voice_s}, task_seconds=task_s) as api:
            base = [f"batch.inputs=[{script}]", "voice=elevenlabs", "visual=runway", f"voice.base_url={api.url}",
                    f"visual.base_url={api.url}", "visual.poll_interval_s=0.25", "visual.poll_jitter_s=0",
                    "cache.enabled=false", "script.min_last_scene_s=5", "format=landscape_720p", "format.width=320",
                    "format.height=180"]
            sequential = [_span(b, [*base, *SEQUENTIAL], env) for _ in range(b.runs)]
            configured = [_span(b, base, env) for _ in range(b.runs)]
    except measure.Failed as exc:
        return [failed("P3a", "cloud stages: configured vs sequential", f"≥ {SAVING_TARGET:.0%} less", exc)]
    seq, conc = measure.median(sequential), measure.median(configured)
    detail = [f"sequential {s:.1f} s, configured {c:.1f} s" for s, c in zip(sequential, configured)]
    what = f"{scenes} scenes × (voice {voice_s:g} s + Runway task {task_s:g} s)"
    return [Row("P3a", f"cloud stages, {what}: configured concurrency ({concurrency}) vs sequential",
                f"{conc:.1f} s", f"sequential {seq:.1f} s", f"{1 - conc / seq:.0%} less", f"≥ {SAVING_TARGET:.0%} less",
                1 - conc / seq >= SAVING_TARGET, detail),
            Row("P3b", "cloud stages vs the ideal (total latency / concurrency)", f"{conc:.1f} s", f"ideal {ideal:.1f} s",
                f"{conc / ideal:.2f}×", f"≤ {IDEAL_TARGET}×", conc / ideal <= IDEAL_TARGET)]


def _span(b, overrides: list[str], env: dict) -> float:
    run_dir = b.dir("cloud")
    measure.renderer(overrides, run_dir, env=env)
    record = measure.record(run_dir, "bench")
    if record.get("fallbacks"):
        raise measure.Failed(f"a cloud stage fell back: {record['fallbacks']}")
    return measure.span(record, {"voice", "visual"})
