"""The batch: every input script rendered by joblib workers, the manifest kept up to date as they finish."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import Future, wait
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generator, Iterator

import psutil
from joblib import Parallel, delayed
from joblib._parallel_backends import LokyBackend, ThreadingBackend
from loguru import logger
from omegaconf import DictConfig, OmegaConf

from renderer import admission, ffmpeg, health, logs, progress, reliability, report
from renderer.cache import Cache
from renderer.config import RendererConfig
from renderer.files import RunLayout, expand_inputs, storage, unique_slugs, write_json_atomic
from renderer.pipeline import new_record, render_script

EXIT_OK, EXIT_SCRIPTS_FAILED, EXIT_CANNOT_START = 0, 1, 2
# An interrupted batch gives its workers this long to stop their own work (DELETE their Runway tasks, stop their
# media tools, record their scripts as cancelled) before joblib kills them. Each DELETE is bounded by
# providers.runway.CANCEL_TIMEOUT_S (they run side by side, alongside the tool kills), so this is plenty.
CANCEL_GRACE_S = 3.0


class CannotStart(RuntimeError):
    """The batch cannot start (exit code 2); the message says why and the fix."""


class ResumeError(CannotStart):
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


class _Worker:
    """This process as a worker of the batch's process pool (see ``init_worker``)."""

    pooled = False  # the pool's initializer ran here: SIGTERM / SIGINT are handled by ``_stop_worker``
    rendering = False  # a script is being rendered: a stop signal interrupts it
    stopping = False  # a stop signal came (``_stop_worker`` ran): this worker starts no script any more


def _stop_worker(signum: int, frame: Any) -> None:
    """SIGTERM / SIGINT in a pool worker. The first one interrupts the script being rendered (KeyboardInterrupt:
    its graph cancels its cloud tasks and stops its tools, render_script records it cancelled); any later one
    (the parent's SIGTERM after a Ctrl-C the terminal sent everyone) is ignored, so it cannot cut that cleanup
    short. Between scripts, the worker only notes it is stopping: it stays alive, for joblib to collect, and
    renders nothing more (a worker dying here would make loky kill its busy siblings at once).
    No locks here: a second signal runs this again in the middle of the first call."""
    first, _Worker.stopping = not _Worker.stopping, True
    if first and _Worker.rendering:
        raise KeyboardInterrupt


def _relay_stop_signals(read_fd: int, main_thread: int) -> None:
    """Make sure a stop signal reaches the main thread's handler. Python runs handlers in the main thread only,
    when it next runs bytecode: a signal the kernel gave another thread (or one that came just before the main
    thread blocked) leaves it asleep in the graph's wait, maybe for the whole task. Every signal's number comes
    through the wakeup fd; after a stop signal, the main thread is signalled itself (pthread_kill interrupts its
    wait) until its handler has run."""
    while chunk := os.read(read_fd, 64):
        if not {signal.SIGINT, signal.SIGTERM}.intersection(chunk):
            continue
        for relayed in range(100):  # 5 s at most: by then the parent has killed this worker anyway
            time.sleep(0.05)
            if _Worker.stopping:
                if relayed:
                    logger.debug("the stop signal was relayed to the main thread ({} time(s))", relayed)
                break
            signal.pthread_kill(main_thread, signal.SIGTERM)


def init_worker() -> None:
    """The process pool's initializer, run in each worker (in its main thread) before anything else."""
    _Worker.pooled = True
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_worker)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_relay_stop_signals, args=(read_fd, threading.get_ident()), name="stop-signals",
                     daemon=True).start()


def render_in_worker(plain_cfg: dict, path: str, slug: str, run_dir: str) -> dict[str, Any]:
    """Runs in a joblib worker: it gets plain data and builds its own config, loggers and providers."""
    if not _Worker.pooled:  # in this process (n_jobs=1, sequential, threading): SIGTERM is a Ctrl-C
        interrupt_on_sigterm()
    _Worker.rendering = True
    try:
        if _Worker.stopping:  # told to stop before this script began: it does not start
            raise KeyboardInterrupt
        logs.setup(Path(run_dir), console=False)
        health.attach(Path(run_dir))
        cfg = OmegaConf.create(plain_cfg)
        ffmpeg.configure(ffmpeg_path=cfg.ffmpeg.path, ffprobe_path=cfg.ffmpeg.probe_path)
        return render_script(Path(path), slug, cfg, RunLayout(Path(run_dir)))
    finally:
        _Worker.rendering = False


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM ignored meanwhile (main thread only): a second Ctrl-C does not cut the grace short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def _alive(process: Any) -> bool:
    try:
        return process.exitcode is None
    except ValueError:  # closed: long gone
        return False


