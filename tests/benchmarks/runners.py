"""One 8-script batch on each runner, side by side: sequential vs loky vs a Dask LocalCluster of 2 workers
(and the same cluster with batch.dask.split_scenes), with each one's ratio to sequential.

    python -m tests.benchmarks.runners [--scripts 8] [--format landscape_720p] [--scene-s 8] [--jobs 2]

"wall" is the whole command (Python, Hydra, the cluster's start); "render" is the batch itself, from the
manifest. Every runner must give the same video streams: the table says so per runner.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """SCRIPT: BENCH_{n:04d} — RUNNERS
[0:00 – Boot]
Visual: A server farm under a red sky, take {n}.
ON-SCREEN TEXT:
$ tail -f /var/log/descent.log
Narration:
“The first red flag was a loop, number {n}.”

[0:{s:02d} – Anomaly]
Visual: A blue sea at night.
ON-SCREEN TEXT:
$ uptime
Narration:
“And then the logs went quiet.”
END BENCH_{n:04d}
"""


def video_md5s(run_dir: Path) -> dict[str, str]:
    return {p.stem: subprocess.run(["ffmpeg", "-v", "error", "-i", str(p), "-map", "0:v", "-c", "copy", "-f", "md5",
                                    "-"], capture_output=True, text=True, check=True).stdout.strip()
            for p in sorted(run_dir.glob("*/*.mp4"))}


def run(label: str, overrides: list[str], workdir: Path) -> dict:
    run_dir = workdir / "".join(c if c.isalnum() else "-" for c in label)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "renderer", *overrides, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{label} failed:\n{result.stderr[-2000:]}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {"label": label, "wall": wall, "render": manifest["seconds"], "videos": video_md5s(run_dir)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=8)
    parser.add_argument("--format", default="landscape_720p")
    parser.add_argument("--scene-s", type=int, default=8, help="length of each script's first scene")
    parser.add_argument("--jobs", type=int, default=2, help="loky jobs and LocalCluster workers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runners-bench-") as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for n in range(args.scripts):
            (inputs / f"bench{n}.txt").write_text(SCRIPT.format(n=n, s=args.scene_s), encoding="utf-8")
        base = [f"format={args.format}", f"batch.inputs=[{inputs}/*.txt]", "cache.enabled=false",
                "limits.memory_gb=0", f"batch.n_jobs={args.jobs}", f"limits.max_jobs={args.jobs}"]
        dask = ["batch.backend=dask", f"batch.dask.workers={args.jobs}"]
        rows = [run("sequential", [*base, "batch.backend=sequential"], Path(tmp)),
                run("loky", [*base, "batch.backend=loky"], Path(tmp)),
                run(f"dask LocalCluster({args.jobs})", [*base, *dask], Path(tmp)),
                run(f"dask LocalCluster({args.jobs}) split", [*base, *dask, "batch.dask.split_scenes=true"],
                    Path(tmp))]
    first = rows[0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.scripts} scripts, {args.format}, {args.jobs} job(s)/worker(s), on {_cores()} core(s) "
          f"(load average at the end: {load}: other work on the machine skews the ratios)\n")
    print("| runner | wall s | render s | render vs sequential | same videos |")
    print("|---|---:|---:|---:|---|")
    for row in rows:
        same = "yes" if row["videos"] == first["videos"] else "NO"
        print(f"| {row['label']} | {row['wall']:.1f} | {row['render']:.1f} | {row['render'] / first['render']:.2f} "
              f"| {same} |")


def _cores() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
