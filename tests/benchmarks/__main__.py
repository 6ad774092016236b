"""Every performance claim measured against its floor and its peers, side by side in one run.

    python -m tests.benchmarks [--quick] [--runs N] [--only P1,P4,...] [--out FILE]

Prints a markdown table (one row per claim: what was measured, both figures, their ratio, the target, pass or
MISS) and writes it to tests/benchmarks/results.md. Each figure is the median of --runs runs (default 3); the
machine (cores, memory, ffmpeg) is in the header. --quick measures the same rows once each on small workloads
(about 6 minutes in all) into results-quick.md: its figures show that everything runs, not what the targets
are about. P2 needs MoviePy: `pip install -e ".[bench]"` (without it the row says so). Exit code 0 when every
row passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks import (
    ambient_bed,
    batch,
    cloud,
    codecs,
    edits,
    look,
    measure,
    peer,
    report,
    startup,
    typing_cost,
    voice_process,
    voices,
)

CLAIMS = {"P1": edits, "P2": peer, "P3": cloud, "P4": edits, "P5": batch, "P6": startup, "P7": typing_cost,
          "P8": voices, "P9": ambient_bed, "P10": codecs, "P11": look, "P12": voice_process}
RESULTS = Path(__file__).with_name("results.md")
QUICK_RESULTS = RESULTS.with_name("results-quick.md")  # not committed: a quick run never replaces the real table


class Bench:
    """What every claim's module gets: a scratch dir, how many runs, how big."""

    format = ["format=landscape_720p", "format.fps=30"]

    def __init__(self, tmp: Path, runs: int, quick: bool):
        self.tmp, self.runs, self.quick, self._made = tmp, runs, quick, 0

    def dir(self, name: str) -> Path:
        """A new empty directory for every call."""
        self._made += 1
        path = self.tmp / f"{self._made:03d}-{name}"
        path.mkdir(parents=True)
        return path


def claim_of(row_id: str) -> str:
    """The claim a row belongs to: P4c -> P4, P10a -> P10."""
    return re.match(r"P\d+", row_id).group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small workloads: a few minutes in all")
    parser.add_argument("--runs", type=int, help="runs per figure, the median is shown (default 3; 1 with --quick)")
    parser.add_argument("--only", default="", help="comma-separated claims, e.g. P1,P4 (default: all)")
    parser.add_argument("--out", type=Path, help=f"where the table goes (default: {RESULTS.name}, with --quick "
                                                   f"{QUICK_RESULTS.name}, beside this file)")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.out = args.out or (QUICK_RESULTS if args.quick else RESULTS)
    wanted = [c.strip().upper() for c in args.only.split(",") if c.strip()] or list(CLAIMS)
    if unknown := [c for c in wanted if c not in CLAIMS]:
        parser.error(f"unknown claim(s) {', '.join(unknown)}: one of {', '.join(CLAIMS)}")
    modules = list(dict.fromkeys(CLAIMS[c] for c in wanted))  # P1 and P4 come from the same renders
    # the package's bytecode, as `pip install .` writes it (and Python, on a first run): where
    # PYTHONDONTWRITEBYTECODE is set, every measured start would compile each of its modules again (~0.2 s)
    compileall.compile_dir(measure.ROOT / "renderer", quiet=1)
    load, started = os.getloadavg()[0], time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp:
        bench = Bench(Path(tmp), args.runs, args.quick)
        for module in modules:
            name, ids = module.__name__.rsplit(".", 1)[1], [c for c in wanted if CLAIMS[c] is module]
            print(f"measuring {'/'.join(ids)} ({name}) …", file=sys.stderr, flush=True)
            try:
                rows += [row for row in module.rows(bench) if claim_of(row.id) in wanted]
            except Exception as exc:  # a broken module costs its own rows, not the table
                rows.append(report.failed("/".join(ids), f"{name}: crashed", "", f"{type(exc).__name__}: {exc}"))
    rows.sort(key=lambda row: (int(claim_of(row.id)[1:]), row.id))
    header = [f"- machine: {report.machine()}",
              f"- {'--quick: small workloads, ' if args.quick else ''}"
              f"{'one run' if args.runs == 1 else f'median of {args.runs} runs'} per figure; "
              f"load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
              f"{(time.monotonic() - started) / 60:.0f} min in all",
              f"- command: `{' '.join(['python -m tests.benchmarks', *(sys.argv[1:] if argv is None else argv)])}`"]
    text = report.markdown(rows, header)
    print(text)
    report.write(text, args.out)
    return 0 if all(row.met for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
