"""The sample batch cold with each offline voice, measured side by side (runs alternate, so a busy machine
slows both alike).

    python -m tests.benchmarks.voices [--rounds 2] [--voices espeak,piper] [--inputs "[scripts/*.txt]"]

Prints one table: wall seconds (the target: piper's cold batch at most 1.2x espeak-ng's) and CPU seconds
of the whole process tree (less sensitive to other work on a shared machine).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = 1.2


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def cold(voice: str, inputs: str, workdir: Path, n: int) -> tuple[float, float]:
    """Wall and CPU seconds of one cold render of the batch."""
    run_dir = workdir / f"{voice}-{n}"
    started, cpu = time.perf_counter(), _cpu()
    result = subprocess.run([sys.executable, "-m", "renderer", f"voice={voice}", f"batch.inputs={inputs}",
                             f"cache.dir={run_dir}/cache", f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"voice={voice} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--voices", default="espeak,piper")
    parser.add_argument("--inputs", default="[scripts/*.txt,scripts/*.md]", help="batch.inputs (default: the sample batch)")
    args = parser.parse_args()
    voices = args.voices.split(",")
    times: dict[str, list[float]] = {v: [] for v in voices}
    cpus: dict[str, list[float]] = {v: [] for v in voices}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(args.rounds):
            for voice in voices if n % 2 == 0 else reversed(voices):
                wall, cpu = cold(voice, args.inputs, Path(tmp), n)
                times[voice].append(wall)
                cpus[voice].append(cpu)
    base, base_cpu = statistics.median(times[voices[0]]), statistics.median(cpus[voices[0]])
    print(f"{'voice':<10}{'wall s':>8}{'runs':>24}{'vs ' + voices[0]:>12}{'CPU s':>8}{'vs ' + voices[0]:>12}")
    for voice in voices:
        median, cpu = statistics.median(times[voice]), statistics.median(cpus[voice])
        runs = " ".join(f"{t:.1f}" for t in times[voice])
        print(f"{voice:<10}{median:>8.1f}{runs:>24}{median / base:>12.2f}{cpu:>8.1f}{cpu / base_cpu:>12.2f}")
    if "piper" in times and "espeak" in times:
        ratio = statistics.median(times["piper"]) / statistics.median(times["espeak"])
        print(f"piper {'meets' if ratio <= TARGET else 'MISSES'} the target (cold batch <= {TARGET}x espeak-ng): "
              f"{ratio:.2f}x")


if __name__ == "__main__":
    main()
