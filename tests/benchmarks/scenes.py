"""What an edit costs and how memory scales, measured side by side in one run.

    python -m tests.benchmarks.scenes [--quick] [--against REV [--only-against]]

Renders synthetic LOG scripts with `python -m renderer` as a user does (720p, espeak, procedural, n_jobs=1) and
prints a markdown table: wall seconds, share of the cold render, the nodes that ran (ok or fallback in the
per-script record) and the peak memory of the whole process tree
(PSS: a shared library page counts once, however many ffmpeg processes map it). Rows, with a 5-minute 9-scene script on one
cache, and targets: cold; unchanged rerun <= 5 % of cold; one scene's narration edited <= 10 %; one scene's
on-screen text edited <= 1/N + 10 %; theme=matrix (listed only); floor: one ffmpeg re-encode of the cold MP4,
cold <= 1.5x floor. Memory (fresh caches): 1-minute 3-scene vs 10-minute 30-scene script, peak PSS <= 1.1x.
--quick uses 30 s / 3 scenes for the edit rows and 20 s / 2 vs 30 s / 3 scenes for memory (a minute or two).
--against REV also renders the cold row (without --quick: the memory rows too) with REV in a temporary git
worktree, target: working tree <= 1.1x REV; --only-against runs every row with REV alone (a baseline). A failed
render is reported with the tail of its stderr. Always exits 0: a report, not a test.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import psutil

ROOT = Path(__file__).resolve().parents[2]
NARRATION = ("One or two sentences of narration for scene {i}. The {colour} signal drifts across sector {i}.",
             "Edited narration for scene {i}, rewritten just once. The {colour} signal fades from sector {i}.")
COLOURS = ["red", "golden", "green", "cyan", "blue", "violet", "grey", "white"]
SIZES = {False: {"long": (300, 9), "short": (60, 3), "big": (600, 30)},  # seconds, scenes
         True: {"long": (30, 3), "short": (20, 2), "big": (30, 3)}}
ENCODE = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k"]
Code = NamedTuple("Code", [("label", str), ("root", Path), ("env", "dict | None")])  # a checkout to measure


@dataclass
class Run:
    seconds: float
    mem_mb: float
    returncode: int
    stderr: str = ""
    record: dict | None = None
    mp4: Path | None = None
    failed: bool = False  # non-zero exit, or the script's record says it did not render


@dataclass
class Bench:
    tmp: Path
    sizes: dict
    rows: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    runs: int = 0

    def render(self, code: Code, kind: str, cache: str, extra=(), edit: str = "") -> Run:
        total, scenes = self.sizes[kind]
        script = write_script(self.tmp / "scripts" / f"{kind}.txt", total, scenes, edit)
        self.runs += 1
        run_dir = self.tmp / "runs" / f"{self.runs:02d}-{kind}"
        run = measure([sys.executable, "-m", "renderer", f"batch.inputs=[{script}]", "batch.n_jobs=1",
                       f"cache.dir={self.tmp / cache}", f"hydra.run.dir={run_dir}", "format=landscape_720p",
                       f"script.min_last_scene_s={total / scenes:g}", *extra], code.root, code.env)
        record, run.mp4 = run_dir / kind / f"{kind}.json", run_dir / kind / f"{kind}.mp4"
        run.record = json.loads(record.read_text()) if record.exists() else None
        run.failed |= (run.record or {}).get("status") != "ok"
        return run

    def add(self, label: str, code: str, run: Run | None, ratio: str = "", target: str = "", met=None):
        verdict = "" if met is None else ("meets" if met else "MISSES")
        if run and run.failed:
            verdict = f"FAILED (exit {run.returncode})"
            self.failures.append((label, code, run))
        seconds, nodes, mem = (f"{run.seconds:.1f}", nodes_run(run.record), f"{run.mem_mb:.0f}") if run else ("",) * 3
        self.rows.append(f"| {label} | {code} | {seconds} | {ratio} | {target} | {verdict} | {nodes} | {mem} |")
        print(f"  {label} ({code}): {seconds or ratio} {verdict}", file=sys.stderr, flush=True)


def write_script(path: Path, total: int, scenes: int, edit: str = "") -> Path:
    """A LOG script; `edit` ('narration' or 'screen') changes one middle scene (one with on-screen text)."""
    middle = scenes // 2 + 1
    edited = {"narration": middle, "screen": middle if middle % 2 else middle - 1}.get(edit)
    body = [scene(i, round((i - 1) * total / scenes), edit if i == edited else "") for i in range(1, scenes + 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([f"SCRIPT: BENCH_0001 — SYNTHETIC {total} S", f"{scenes} scenes for the benchmark",
                               "", *body, "END BENCH_0001", ""]), encoding="utf-8")
    return path


def scene(i: int, start: int, edit: str) -> str:
    colour = COLOURS[i % len(COLOURS)]
    lines = [f"[{start // 60}:{start % 60:02d} – Scene {i}]", f"Visual: A {colour} sky over a server farm, scene {i}"]
    if i % 2:  # every other scene types something
        lines += ["ON-SCREEN TEXT:", f"$ probe --sector {i}" + (" --verbose" if edit == "screen" else ""),
                  f"sector {i}: " + ("anomaly logged" if edit == "screen" else "nominal")]
    said = NARRATION[edit == "narration"].format(i=i, colour=colour)
    return "\n".join([*lines, "Narration:", f"“{said}”", ""])


def measure(cmd: list, cwd: Path, env: dict | None = None) -> Run:
    """Wall time and peak PSS of the process tree of `cmd` (the process and all its descendants, summed)."""
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err:
        started, peak = time.perf_counter(), 0
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            peak = max(peak, tree_pss(proc.pid))
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.05)
        seconds = time.perf_counter() - started
        err.seek(0)
        return Run(seconds, peak / 2**20, proc.returncode, err.read(), failed=proc.returncode != 0)


def tree_pss(pid: int) -> int:
    total = 0
    with suppress(psutil.NoSuchProcess):  # the process itself may be gone between poll() and here
        for proc in [parent := psutil.Process(pid), *parent.children(recursive=True)]:
            with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_full_info().pss
    return total


def nodes_run(record: dict | None) -> str:
    """'voice/4, soundtrack, mux': node names when a stage ran one or two, 'stage ×N' when more."""
    if record is None:  # not a render (the floor), or it failed before writing one: the verdict says so
        return ""
    stages, groups = record.get("stages", []), {}  # stage -> names of its nodes that ran
    for node in stages:
        if node.get("status") in ("ok", "fallback"):
            groups.setdefault(node.get("stage") or node["name"], []).append(node["name"])
    text = ", ".join(", ".join(names) if len(names) <= 2 else f"{stage} ×{len(names)}"
                     for stage, names in groups.items()) or "none"
    for status in ("fallback", "failed"):
        names = [node["name"] for node in stages if node.get("status") == status]
        text += f" ({status}: {', '.join(names)})" if names else ""
    return text


def suite(b: Bench, code: Code) -> Run:
    """Every row for one checkout: the edits on one cache, the floor, the memory rows."""
    cache, scenes = f"cache-{len(b.rows)}", b.sizes["long"][1]
    cold = b.render(code, "long", cache)
    b.add("cold render", code.label, cold, "100%")
    for label, edit, extra, target in [("unchanged rerun", "", (), 0.05),
                                       ("one scene's narration edited", "narration", (), 0.10),
                                       ("one scene's on-screen text edited", "screen", (), 1 / scenes + 0.10),
                                       ("theme change (theme=matrix)", "", ("theme=matrix",), None)]:
        run = b.render(code, "long", cache, extra, edit)
        share = None if cold.failed else run.seconds / cold.seconds
        b.add(label, code.label, run, "" if share is None else f"{share:.1%}", f"≤ {target:.0%}" if target else "list only",
              None if target is None or share is None else share <= target)
    floor_row(b, code.label, cold)
    memory_rows(b, code)
    return cold


def floor_row(b: Bench, code: str, cold: Run):
    floor = measure(["ffmpeg", "-y", "-v", "error", "-i", str(cold.mp4), *ENCODE, str(b.tmp / "floor.mp4")], b.tmp)
    ratio = cold.seconds / floor.seconds
    b.add("floor: one ffmpeg re-encode of the cold MP4", code, floor, f"cold {ratio:.2f}×", "cold ≤ 1.5×", ratio <= 1.5)


def memory_rows(b: Bench, code: Code):
    runs = [b.render(code, kind, f"cache-{len(b.rows)}-{kind}") for kind in ("short", "big")]
    for kind, run in zip(("short", "big"), runs):
        b.add(f"memory: cold render, {b.sizes[kind][0]} s / {b.sizes[kind][1]} scenes", code.label, run)
    if not any(run.failed for run in runs):
        ratio = runs[1].mem_mb / runs[0].mem_mb
        b.add("memory: peak PSS, long / short", code.label, None, f"{ratio:.2f}×", "≤ 1.1×", ratio <= 1.1)


def against_rows(b: Bench, rev: Code, cold_work: Run | None, quick: bool):
    """REV's cold render next to the working tree's; every row when the working tree was skipped."""
    if cold_work is None:
        return suite(b, rev)
    cold_rev = b.render(rev, "long", f"cache-{len(b.rows)}")
    b.add("cold render", rev.label, cold_rev)
    if not (cold_work.failed or cold_rev.failed):
        ratio = cold_work.seconds / cold_rev.seconds
        b.add(f"cold: working tree / {rev.label}", "both", None, f"{ratio:.2f}×", "≤ 1.1×", ratio <= 1.1)
    if not quick:
        memory_rows(b, rev)


@contextmanager
def worktree(rev: str, tmp: Path):
    """REV checked out in a temporary worktree, run with its own package first on the path."""
    path = tmp / "worktree"
    added = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], stdout=sys.stderr)
    if added.returncode:
        sys.exit(f"git worktree add {rev} failed")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")]))}
    try:
        yield Code(rev, path, env)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()


def header(args, sizes: dict) -> list[str]:
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--", "renderer", "conf") else ""
    against = [f"- against: {args.against} = {git('rev-parse', '--short', args.against)}"] if args.against else []
    return [f"- machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.1f} GB RAM, "
            f"load {os.getloadavg()[0]:.2f} at start; {ffmpeg}",
            f"- working tree: {git('rev-parse', '--short', 'HEAD')}{dirty}"
            f"{' (not measured: --only-against)' if args.only_against else ''}", *against,
            f"- edit rows: {sizes['long'][0]} s / {sizes['long'][1]} scenes on one cache; memory rows: fresh caches; "
            "720p, espeak, procedural visuals, batch.n_jobs=1"]


def report(b: Bench, lines: list[str]):
    print("\n".join(["## Scene edits and memory", "", *lines, f"- load {os.getloadavg()[0]:.2f} at the end", "",
                     "| run | code | seconds | vs cold | target | verdict | nodes run | peak tree PSS MB |",
                     "|---|---|---:|---:|---|---|---|---:|", *b.rows]))
    for label, code, run in b.failures:
        tail = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", run.stderr).replace("\r", "\n").splitlines() if line.strip()]
        print(f"\n### FAILED: {label} ({code}), exit {run.returncode}\n```\n" + "\n".join(tail[-15:]) + "\n```")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short scripts, about a minute in all")
    parser.add_argument("--against", metavar="REV", help="also measure REV in a temporary git worktree")
    parser.add_argument("--only-against", action="store_true", help="measure only REV, not the working tree")
    args = parser.parse_args()
    if args.only_against and not args.against:
        parser.error("--only-against needs --against REV")
    lines = header(args, SIZES[args.quick])
    with tempfile.TemporaryDirectory(prefix="scenes-bench-") as tmp:
        b = Bench(Path(tmp), SIZES[args.quick])
        cold_work = None if args.only_against else suite(b, Code("working tree", ROOT, None))
        if args.against:
            with worktree(args.against, Path(tmp)) as rev:
                against_rows(b, rev, cold_work, args.quick)
    report(b, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
