"""Cold render vs unchanged rerun vs theme-only change, measured side by side on the sample batch.

    python -m tests.benchmarks.incremental [--format landscape_720p] [--inputs "[scripts/*.txt]"]

Prints one table; the target is an unchanged rerun costing at most 5 % of a cold run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(label: str, overrides: list[str], workdir: Path) -> dict:
    run_dir = workdir / label
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "renderer", *overrides, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{label} failed:\n{result.stderr[-2000:]}")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {"label": label, "seconds": seconds, "hits": manifest["cache"]["hits"],
            "misses": manifest["cache"]["misses"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="landscape_720p")
    parser.add_argument("--inputs", default="[scripts/*.txt,scripts/*.md]", help="batch.inputs (default: the sample batch)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"format={args.format}", f"batch.inputs={args.inputs}", f"cache.dir={tmp}/cache"]
        rows = [run("cold", base, Path(tmp)),
                run("unchanged rerun", base, Path(tmp)),
                run("theme change", [*base, "theme=matrix"], Path(tmp))]
    cold = rows[0]["seconds"]
    print(f"{'run':<18}{'seconds':>9}{'vs cold':>9}{'stages run':>12}{'from cache':>12}")
    for row in rows:
        print(f"{row['label']:<18}{row['seconds']:>9.1f}{row['seconds'] / cold:>9.1%}{row['misses']:>12}"
              f"{row['hits']:>12}")
    verdict = "meets" if rows[1]["seconds"] / cold <= 0.05 else "MISSES"
    print(f"unchanged rerun {verdict} the target (<= 5 % of cold); the times include ~1-2 s of start-up")


if __name__ == "__main__":
    main()
