"""The batch: every input script rendered by joblib workers, the manifest kept up to date as they finish."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import psutil
from joblib import Parallel, delayed
from loguru import logger
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from renderer import ffmpeg, logs, reliability, report
from renderer.cache import Cache
from renderer.config import RendererConfig
from renderer.files import RunLayout, expand_inputs, unique_slugs, write_json_atomic
from renderer.pipeline import new_record, render_script

EXIT_OK, EXIT_SCRIPTS_FAILED, EXIT_CANNOT_START = 0, 1, 2


class ResumeError(RuntimeError):
    pass


@dataclass
class BatchResult:
    run_dir: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [slug for slug, s in self.manifest["scripts"].items() if s["status"] != "ok"]

    @property
    def exit_code(self) -> int:
        if not self.manifest["scripts"]:
            return EXIT_CANNOT_START
        return EXIT_SCRIPTS_FAILED if self.failed or self.manifest["unmatched_inputs"] else EXIT_OK


def interrupt_on_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C, so one cleanup path serves both (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def render_in_worker(plain_cfg: dict, path: str, slug: str, run_dir: str) -> dict[str, Any]:
    """Runs in a joblib worker: it gets plain data and builds its own config, loggers and providers."""
    interrupt_on_sigterm()
    logs.setup(Path(run_dir), console=False)
    cfg = OmegaConf.create(plain_cfg)
    ffmpeg.configure(ffmpeg_path=cfg.ffmpeg.path, ffprobe_path=cfg.ffmpeg.probe_path)
    return render_script(Path(path), slug, cfg, RunLayout(Path(run_dir)))


def clean_leftovers(layout: RunLayout) -> None:
    """Whatever happened: no stray processes, no work files, no half-written outputs (killed workers
    cannot clean up after themselves)."""
    if layout.tmp.exists():
        ffmpeg.kill_strays(layout.tmp)
        for entry in layout.tmp.iterdir():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
    for part in layout.run_dir.rglob(".*.part"):
        part.unlink(missing_ok=True)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("script", "status", "error", "duration", "seconds", "outputs", "fallbacks", "warnings")
    out = {k: record.get(k) for k in keep if k in record}
    out["issues"] = [f"{i['severity']}: {i['message']}" for i in record.get("issues", [])]
    out["stages"] = dict(Counter(stage["status"] for stage in record.get("stages", [])))
    return out


def _settings(cfg: DictConfig) -> dict[str, str]:
    return {"voice": cfg.voice.name, "visual": cfg.visual.name, "theme": cfg.theme.name,
            "assembly": cfg.assembly.strategy, "format": cfg.format.name}


def _new_manifest(cfg: DictConfig, layout: RunLayout) -> tuple[dict[str, Any], dict[Path, str]]:
    """A fresh batch: every input script pending."""
    files, unmatched = expand_inputs(list(cfg.batch.inputs))
    for pattern in unmatched:
        logger.error("batch.inputs: no file matches {!r} (paths are relative to {})", pattern, Path.cwd())
    slugs = unique_slugs(files)
    manifest: dict[str, Any] = {
        "run_dir": str(layout.run_dir),
        "started": _now(),
        "finished": None,
        "experiment": cfg.experiment,
        "settings": _settings(cfg),
        "unmatched_inputs": unmatched,
        "cache_dir": str(Path(cfg.cache.dir).absolute()),  # a resume from another directory finds it
        "scripts": {slug: {"script": str(path), "status": "pending"} for path, slug in slugs.items()},
    }
    return manifest, slugs


# settings a resumed run may change: they decide how the work is spread, never what a video looks like
RESUME_MAY_CHANGE = ("batch.n_jobs", "batch.backend", "limits.")


def _resume_overrides(overrides: list[str], current: DictConfig, saved: DictConfig) -> None:
    """Apply the allowed command-line overrides of a resumed run to its saved config; refuse the others,
    which would make one batch out of two configs."""
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    keys = [k for k in keys if k != "resume" and not k.startswith("hydra.")]
    refused = [k for k in keys if not k.startswith(RESUME_MAY_CHANGE)]
    if refused:
        raise ResumeError(f"resume= finishes a run with the config it started with; {', '.join(refused)} would "
                          "change it. Drop those overrides, or start a new run (the cache keeps what is done). "
                          "Allowed with resume=: batch.n_jobs, batch.backend, limits.*")
    for key in keys:
        OmegaConf.update(saved, key, OmegaConf.select(current, key), merge=False)


def _resumed_manifest(layout: RunLayout, overrides: list[str], current: DictConfig
                      ) -> tuple[DictConfig, dict[str, Any], dict[Path, str]]:
    """An interrupted batch: its own config and manifest; scripts without a finished video are to do."""
    saved_cfg = layout.run_dir / ".hydra" / "config.yaml"
    if not layout.manifest.exists() or not saved_cfg.exists():
        raise ResumeError(f"resume={layout.run_dir}: not a run directory (no manifest.json or .hydra/config.yaml);"
                          " pass the folder of the run to continue, e.g. resume=outputs/2026-11-24/10-31-07")
    cfg = OmegaConf.merge(OmegaConf.structured(RendererConfig), OmegaConf.load(saved_cfg))
    _resume_overrides(overrides, current, cfg)
    manifest = json.loads(layout.manifest.read_text(encoding="utf-8"))
    if manifest.get("cache_dir"):
        cfg.cache.dir = manifest["cache_dir"]  # the run's cache, wherever this resume was started from
    todo = {}
    for slug, entry in manifest["scripts"].items():
        if entry["status"] == "ok" and layout.output(slug, ".mp4").exists():
            continue
        entry.update(status="pending", error="")
        todo[Path(entry["script"])] = slug
    manifest.setdefault("resumed", []).append(_now())
    manifest["finished"] = None
    return cfg, manifest, todo


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def job_count(cfg: DictConfig, scripts: int) -> int:
    """Scripts rendered at once: as asked, within limits.max_jobs, and only as many as the free memory
    gives limits.memory_gb each (admission control: a small machine runs fewer jobs instead of swapping)."""
    free_gb = psutil.virtual_memory().available / 1024**3
    by_memory = max(1, int(free_gb // cfg.limits.memory_gb)) if cfg.limits.memory_gb > 0 else scripts
    n_jobs = max(1, min(cfg.batch.n_jobs, cfg.limits.max_jobs, by_memory, scripts or 1))
    if by_memory < min(cfg.batch.n_jobs, cfg.limits.max_jobs, scripts):
        logger.warning("{:.1f} GB free allows {} job(s) at limits.memory_gb={} each", free_gb, by_memory,
                       cfg.limits.memory_gb)
    return n_jobs


def run_batch(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> BatchResult:
    """Render the batch into ``run_dir``; ``overrides``: the command line's, checked when resuming."""
    layout = RunLayout(run_dir)
    reliability.reset_cancel()  # a batch after an interrupted one (in one process) starts afresh
    if cfg.resume:
        cfg, manifest, todo = _resumed_manifest(layout, list(overrides or []), cfg)
        logger.info("resuming {}: {} of {} script(s) left", run_dir, len(todo), len(manifest["scripts"]))
    else:
        manifest, todo = _new_manifest(cfg, layout)
    ffmpeg.configure(ffmpeg_path=cfg.ffmpeg.path, ffprobe_path=cfg.ffmpeg.probe_path)
    ffmpeg.check_features()  # before the manifest: a run that could not start is not one to resume
    write_json_atomic(layout.manifest, manifest)
    result = BatchResult(run_dir, manifest)
    if not manifest["scripts"]:
        logger.error("nothing to render: batch.inputs={} matched no files", list(cfg.batch.inputs))
        return result

    cache = Cache(cfg.cache.dir)
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    plain_cfg["cache"]["dir"] = str(cache.root)  # workers may start elsewhere
    n_jobs = manifest["n_jobs"] = job_count(cfg, len(todo))
    plain_cfg["batch"]["n_jobs"] = n_jobs  # what each script's share of the cores is reckoned from
    logger.info("rendering {} script(s) into {} with {} job(s)", len(todo), run_dir, n_jobs)
    started = time.perf_counter()
    try:
        with cache.in_use() if cfg.cache.enabled else nullcontext(), \
                tqdm(total=len(todo), desc="scripts", unit="script", dynamic_ncols=True) as bar:
            for record in _render_all(todo, plain_cfg, run_dir, n_jobs, cfg.batch.backend):
                manifest["scripts"][record["slug"]] = _summary(record)
                write_json_atomic(layout.manifest, manifest)
                bar.update()
                if record["status"] == "ok":
                    logger.success("{}: ok", record["slug"])
                else:
                    logger.error("{}: {}", record["slug"], record["error"])
    except KeyboardInterrupt:
        reliability.cancel()  # threads of this process (backend=threading) retry nothing more
        for entry in manifest["scripts"].values():
            if entry["status"] == "pending":
                entry.update(status="cancelled", error="the batch was interrupted; resume it to finish")
        raise
    finally:
        ffmpeg.kill_all()
        clean_leftovers(layout)
        manifest["finished"] = _now()
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        if cfg.cache.enabled:
            manifest["cache"] = cache.stats() | _cache_use(manifest)
        write_json_atomic(layout.manifest, manifest)
        report.write(manifest, run_dir)
    done = len(manifest["scripts"]) - len(result.failed)
    logger.info("done: {}/{} rendered in {:.1f} s -> {}", done, len(manifest["scripts"]), manifest["seconds"], run_dir)
    return result


