"""The batch: every input script rendered by a runner (renderer/runners/), the manifest kept up to date as
they finish, resume."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loguru import logger
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from renderer import runners
from renderer.config import RendererConfig, provider_targets, service_origins, url_origin
from renderer.engine.cache import Cache
from renderer.media import ffmpeg
from renderer.ops import admission, progress, reliability, report, run_lock
from renderer.ops.exits import Exit
from renderer.ops.files import (
    RunLayout,
    expand_inputs,
    is_slug,
    storage,
    unique_slugs,
    write_json_atomic,
)
from renderer.ops.monitor import Monitor
from renderer.runners import RunnerError, Task
from renderer.runners.local import CANCEL_GRACE_S, job_count  # noqa: F401  (part of the batch's interface)
from renderer.runners.worker import interrupt_on_sigterm, render_in_worker  # noqa: F401  (likewise)


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
            return Exit.CANNOT_START
        return Exit.FAILED if self.failed or self.manifest["unmatched_inputs"] else Exit.OK


def clean_leftovers(layout: RunLayout) -> None:
    """Whatever happened: no stray processes, no work files, no half-written outputs (killed workers
    cannot clean up after themselves). Called by the run dir's owner (renderer/ops/run_lock.py) only, and it
    removes only what the renderer names: a folder the run was pointed at keeps the user's own files."""
    if layout.tmp.exists():
        ffmpeg.kill_strays(layout.tmp)
        for entry in layout.work_entries():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    for part in layout.part_files():
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


# settings a resumed run may change: they decide how the work is spread, never what a video looks like (and
# which provider classes the saved config may name)
RESUME_MAY_CHANGE = ("batch.n_jobs", "batch.backend", "batch.dask.", "limits.", "monitor.", "progress",
                     "providers.allow")  # and providers.allow_urls


def _resume_overrides(overrides: list[str], current: DictConfig, saved: DictConfig) -> None:
    """Apply the allowed command-line overrides of a resumed run to its saved config; refuse the others,
    which would make one batch out of two configs."""
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    keys = [k for k in keys if k != "resume" and not k.startswith("hydra.")]
    refused = [k for k in keys if not k.startswith(RESUME_MAY_CHANGE)]
    if refused:
        raise ResumeError(f"resume= finishes a run with the config it started with; {', '.join(refused)} would "
                          "change it. Drop those overrides, or start a new run (the cache keeps what is done). "
                          "Allowed with resume=: batch.n_jobs, batch.backend, batch.dask.*, limits.*, monitor.*, "
                          "progress, providers.allow, providers.allow_urls")
    for key in keys:
        OmegaConf.update(saved, key, OmegaConf.select(current, key), merge=False)