def stop_workers(processes: list[Any], futures: list[Future], grace: float) -> int:
    """Let a process pool's workers stop their own work before they are killed: scripts not yet handed to a
    worker never start, every live worker gets SIGTERM (``_stop_worker``), and this waits up to ``grace``
    seconds for the scripts in flight to come back; return how many did not."""
    unfinished = [f for f in futures if not f.done()]
    for future in unfinished:
        future.cancel()  # only succeeds for a script no worker has taken
    in_flight = [f for f in unfinished if not f.done()]
    live = [p for p in processes if _alive(p)]
    if not in_flight or not live:
        return 0
    logger.warning("stopping {} script(s) in flight: {:.0f} s for the workers to cancel their work",
                   len(in_flight), grace)
    with _signals_held():
        for process in live:
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        _, left = wait(in_flight, timeout=grace)
    if left:
        logger.warning("{} script(s) still in flight after {:.0f} s: their workers are killed", len(left), grace)
    return len(left)


class GracefulLokyBackend(LokyBackend):
    """joblib's loky backend, but an abort (Ctrl-C or SIGTERM to the parent, a failed pool) first gives the
    workers ``CANCEL_GRACE_S`` to stop their own work (``stop_workers``) before loky kills them with SIGKILL,
    which would leave their Runway tasks running (and billing)."""

    def __init__(self, **backend_kwargs: Any):
        super().__init__(initializer=init_worker, **backend_kwargs)
        self._futures: list[Future] = []  # scripts submitted and not done (joblib submits from two threads)
        self._futures_lock = threading.Lock()

    def submit(self, func, callback=None):  # type: ignore[no-untyped-def]
        future = super().submit(func, callback=callback)
        with self._futures_lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]
        return future

    def abort_everything(self, ensure_ready: bool = True) -> None:
        try:
            if self._workers is not None:
                with self._futures_lock:
                    futures, self._futures = self._futures, []
                processes = list(getattr(self._workers, "_processes", {}).values())  # loky's pid -> process
                stop_workers(processes, futures, CANCEL_GRACE_S)
        finally:
            super().abort_everything(ensure_ready=ensure_ready)


class GracefulThreadingBackend(ThreadingBackend):
    """joblib's threading backend, but an abort first stops the scripts its threads render (threads cannot be
    killed): ``reliability.cancel()`` makes each script's graph stop its own work, as a signal does in a worker
    process (Runway tasks DELETEd, media tools killed), and the abort waits up to ``CANCEL_GRACE_S`` for them."""

    def __init__(self, **backend_kwargs: Any):
        super().__init__(**backend_kwargs)
        self._results: list[Any] = []  # the pool's AsyncResults, one per script submitted
        self._results_lock = threading.Lock()

    def submit(self, func, callback=None):  # type: ignore[no-untyped-def]
        result = super().submit(func, callback=callback)
        with self._results_lock:
            self._results = [r for r in self._results if not r.ready()] + [result]
        return result

    def abort_everything(self, ensure_ready: bool = True) -> None:
        try:
            reliability.cancel()
            with self._results_lock:
                results, self._results = self._results, []
            deadline = time.monotonic() + CANCEL_GRACE_S
            for result in results:
                result.wait(max(0.0, deadline - time.monotonic()))
        finally:
            super().abort_everything(ensure_ready=ensure_ready)


def _backend(name: str) -> Any:
    """What ``Parallel`` gets for ``batch.backend``: loky and threading with a graceful abort, others by name."""
    return {"loky": GracefulLokyBackend, "threading": GracefulThreadingBackend}.get(name, lambda: name)()


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
RESUME_MAY_CHANGE = ("batch.n_jobs", "batch.backend", "limits.", "monitor.", "progress")


