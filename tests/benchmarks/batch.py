"""P5: one batch of 8 scripts on each runner: batch.n_jobs=1, n_jobs=2 (loky), and a Dask LocalCluster of 2.

CPU utilisation is the user + sys time of the whole process tree over wall time × the cores. On a 2-core
machine x264 already keeps both cores busy within one script, so more jobs cannot be much faster: the rows
claim that they are not slower, and that every runner gives the same videos. No memory is sampled meanwhile:
reading the processes' smaps would slow what is measured.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.benchmarks import measure, scripts
from tests.benchmarks.report import Row, failed

UTILISATION_TARGET, SLOWER_TARGET = 0.90, 1.1
RUNNERS = [("n_jobs=1", ["batch.n_jobs=1"]), ("n_jobs=2", ["batch.n_jobs=2", "batch.backend=loky"]),
           ("Dask LocalCluster(2)", ["batch.n_jobs=2", "batch.backend=dask", "batch.dask.workers=2"])]


def rows(b) -> list[Row]:
    count = 4 if b.quick else 8
    inputs = b.dir("batch-in")
    for n in range(count):
        scripts.write(inputs / f"bench{n}.txt", scripts.edit_scenes(16, 2), title=f"BENCH_{n:04d} — RUNNERS")
    cores = len(os.sched_getaffinity(0))
    base = [f"batch.inputs=[{inputs}/*.txt]", "cache.enabled=false", "limits.memory_gb=0", "limits.max_jobs=2",
            "script.min_last_scene_s=8", *b.format]
    try:
        runs = {label: [_batch(b, [*base, *extra]) for _ in range(b.runs)] for label, extra in RUNNERS}
    except measure.Failed as exc:
        return [failed("P5a", "batch runners", f"CPU ≥ {UTILISATION_TARGET:.0%}", exc)]
    wall = {label: measure.median([r[0].seconds for r in rs]) for label, rs in runs.items()}
    use = {label: measure.median([r[0].cpu_s / (r[0].seconds * cores) for r in rs]) for label, rs in runs.items()}
    detail = {label: [f"{r[0].seconds:.1f} s wall, {r[0].cpu_s:.1f} CPU-s" for r in rs] for label, rs in runs.items()}
    first = RUNNERS[0][0]
    out = []
    for n, (label, _) in enumerate(RUNNERS):
        ratio = wall[label] / wall[first]
        met = use[label] >= UTILISATION_TARGET and (n == 0 or ratio <= SLOWER_TARGET)
        out.append(Row(f"P5{'abc'[n]}", f"{count} scripts, {label}: CPU utilisation"
                       + ("" if n == 0 else f"; wall vs {first}"),
                       f"{wall[label]:.1f} s, CPU {use[label]:.0%} of {cores} cores", "—" if n == 0 else
                       f"{first} {wall[first]:.1f} s", "—" if n == 0 else f"{ratio:.2f}×",
                       f"CPU ≥ {UTILISATION_TARGET:.0%}" + ("" if n == 0 else f"; ≤ {SLOWER_TARGET}× ({cores} cores)"),
                       met, detail[label]))
    videos = {label: rs[0][1] for label, rs in runs.items()}
    same = all(v == videos[first] for v in videos.values())
    out.append(Row("P5d", "every runner gives the same videos", f"{len(videos[first])} video streams' md5",
                   f"{len(RUNNERS)} runners", "—", "identical", same))
    return out


def _batch(b, overrides: list[str]) -> tuple[measure.Run, dict[str, str]]:
    run_dir = b.dir("batch")
    return measure.renderer(overrides, run_dir, memory=False), _video_md5s(run_dir)


def _video_md5s(run_dir: Path) -> dict[str, str]:
    return {p.stem: subprocess.run(["ffmpeg", "-v", "error", "-i", str(p), "-map", "0:v", "-c", "copy", "-f", "md5",
                                    "-"], capture_output=True, text=True, check=True).stdout.strip()
            for p in sorted(run_dir.glob("*/*.mp4"))}