def _leaves(node: Any, wanted, where: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every entry of a plain config whose key ``wanted`` accepts, at any depth."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            found += [(path, value)] if wanted(str(key)) else _leaves(value, wanted, path)
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found += _leaves(value, wanted, f"{where}[{n}]")
    return found


LOOPBACK = ("127.0.0.1", "localhost", "::1")  # this machine: the local doubles, a proxy of the user's


def _check_saved_config(cfg: DictConfig, providers: DictConfig, saved: Path, run_dir: Path) -> None:
    """A saved config is data read from disk. It may name only the renderer's own provider classes and those the
    current config's ``providers.allow`` lists (never the saved one's), wherever a ``_target_`` sits (what
    instantiate would call); and send API keys only to the renderer's own service addresses, this machine, or
    those ``providers.allow_urls`` lists (every setting named ``*url``)."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # an interpolation that does not resolve
        raise ResumeError(f"resume={run_dir}: its config ({saved}) cannot be read: {exc}") from None
    allowed = provider_targets() | set(providers.allow)
    for path, target in _leaves(plain, lambda key: key == "_target_"):
        if not isinstance(target, str) or target not in allowed:
            raise ResumeError(f"resume={run_dir}: its config ({saved}) names {path}: {target!r}, which is not one of "
                              "the renderer's providers; a resumed run builds only those and the ones the setting "
                              "providers.allow lists. If you trust it, resume with "
                              f"providers.allow='[{target}]' (or set it in your config)")
    origins = service_origins() | {url_origin(str(url)) for url in providers.allow_urls}
    for path, url in _leaves(plain, lambda key: key.endswith("url")):
        try:
            origin, host = url_origin(str(url)), urlsplit(str(url).strip()).hostname
        except ValueError:  # a port that is not a number
            origin, host = str(url), None
        if origin not in origins and host not in LOOPBACK:
            raise ResumeError(f"resume={run_dir}: its config ({saved}) sends requests for {path} to {url!r}, which "
                              "is not one of the renderer's service addresses or this machine: the API key would go "
                              "there. If you trust it, resume with "
                              f"providers.allow_urls='[{origin}]' (or set it in your config)")


def _checked_manifest(layout: RunLayout) -> dict[str, Any]:
    """The run's manifest, each script's slug one the batch could have made (a folder in the run dir)."""
    where = f"resume={layout.run_dir}: {layout.manifest}"
    try:
        manifest = json.loads(layout.manifest.read_text(encoding="utf-8"))
        scripts = manifest["scripts"]
        entries = list(scripts.items())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResumeError(f"{where} is not a run's manifest ({type(exc).__name__}: {exc}); start a new run of the "
                          "same scripts instead (the cache keeps what is done)") from None
    for slug, entry in entries:
        if not is_slug(slug):
            raise ResumeError(f"{where} names the script folder {slug!r}, which is not a slug the batch makes "
                              "(lowercase letters, digits and dashes); start a new run of the same scripts instead "
                              "(the cache keeps what is done)")
        if not (isinstance(entry, dict) and isinstance(entry.get("script"), str)):
            raise ResumeError(f"{where}: the entry of {slug!r} names no script; start a new run instead")
    return manifest


def _run_cache_dir(recorded: Any, configured: str, where: str) -> str:
    """The cache the run used: its config's ``cache.dir``; a relative one as the run resolved it (the manifest's
    ``cache_dir``, which must be that folder), so a resume from another directory finds it. A manifest naming
    another cache is refused: the config and the manifest of one run disagree."""
    if not recorded:  # a manifest from before it said
        return configured
    wanted, found = Path(configured), Path(str(recorded))
    if isinstance(recorded, str) and found.is_absolute() and (
            found == wanted if wanted.is_absolute() else found.parts[len(found.parts) - len(wanted.parts):]
            == wanted.parts):
        return recorded
    raise ResumeError(f"{where} says its cache is {recorded!r}, but the run's config says cache.dir={configured}; "
                      "one of them was changed since the run. Start a new run of the same scripts instead (with the "
                      "cache.dir you mean: the cache keeps what is done)")


def _resumed_manifest(layout: RunLayout, overrides: list[str], current: DictConfig
                      ) -> tuple[DictConfig, dict[str, Any], dict[Path, str]]:
    """An interrupted batch: its own config and manifest; scripts without a finished video are to do. Both are
    data read from disk, checked as such: the config names only allowed providers, the manifest only slugs and
    the config's cache."""
    saved_cfg = layout.saved_config
    if not layout.manifest.exists() or not saved_cfg.exists():
        raise ResumeError(f"resume={layout.run_dir}: not a run directory (no {layout.manifest.name} or "
                          f"{saved_cfg.relative_to(layout.run_dir)}); pass the folder of the run to continue, "
                          "e.g. resume=outputs/2026-11-24/10-31-07")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(RendererConfig), OmegaConf.load(saved_cfg))
    except (ConfigKeyError, ValidationError) as exc:  # written by a renderer whose settings were not these
        raise ResumeError(f"resume={layout.run_dir}: its config ({saved_cfg}) does not fit this version of the "
                          f"renderer ({getattr(exc, 'full_key', '') or exc}: {type(exc).__name__}); start a new run "
                          "of the same scripts instead (the cache keeps what is done)") from None
    _check_saved_config(cfg, current.providers, saved_cfg, layout.run_dir)
    _resume_overrides(overrides, current, cfg)
    manifest = _checked_manifest(layout)
    where = f"resume={layout.run_dir}: {layout.manifest}"
    cfg.cache.dir = _run_cache_dir(manifest.get("cache_dir"), cfg.cache.dir, where)
    todo = {}
    for slug, entry in manifest["scripts"].items():
        if entry.get("status") == "ok" and layout.video(slug).exists():
            continue
        entry.update(status="pending", error="")
        todo[Path(entry["script"])] = slug
    manifest.setdefault("resumed", []).append(_now())
    manifest["finished"] = None
    return cfg, manifest, todo


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_batch(cfg: DictConfig, run_dir: Path, overrides: list[str] | None = None) -> BatchResult:
    """Render the batch into ``run_dir``, owning it meanwhile (a dir another run holds: ``CannotStart`` naming
    it); ``overrides``: the command line's, checked when resuming."""
    try:
        run_lock.acquire(run_dir, "resume" if cfg.resume else "batch")
    except run_lock.RunDirInUse as exc:
        raise CannotStart(str(exc)) from None
    try:
        return _run_batch(cfg, run_dir, overrides)
    finally:
        run_lock.release(run_dir)


