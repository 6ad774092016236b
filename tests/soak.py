"""A soak of the whole batch against the local API doubles: N generated scripts, requests failing at a fault
rate, the batch killed with SIGKILL part-way and resumed in place.

    python -m tests.soak [--scripts 200] [--fault-rate 0.5] [--jobs 2] [--kill-at-done K | --kill-after S]
                         [--visual runway|stock] [--seed 7] [--dir DIR] [--keep]

Not part of the test suite (it takes minutes). The scripts alternate LOG and Markdown, 2-4 short scenes each,
some with on-screen text. The ElevenLabs/Runway doubles and the Pexels/Pixabay doubles
(renderer/devtools/) run in this process on 127.0.0.1; the batch runs as a subprocess with voice=elevenlabs and
visual=runway (or stock) pointed at them, the keys dummy values. Once K videos are out (default: a third) or
S seconds have passed, every process of the batch (workers and ffmpeg included) is killed with SIGKILL, as a
crash or the OOM killer would; then ``resume=<run dir>`` finishes it. Printed at the end:

  delivered         scripts whose video is in the run dir with status ok, of all
  fallbacks         how many stages fell back, by stage and stand-in
  decode errors     videos ffmpeg cannot decode cleanly (``ffmpeg -v error -i V -f null -``)
  leftover temp     ``*.part`` files anywhere in the run dir, entries left in its tmp/
  stray processes   processes of the killed batch still alive after the resume
  keys found        files of the run dir or the cache holding one of the dummy keys (must be 0)
  peak memory       the largest sum of RSS over the batch's process tree, sampled every 0.25 s

Exit code 0 when every script was delivered and nothing else is amiss, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from renderer.devtools.fakes import FakeAPI
from renderer.devtools.stock_fakes import FakeStock
from renderer.media import ffmpeg

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"ELEVENLABS_API_KEY": "el-SOAK-dummy-key-4b9d21", "RUNWAY_API_KEY": "rw-SOAK-dummy-key-8e07c3",
        "PEXELS_API_KEY": "px-SOAK-dummy-key-13fa6d", "PIXABAY_API_KEY": "pb-SOAK-dummy-key-c27e90"}
SMALL = ["format.width=320", "format.height=180", "format.fps=15", "encode.preset=ultrafast", "visual.fps=5",
         "script.min_last_scene_s=2"]
WORDS = ("signal", "harbour", "server", "relay", "archive", "engine", "orbit", "forest", "glacier", "city",
         "reactor", "tunnel", "beacon", "storm", "market", "desert", "circuit", "library", "bridge", "ocean")
COMMANDS = ("$ uptime", "$ tail -n 3 /var/log/relay.log", "> status --all", "# nothing new", "$ ls -la /srv")


# --------------------------------------------------------------------------- the scripts


def log_script(n: int, rng: random.Random) -> str:
    lines = [f"SCRIPT: SOAK_{n:04d} — RUN {n}", "A generated soak script", ""]
    at = 0
    for s in range(rng.randint(2, 4)):
        a, b = rng.sample(WORDS, 2)
        lines += [f"[{at // 60}:{at % 60:02d} – Scene {s + 1} | {a.title()}]", f"Visual: A {a} at night near a {b}."]
        if rng.random() < 0.5:
            lines += ["ON-SCREEN TEXT:", *rng.sample(COMMANDS, 2)]
        lines += ["Narration:", f"“The {a} and the {b}, take {n}.”", ""]
        at += rng.randint(2, 3)
    return "\n".join(lines + [f"END SOAK_{n:04d}", ""])


def markdown_script(n: int, rng: random.Random) -> str:
    lines = [f"# SOAK {n:04d} — Markdown run", ""]
    for s in range(rng.randint(2, 4)):
        a, b = rng.sample(WORDS, 2)
        lines += [f"## Scene {s + 1}: {a.title()}", "", f"*A {a} beside a {b}, slowly turning.*", "",
                  f"**Narrator**: A {a}, a {b}, number {n}.", ""]
        if rng.random() < 0.4:
            lines += ["```", *rng.sample(COMMANDS, 2), "```", ""]
    return "\n".join(lines)


def write_scripts(folder: Path, count: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for n in range(count):
        if n % 2:
            (folder / f"soak{n:04d}.md").write_text(markdown_script(n, rng), encoding="utf-8")
        else:
            (folder / f"soak{n:04d}.txt").write_text(log_script(n, rng), encoding="utf-8")


# --------------------------------------------------------------------------- running the batch


class TreeMemory:
    """The peak of the summed RSS of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.25):
        self.root, self.every, self.peak = psutil.Process(pid), every, 0
        self.seen: dict[int, float] = {}  # pid -> its start time (a pid alone may be reused later)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return []

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            total = 0
            for proc in self.tree():
                try:
                    total += proc.memory_info().rss
                    self.seen.setdefault(proc.pid, proc.create_time())
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def batch_command(args: argparse.Namespace, api: FakeAPI, stock: FakeStock, inputs: Path, run_dir: Path,
                  cache: Path) -> list[str]:
    visual = (["visual=runway", f"visual.base_url={api.url}", "visual.poll_interval_s=0.05",
               "visual.poll_jitter_s=0.01"] if args.visual == "runway" else
              ["visual=stock", f"visual.pexels_url={stock.url}", f"visual.pixabay_url={stock.url}"])
    return [sys.executable, "-m", "renderer", *SMALL, "voice=elevenlabs", f"voice.base_url={api.url}", *visual,
            "retry.api.wait_s=0.01", "retry.api.max_wait_s=0.2", "retry.api.jitter_s=0.01", "limits.api_timeout_s=3",
            f"batch.inputs=[{inputs}/*.txt,{inputs}/*.md]", f"batch.n_jobs={args.jobs}", f"cache.dir={cache}",
            f"hydra.run.dir={run_dir}", "progress=false"]


