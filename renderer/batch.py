"""The batch: every input script rendered by joblib workers, the manifest kept up to date as they finish."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from joblib import Parallel, delayed
from loguru import logger
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from renderer import ffmpeg, logs
from renderer.files import RunLayout, expand_inputs, unique_slugs, write_json_atomic

EXIT_OK, EXIT_SCRIPTS_FAILED, EXIT_CANNOT_START = 0, 1, 2


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
    from renderer.pipeline import render_script  # imported here: loky workers start fresh

    interrupt_on_sigterm()
    logs.setup(Path(run_dir), console=False)
    cfg = OmegaConf.create(plain_cfg)
    ffmpeg.configure(ffmpeg_path=cfg.ffmpeg.path, ffprobe_path=cfg.ffmpeg.probe_path)
    return render_script(Path(path), slug, cfg, RunLayout(Path(run_dir)))


def clean_leftovers(layout: RunLayout) -> None:
    """Whatever happened: no work files, no half-written outputs (killed workers cannot clean up)."""
    if layout.tmp.exists():
        for entry in layout.tmp.iterdir():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
    for part in layout.run_dir.rglob(".*.part"):
        part.unlink(missing_ok=True)


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("script", "status", "error", "duration", "seconds", "outputs", "fallbacks", "warnings")
    out = {k: record.get(k) for k in keep if k in record}
    out["issues"] = [f"{i['severity']}: {i['message']}" for i in record.get("issues", [])]
    return out


def run_batch(cfg: DictConfig, run_dir: Path) -> BatchResult:
    layout = RunLayout(run_dir)
    files, unmatched = expand_inputs(list(cfg.batch.inputs))
    for pattern in unmatched:
        logger.error("batch.inputs: no file matches {!r} (paths are relative to {})", pattern, Path.cwd())
    slugs = unique_slugs(files)
    manifest: dict[str, Any] = {
        "run_dir": str(run_dir),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "finished": None,
        "experiment": cfg.experiment,
        "settings": {"voice": cfg.voice.name, "visual": cfg.visual.name, "theme": cfg.theme.name,
                     "assembly": cfg.assembly.strategy, "format": cfg.format.name},
        "unmatched_inputs": unmatched,
        "scripts": {slug: {"script": str(path), "status": "pending"} for path, slug in slugs.items()},
    }
    write_json_atomic(layout.manifest, manifest)
    result = BatchResult(run_dir, manifest)
    if not files:
        logger.error("nothing to render: batch.inputs={} matched no files", list(cfg.batch.inputs))
        return result

    ffmpeg.configure(ffmpeg_path=cfg.ffmpeg.path, ffprobe_path=cfg.ffmpeg.probe_path)
    ffmpeg.check_features()
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    n_jobs = max(1, min(cfg.batch.n_jobs, cfg.limits.max_jobs, len(files)))
    logger.info("rendering {} script(s) into {} with {} job(s)", len(files), run_dir, n_jobs)
    started = time.perf_counter()
    jobs = (delayed(render_in_worker)(plain_cfg, str(p), s, str(run_dir)) for p, s in slugs.items())
    parallel = Parallel(n_jobs=n_jobs, backend=cfg.batch.backend, return_as="generator_unordered")
    try:
        with tqdm(total=len(files), desc="scripts", unit="script", dynamic_ncols=True) as bar:
            for record in parallel(jobs):
                manifest["scripts"][record["slug"]] = _summary(record)
                write_json_atomic(layout.manifest, manifest)
                bar.update()
                if record["status"] == "ok":
                    logger.success("{}: ok", record["slug"])
                else:
                    logger.error("{}: {}", record["slug"], record["error"])
    except KeyboardInterrupt:
        for entry in manifest["scripts"].values():
            if entry["status"] == "pending":
                entry.update(status="cancelled", error="the batch was interrupted; rerun to render it")
        raise
    finally:
        ffmpeg.kill_all()
        clean_leftovers(layout)
        manifest["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        write_json_atomic(layout.manifest, manifest)
    ok = len(files) - len(result.failed)
    logger.info("done: {}/{} rendered in {:.1f} s -> {}", ok, len(files), manifest["seconds"], run_dir)
    return result