def _run_batch(cfg: DictConfig, run_dir: Path, overrides: list[str] | None) -> BatchResult:
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
    if not manifest["scripts"]:
        write_json_atomic(layout.manifest, manifest)
        logger.error("nothing to render: batch.inputs={} matched no files", list(cfg.batch.inputs))
        return BatchResult(run_dir, manifest)
    cache = Cache(cfg.cache.dir)
    monitor = Monitor(cfg, layout, manifest)  # binds monitor.port: one in use stops the run here
    try:
        with runners.runner_for(cfg.batch) as runner:  # a cluster that cannot be reached: no run to resume either
            runner.check_shared({"run": layout.run_dir.absolute(), **({"cache": cache.root} if cfg.cache.enabled
                                                                      else {})}, list(todo))
            write_json_atomic(layout.manifest, manifest)
            monitor.watch(runner.shared_state(layout.run_dir.absolute()))
            _render(runner, cfg, layout, cache, manifest, todo, monitor)
    finally:
        monitor.close()
    result = BatchResult(run_dir, manifest)
    done = len(manifest["scripts"]) - len(result.failed)
    logger.info("done: {}/{} rendered in {:.1f} s -> {}", done, len(manifest["scripts"]), manifest["seconds"], run_dir)
    return result


def _render(runner: runners.Runner, cfg: DictConfig, layout: RunLayout, cache: Cache, manifest: dict[str, Any],
            todo: dict[Path, str], monitor: Monitor) -> None:
    """Render ``todo`` with ``runner``, the manifest (and report) updated as each script finishes."""
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    plain_cfg["cache"]["dir"] = str(cache.root)  # workers may start elsewhere: every path they get is absolute
    n_jobs = manifest["n_jobs"] = runner.jobs(cfg, len(todo))
    plain_cfg["batch"]["n_jobs"] = n_jobs  # what each script's share of the cores is reckoned from
    logger.info("rendering {} script(s) into {} with {} job(s) ({})", len(todo), layout.run_dir, n_jobs, runner.name)
    started = time.perf_counter()
    tasks = [Task(str(Path(path).absolute()), slug) for path, slug in todo.items()]
    records = runner.run(plain_cfg, tasks, layout.run_dir.absolute())
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
        _unfinished(manifest, "cancelled", "the batch was interrupted; resume it to finish")
        raise
    except RunnerError as exc:  # the cluster went away: what is done stays done, resume= does the rest
        manifest["error"] = str(exc)
        _unfinished(manifest, "cancelled", f"{exc}")
        logger.error("{}", exc)
    finally:
        monitor.watch(None)  # the runner lets go of the run's breakers as it stops: the last state seen stays
        records.close()  # interrupted between two records: the workers are stopped (gracefully) here, not later
        ffmpeg.kill_all()
        monitor.close()  # the final metrics.json, while the workers' samples are still in tmp/
        clean_leftovers(layout)
        manifest["finished"] = _now()
        manifest["seconds"] = round(time.perf_counter() - started, 3)
        held = cache.usage()  # one walk of the cache for both figures
        if cfg.cache.enabled:
            manifest["cache"] = cache.stats(held) | _cache_use(manifest)
        manifest["storage"] = storage({"run_dir": layout.run_dir, "cache_dir": cache.root},
                                      walked={"cache_dir": (held.bytes, held.files)})
        write_json_atomic(layout.manifest, manifest)
        report.write(manifest, layout.run_dir)


def _unfinished(manifest: dict[str, Any], status: str, error: str) -> None:
    for entry in manifest["scripts"].values():
        if entry["status"] == "pending":
            entry.update(status=status, error=error)


def _cache_use(manifest: dict[str, Any]) -> dict[str, int]:
    """Stage nodes served from the cache vs rendered, over the whole run."""
    counts: Counter[str] = Counter()
    for entry in manifest["scripts"].values():
        counts.update(entry.get("stages", {}))
    return {"hits": counts["cached"], "misses": counts["ok"] + counts["fallback"] + counts["failed"]}