def delivered_videos(run_dir: Path) -> int:
    return sum(1 for path in run_dir.glob("*/*.mp4") if path.stem == path.parent.name)


def run(command: list[str], env: dict[str, str], log: Path, *, kill_when=None
        ) -> tuple[int, int, dict[int, float], bool]:
    """Run ``command``; with ``kill_when()`` turning true, SIGKILL every process of its tree. The exit code,
    the peak memory of the tree, the pids seen, and whether it was killed."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        memory = TreeMemory(proc.pid)
        killed = False
        while proc.poll() is None:
            if kill_when is not None and kill_when():
                for victim in reversed(memory.tree()):  # the batch, its workers, their ffmpeg runs: all at once
                    try:
                        victim.send_signal(signal.SIGKILL)
                    except psutil.Error:
                        pass
                killed = True
                break
            time.sleep(0.2)
        code = proc.wait()
        memory.stop()
    return code, memory.peak, memory.seen, killed


# --------------------------------------------------------------------------- what came out


def decode_errors(videos: list[Path]) -> list[str]:
    bad = []
    for video in videos:
        result = subprocess.run([ffmpeg.binary("ffmpeg"), "-v", "error", "-i", str(video), "-f", "null", "-"],
                                capture_output=True, text=True, timeout=600)
        if result.returncode or result.stderr.strip():
            bad.append(f"{video.name}: {result.stderr.strip()[:200] or result.returncode}")
    return bad


def files_with_keys(*folders: Path) -> list[str]:
    keys = [k.encode() for k in KEYS.values()]
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if any(k in data for k in keys):
                    found.append(str(path))
    return found


def report(run_dir: Path, cache: Path, count: int, seen: dict[int, float]) -> tuple[dict, bool]:
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    scripts = manifest["scripts"]
    delivered = [slug for slug, s in scripts.items()
                 if s["status"] == "ok" and (run_dir / slug / f"{slug}.mp4").is_file()]
    fallbacks: Counter[str] = Counter()
    for entry in scripts.values():
        for fb in entry.get("fallbacks", []):
            fallbacks[f"{fb['node'].split('/')[0]}→{(fb.get('to') or '?').split(':')[0]}"] += 1
    videos = sorted(run_dir / slug / f"{slug}.mp4" for slug in delivered)
    bad = decode_errors(videos)
    parts = [str(p) for p in run_dir.rglob("*.part")]
    tmp = [str(p) for p in (run_dir / "tmp").iterdir()] if (run_dir / "tmp").exists() else []
    strays = [pid for pid, started in seen.items() if _alive(pid, started)]
    keys = files_with_keys(run_dir, cache)
    figures = {"delivered": len(delivered), "total": count, "fallbacks": dict(fallbacks.most_common()),
               "decode_errors": bad, "leftover_part_files": parts, "leftover_tmp_entries": tmp,
               "stray_processes": strays, "files_with_keys": keys,
               "failed": {slug: s.get("error", "") for slug, s in scripts.items() if s["status"] != "ok"}}
    fine = len(delivered) == count and not (bad or parts or tmp or strays or keys)
    return figures, fine


def _alive(pid: int, started: float) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (not another one given its pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == started and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scripts", type=int, default=200)
    parser.add_argument("--fault-rate", type=float, default=0.5, help="share of API requests answered with a fault")
    parser.add_argument("--jobs", type=int, default=2, help="batch.n_jobs")
    kill = parser.add_mutually_exclusive_group()
    kill.add_argument("--kill-at-done", type=int, default=None, metavar="K",
                      help="SIGKILL the batch once K videos are out (default: a third of the scripts)")
    kill.add_argument("--kill-after", type=float, default=None, metavar="S", help="SIGKILL the batch after S seconds")
    parser.add_argument("--visual", choices=("runway", "stock"), default="runway")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scripts, the run dir and the cache")
    args = parser.parse_args(argv)

    work = args.dir or Path(tempfile.mkdtemp(prefix="renderer-soak-"))
    inputs, run_dir, cache = work / "in", work / "run", work / "cache"
    write_scripts(inputs, args.scripts, args.seed)
    env = {**os.environ, **KEYS}
    at_done = args.kill_at_done if args.kill_at_done is not None else max(1, args.scripts // 3)
    began = time.monotonic()
    kill_when = ((lambda: time.monotonic() - began >= args.kill_after) if args.kill_after is not None
                 else (lambda: delivered_videos(run_dir) >= at_done))
    print(f"soak: {args.scripts} scripts, fault rate {args.fault_rate:.0%}, {args.jobs} jobs, visual={args.visual},"
          f" in {work}", flush=True)
    with FakeAPI(elevenlabs_key=KEYS["ELEVENLABS_API_KEY"], runway_key=KEYS["RUNWAY_API_KEY"], task_seconds=0.3,
                 fault_rate=args.fault_rate, retry_after_s=0.05, hang_s=4, seed=args.seed) as api, \
            FakeStock(pexels_key=KEYS["PEXELS_API_KEY"], pixabay_key=KEYS["PIXABAY_API_KEY"],
                      fault_rate=args.fault_rate, seed=args.seed) as stock:
        command = batch_command(args, api, stock, inputs, run_dir, cache)
        code1, peak1, seen1, killed = run(command, env, work / "batch.log", kill_when=kill_when)
        first_s, done_at_kill = time.monotonic() - began, delivered_videos(run_dir)
        print(f"first run: exit {code1}{' (killed with SIGKILL)' if killed else ''} after {first_s:.0f} s,"
              f" {done_at_kill} video(s) out", flush=True)
        resume = [sys.executable, "-m", "renderer", f"resume={run_dir}", "progress=false"]
        code2, peak2, seen2, _ = run(resume, env, work / "resume.log")
        print(f"resume: exit {code2} after {time.monotonic() - began - first_s:.0f} s", flush=True)
        requests = sum(api.stats()["counts"].values())
    figures, fine = report(run_dir, cache, args.scripts, {**seen1, **seen2})
    figures.update(requests_to_doubles=requests, killed_at_videos=done_at_kill if killed else None,
                   peak_rss_mb={"first": round(peak1 / 2**20), "resume": round(peak2 / 2**20)},
                   seconds=round(time.monotonic() - began))
    (work / "soak.json").write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(f"scripts delivered: {figures['delivered']}/{args.scripts}")
    print(f"fallbacks: {sum(figures['fallbacks'].values())} "
          + (", ".join(f"{k} {v}" for k, v in figures["fallbacks"].items()) or ""))
    print(f"decode errors: {len(figures['decode_errors'])}", *figures["decode_errors"][:5], sep="\n  ")
    print(f"leftover temp files: {len(figures['leftover_part_files'])} .part, "
          f"{len(figures['leftover_tmp_entries'])} in tmp/")
    print(f"stray processes: {len(figures['stray_processes'])}")
    print(f"keys found in output files: {len(figures['files_with_keys'])}")
    print(f"peak memory (process tree RSS): first run {figures['peak_rss_mb']['first']} MB, "
          f"resume {figures['peak_rss_mb']['resume']} MB")
    print(f"failed scripts: {len(figures['failed'])}", *list(figures["failed"].items())[:5], sep="\n  ")
    print(f"total {figures['seconds']} s; figures in {work / 'soak.json'}" if args.keep or args.dir else
          f"total {figures['seconds']} s")
    if not (args.keep or args.dir):
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0 if fine else 1


if __name__ == "__main__":
    sys.exit(main())