def _render_all(todo: dict[Path, str], plain_cfg: dict, run_dir: Path, n_jobs: int, backend: str
                ) -> Iterator[dict[str, Any]]:
    """Records as scripts finish. A worker that dies (killed, out of memory) takes the batch's pool with it:
    the scripts not finished then are rendered again one per pool, so a crash costs only its own script."""
    def job(path: Path, slug: str):
        return delayed(render_in_worker)(plain_cfg, str(path), slug, str(run_dir))

    finished: set[str] = set()
    try:
        for record in Parallel(n_jobs=n_jobs, backend=backend, return_as="generator_unordered")(
                job(p, s) for p, s in todo.items()):
            finished.add(record["slug"])
            yield record
        return
    except Exception as exc:  # the pool broke, not a script: scripts return their failures as records
        left = {p: s for p, s in todo.items() if s not in finished}
        logger.error("a worker died ({}: {}); rendering the {} unfinished script(s) one at a time",
                     type(exc).__name__, exc, len(left))
        ffmpeg.kill_strays(RunLayout(run_dir).tmp)  # what the dead worker had started
    for path, slug in left.items():
        try:
            (record,) = Parallel(n_jobs=2, backend=backend)([job(path, slug)])  # 2: in a worker, not here
        except Exception as exc:
            record = new_record(path, slug, f"the worker rendering it died ({type(exc).__name__}: {exc}); "
                                            "resume to retry")
        yield record


def _cache_use(manifest: dict[str, Any]) -> dict[str, int]:
    """Stage nodes served from the cache vs rendered, over the whole run."""
    counts: Counter[str] = Counter()
    for entry in manifest["scripts"].values():
        counts.update(entry.get("stages", {}))
    return {"hits": counts["cached"], "misses": counts["ok"] + counts["fallback"] + counts["failed"]}
