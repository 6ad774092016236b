"""Running one measured command: wall time, CPU time and peak memory of its whole process tree.

The tree includes the voice process (renderer/providers/voice_server.py): it runs detached, outside the tree
of the command that started it, but is the command's memory and CPU time all the same (a run may start several
in turn: each exits once no script holds it). Each run starts without one, so the model's load is measured as a
cold render pays it."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from renderer.providers import voice_server

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_S = 0.05  # memory sampling period; a tool alive for less than this may go unseen (its peak is small)


class Failed(RuntimeError):
    """A measured command exited non-zero (or its record says it did not render): the row says FAILED."""


@dataclass
class Run:
    seconds: float  # wall
    cpu_s: float  # user + sys of the process and every descendant it waited for
    rss_mb: float  # peak of the tree's summed RSS (a library shared by N processes counts N times)
    pss_mb: float  # peak of the tree's summed PSS (shared pages split among the processes that map them)
    stderr: str = ""
    voice_mb: float = 0.0  # peak PSS of the voice process alone (0: none ran)
    own_rss_mb: float = 0.0  # peak RSS of the command's own process (the orchestrator), sampled with the tree


def run(cmd: list[str], cwd: Path = ROOT, env: dict | None = None, tree: bool = True, memory: bool = True) -> Run:
    """Run `cmd` to its end, sampling the memory of its process tree and the voice process (`tree=False`: of the
    process alone). `memory=False` for a row about CPU: reading every process's smaps 20 times a second took
    ~10 % of a core and stalled the sampled processes (P5's batch 45.5 s sampled, 42.1 s not); the voice
    process's CPU time is still read."""
    stop_voice_process()
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err:
        before = _children_cpu()
        started, rss, pss, voice, own = time.perf_counter(), 0, 0, 0, 0
        voice_cpu: dict[int, float] = {}  # each voice process's CPU time, as last seen
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        while proc.poll() is None:
            now_rss, now_pss, now_own = _memory(proc.pid, tree) if memory else (0, 0, 0)
            voice_rss, voice_pss = _voice_memory(voice_cpu, memory)
            if tree:
                now_rss, now_pss = now_rss + voice_rss, now_pss + voice_pss
            rss, pss, voice, own = max(rss, now_rss), max(pss, now_pss), max(voice, voice_pss), max(own, now_own)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=SAMPLE_S)
        seconds = time.perf_counter() - started
        err.seek(0)
        cpu = _children_cpu() - before + (sum(voice_cpu.values()) if tree else 0.0)
        result = Run(seconds, cpu, rss / 2**20, pss / 2**20, err.read(), voice / 2**20, own / 2**20)
    stop_voice_process()
    if proc.returncode:
        raise Failed(f"exit {proc.returncode}: {' '.join(map(str, cmd[:6]))} …\n{tail(result.stderr)}")
    return result


def stop_voice_process() -> None:
    """End the voice process a run left idling (the next run starts cold)."""
    pid = voice_server.running_pid()
    if pid is not None:
        with suppress(psutil.Error):
            process = psutil.Process(pid)
            process.terminate()
            process.wait(timeout=5)


def _voice_memory(cpu: dict[int, float], memory: bool = True) -> tuple[int, int]:
    """The voice process's RSS and PSS now (0 without one, or without ``memory``); its CPU time so far goes into
    ``cpu`` by pid (the last sampling period before it exits goes unseen)."""
    pid = voice_server.running_pid()
    if pid is None:
        return 0, 0
    with suppress(psutil.Error):
        process = psutil.Process(pid)
        times = process.cpu_times()
        cpu[pid] = times.user + times.system
        if not memory:
            return 0, 0
        info = process.memory_full_info()
        return info.rss, info.pss
    return 0, 0


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _memory(pid: int, tree: bool) -> tuple[int, int, int]:
    """The RSS and PSS of ``pid`` and (with ``tree``) its descendants, summed; and the RSS of ``pid`` alone."""
    rss = pss = own = 0
    with suppress(psutil.NoSuchProcess):  # gone between poll() and here
        parent = psutil.Process(pid)
        for proc in [parent, *(parent.children(recursive=True) if tree else [])]:
            with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                info = proc.memory_full_info()
                rss, pss = rss + info.rss, pss + info.pss
                own = info.rss if proc is parent else own
    return rss, pss, own


def tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def renderer(overrides: list[str], run_dir: Path, tree: bool = True, env: dict | None = None,
             memory: bool = True) -> Run:
    """`python -m renderer` as a user runs it, quiet, into `run_dir`; fails unless every script rendered ok."""
    result = run([sys.executable, "-m", "renderer", *overrides, f"hydra.run.dir={run_dir}", "progress=false"],
                 tree=tree, env=env, memory=memory)
    for slug, entry in manifest(run_dir)["scripts"].items():
        if entry.get("status") != "ok":
            raise Failed(f"{slug}: {entry.get('status')} {entry.get('error', '')}\n{tail(result.stderr)}")
    return result


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))


def record(run_dir: Path, slug: str) -> dict:
    return json.loads((run_dir / slug / f"{slug}.json").read_text(encoding="utf-8"))


def ran(record_: dict, stages: set[str] | None = None) -> list[dict]:
    """The nodes (of these stages, or of all) that did work in this run: not taken from the cache."""
    return [n for n in record_["stages"] if n.get("status") in ("ok", "fallback")
            and (stages is None or n.get("stage") in stages)]


def span(record_: dict, stages: set[str]) -> float:
    """Seconds from the first of these stages' nodes starting to the last one finishing."""
    nodes = ran(record_, stages)
    if not nodes:
        raise Failed(f"no {'/'.join(sorted(stages))} node ran")
    return max(n["started"] + n["seconds"] for n in nodes) - min(n["started"] for n in nodes)


def median(values: list[float]) -> float:
    return statistics.median(values)


def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    return " ".join(out.split()[:3]) if out else "ffmpeg not found"