def _resume_overrides(overrides: list[str], current: DictConfig, saved: DictConfig) -> None:
    """Apply the allowed command-line overrides of a resumed run to its saved config; refuse the others,
    which would make one batch out of two configs."""
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    keys = [k for k in keys if k != "resume" and not k.startswith("hydra.")]
    refused = [k for k in keys if not k.startswith(RESUME_MAY_CHANGE)]
    if refused:
        raise ResumeError(f"resume= finishes a run with the config it started with; {', '.join(refused)} would "
                          "change it. Drop those overrides, or start a new run (the cache keeps what is done). "
                          "Allowed with resume=: batch.n_jobs, batch.backend, limits.*, monitor.*, progress")
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
    gives limits.memory_gb each (each job checks again when it starts: renderer.admission)."""
    wanted = max(1, min(cfg.batch.n_jobs, cfg.limits.max_jobs, scripts or 1))
    n_jobs, free_gb = admission.jobs_by_memory(cfg.limits, wanted)
    if n_jobs < wanted:
        logger.warning("{:.1f} GB free allows {} job(s) at limits.memory_gb={} each", free_gb, n_jobs,
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
    try:
        admission.check_fits(cfg.limits)
    except admission.NeverFits as exc:
        raise CannotStart(str(exc)) from None
    monitor = health.Monitor(cfg, layout, manifest)  # binds monitor.port: one in use stops the run here
    write_json_atomic(layout.manifest, manifest)
    result = BatchResult(run_dir, manifest)
    if not manifest["scripts"]:
        monitor.close()
        logger.error("nothing to render: batch.inputs={} matched no files", list(cfg.batch.inputs))
        return result

    cache = Cache(cfg.cache.dir)
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    plain_cfg["cache"]["dir"] = str(cache.root)  # workers may start elsewhere
    n_jobs = manifest["n_jobs"] = job_count(cfg, len(todo))
    plain_cfg["batch"]["n_jobs"] = n_jobs  # what each script's share of the cores is reckoned from
    logger.info("rendering {} script(s) into {} with {} job(s)", len(todo), run_dir, n_jobs)
    started = time.perf_counter()
    records = _render_all(todo, plain_cfg, run_dir, n_jobs, cfg.batch.backend)
    try:
        with cache.in_use() if cfg.cache.enabled else nullcontext(), \
                progress.bar(cfg, len(todo)) as bar:
            monitor.on_tick = progress.follower(bar)  # the stages of the scripts in flight, on the bar
            for record in records:
                manifest["scripts"][record["slug"]] = _summary(record)
                write_json_atomic(layout.manifest, manifest)
                monitor.script_done(record)
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
        records.close()  # interrupted between two records: the workers are stopped (gracefully) here, not later
        ffmpeg.kill_all()
        monitor.close()  # the final metrics.json, while the workers' samples are still in tmp/
        clean_leftovers(layout)
        manifest["finished"] = _now()
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        if cfg.cache.enabled:
            manifest["cache"] = cache.stats() | _cache_use(manifest)
        manifest["storage"] = storage({"run_dir": run_dir, "cache_dir": cache.root})
        write_json_atomic(layout.manifest, manifest)
        report.write(manifest, run_dir)
    done = len(manifest["scripts"]) - len(result.failed)
    logger.info("done: {}/{} rendered in {:.1f} s -> {}", done, len(manifest["scripts"]), manifest["seconds"], run_dir)
    return result


def _render_all(todo: dict[Path, str], plain_cfg: dict, run_dir: Path, n_jobs: int, backend: str
                ) -> Generator[dict[str, Any], None, None]:
    """Records as scripts finish. A worker that dies (killed, out of memory) takes the batch's pool with it:
    the scripts not finished then are rendered again one per pool, so a crash costs only its own script."""
    def job(path: Path, slug: str):
        return delayed(render_in_worker)(plain_cfg, str(path), slug, str(run_dir))

    finished: set[str] = set()
    results = None
    try:
        results = Parallel(n_jobs=n_jobs, backend=_backend(backend), return_as="generator_unordered")(
            job(p, s) for p, s in todo.items())
        for record in results:
            finished.add(record["slug"])
            yield record
        return
    except Exception as exc:  # the pool broke, not a script: scripts return their failures as records
        left = {p: s for p, s in todo.items() if s not in finished}
        logger.error("a worker died ({}: {}); rendering the {} unfinished script(s) one at a time",
                     type(exc).__name__, exc, len(left))
        ffmpeg.kill_strays(RunLayout(run_dir).tmp)  # what the dead worker had started
    finally:  # closed while a record was out (an interruption): joblib aborts the pool now, not when collected
        if results is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "tasks ... have been cancelled": they were meant to be
                results.close()
    for path, slug in left.items():
        try:
            (record,) = Parallel(n_jobs=2, backend=_backend(backend))([job(path, slug)])  # 2: in a worker, not here
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
