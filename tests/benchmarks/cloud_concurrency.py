"""Cloud stages sequentially vs concurrently, against the local API doubles (a comparison, not a test).

A 12-scene workload: each scene needs narration from ElevenLabs (the double answers after 1 s) and a clip
from Runway (its tasks take 3 s). Sequentially that is ~48 s; with the stage threads and per-service
semaphores at 4 the same work should take at least 70 % less time.

    python -m tests.benchmarks.cloud_concurrency [--scenes 12] [--concurrency 4] [--voice-latency 1]
                                                 [--task-seconds 3]
Exit code 0 when the target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from renderer.fakes import FakeAPI
from renderer.providers.elevenlabs import ElevenLabsVoice
from renderer.providers.runway import RunwayVisual
from renderer.reliability import build_guard

TARGET_SAVING = 0.70
KEY = "benchmark-key"  # only ever sent to the double on 127.0.0.1
RETRY = {"attempts": 2, "wait_s": 0.1, "max_wait_s": 1, "exponential": True, "jitter_s": 0.05}
BREAKER = {"fail_max": 100, "reset_timeout_s": 60}


def scene_jobs(api: FakeAPI, workdir: Path, scenes: int, concurrency: int) -> list[Callable[[], object]]:
    """Per scene, in pipeline order: its voice, then its visual (both guarded like in a run)."""
    voice = ElevenLabsVoice(base_url=api.url)
    visual = RunwayVisual(base_url=api.url, poll_interval_s=0.25, poll_jitter_s=0.05)
    voice.guard = build_guard("elevenlabs", BREAKER, RETRY, timeout_s=30, max_concurrency=concurrency)
    visual.guard = build_guard("runway", BREAKER, RETRY, timeout_s=30, max_concurrency=concurrency)
    jobs: list[Callable[[], object]] = []
    for n in range(scenes):
        line = [(f"Scene {n + 1}. The first red flag was a loop.", None)]
        jobs.append(lambda n=n, line=line: voice.synthesize(line, workdir / f"voice-{n}.wav", timeout=60))
        jobs.append(lambda n=n: visual.render(f"Scene {n + 1}: a server farm under a red sky.",
                                              workdir / f"visual-{n}.mp4", width=160, height=90, duration=5,
                                              timeout=120))
    return jobs


def timed_run(api: FakeAPI, scenes: int, concurrency: int) -> float:
    with tempfile.TemporaryDirectory(prefix="cloud-bench-") as tmp:
        jobs = scene_jobs(api, Path(tmp), scenes, concurrency)
        started = time.perf_counter()
        if concurrency == 1:
            for job in jobs:
                job()
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                for future in [pool.submit(job) for job in jobs]:
                    future.result()
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--voice-latency", type=float, default=1.0)
    parser.add_argument("--task-seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    os.environ["ELEVENLABS_API_KEY"] = os.environ["RUNWAY_API_KEY"] = KEY
    with FakeAPI(latency={"tts": args.voice_latency}, task_seconds=args.task_seconds) as api:
        sequential = timed_run(api, args.scenes, 1)
        concurrent = timed_run(api, args.scenes, args.concurrency)
    saving = 1 - concurrent / sequential
    print(f"{args.scenes} scenes: voice {args.voice_latency:g} s per request, Runway task {args.task_seconds:g} s")
    print(f"{'mode':<16}{'seconds':>10}")
    print(f"{'sequential':<16}{sequential:>10.1f}")
    print(f"{f'concurrency {args.concurrency}':<16}{concurrent:>10.1f}")
    print(f"time saved: {saving:.0%} (target >= {TARGET_SAVING:.0%}); speed-up x{sequential / concurrent:.1f}")
    return 0 if saving >= TARGET_SAVING else 1


if __name__ == "__main__":
    sys.exit(main())
