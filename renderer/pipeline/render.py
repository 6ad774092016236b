"""One script, start to finish: parse, compose the stage graph from config, run it, publish the outputs."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

from loguru import logger
from omegaconf import DictConfig

from renderer.engine.cache import Cache
from renderer.engine.node import NodeRecord, SlotExecutor
from renderer.engine.run import GraphError
from renderer.media import ass, captions, codecs, ffmpeg
from renderer.ops import admission, health, logs, reliability
from renderer.ops.files import (
    RunLayout,
    copy_atomic,
    write_json_atomic,
    write_text_atomic,
)
from renderer.ops.logs import redact
from renderer.ops.reliability import RetryPolicy
from renderer.ops.run_state import shared_state
from renderer.pipeline import compose
from renderer.pipeline.observer import ScriptObserver
from renderer.providers import chain
from renderer.providers.chain import Providers, ProviderUnavailable
from renderer.providers.stock import credits_text
from renderer.script import Options, Script, parse_file
from renderer.stages.mux import Video
from renderer.stages.thumbnails import Thumbnails


class ScriptError(RuntimeError):
    """The script itself is unusable; the message says where and how to fix it."""


def providers_for(cfg: DictConfig, layout: RunLayout) -> Providers:
    """The providers the strategy's stages need; breaker state and API slots shared by all workers of the run:
    in files under its tmp dir, or on the cluster (batch.backend=dask)."""
    groups = [g for g in compose.stage_names(cfg) if g in chain.OFFLINE]
    return chain.build(cfg, groups=groups, state_dir=shared_state(cfg.batch.backend, layout.run_dir))


def _providers_used(records: list[NodeRecord]) -> dict[str, list[str]]:
    used: dict[str, set[str]] = {}
    for r in records:
        if r.provider:
            used.setdefault(r.stage, set()).add(r.provider)
    return {stage: sorted(names) for stage, names in used.items()}


def _breaker_of(providers: Providers, stage: str, services: dict[str, Any]) -> dict[str, str]:
    """The breaker state of the cloud service behind ``stage``, if there is one."""
    service = getattr(providers.primary.get(stage), "service", None)
    return {"breaker": services[service]["breaker_state"]} if service in services else {}


def script_options(cfg: DictConfig) -> Options:
    """How scripts are parsed: ``script.*``, and the voice's ``char_limit`` (a voice without one takes any length)."""
    try:
        return Options.of(**cfg.script, char_limit=cfg.voice.get("char_limit", 0))
    except ValueError as exc:
        raise ScriptError(str(exc)) from None


def _read(path: Path, cfg: DictConfig) -> Script:
    """Parse the file, retrying per retry.parse while it cannot be read (a network share that hiccups)."""
    last: list[Script] = []
    options = script_options(cfg)

    def attempt() -> Script:
        last[:] = [parse_file(path, options=options)]
        unreadable = [i for i in last[0].issues if i.code == "unreadable_file"]
        if unreadable:
            raise OSError(unreadable[0].message)
        return last[0]

    try:
        return RetryPolicy.from_cfg(cfg.retry.parse).run(attempt, f"reading {path.name}")
    except OSError:
        return last[0]  # still unreadable: its issue says why


def _parse(path: Path, cfg: DictConfig, record: dict[str, Any], log: Any) -> Script:
    """The script, its issues logged and recorded; a script with errors stops here."""
    log.info("parsing {}", path)
    script = _read(path, cfg)
    record.update(title=script.title, script_id=script.script_id, parsed=script.to_dict(),
                  issues=[asdict(i) for i in script.issues])
    for issue in script.issues:
        log.log("ERROR" if issue.severity == "error" else "WARNING", "{} ({})", issue.message, issue.hint)
    if script.errors:
        first, more = script.errors[0], len(script.errors) - 1
        raise ScriptError(f"{first.message} — {first.hint}" + (f" (and {more} more error(s), see the issues)"
                                                               if more else ""))
    return script


def _stop(providers: Providers) -> None:
    """An interrupted graph: its cloud work cancelled (Runway DELETEs) while its media tools are stopped, side by
    side, so an interrupted worker is done well within the batch's grace (batch.CANCEL_GRACE_S)."""
    tools = threading.Thread(target=ffmpeg.kill_all, name="kill-tools", daemon=True)
    tools.start()
    try:
        providers.cancel()
    finally:
        tools.join()


def _run_graph(script: Script, slug: str, cfg: DictConfig, layout: RunLayout, record: dict[str, Any],
               log: Any, executors: Mapping[str, SlotExecutor] | None = None
               ) -> tuple[compose.Composition, dict[str, Any]]:
    """Compose and run the stage graph; record stages, services, fallbacks and warnings; return the outputs."""
    providers = providers_for(cfg, layout)
    record["fallbacks"] += providers.fallbacks
    comp = compose.compose(script, slug, cfg, providers)
    _encoder_fallback(comp, record)
    log.info("{} scenes, {} stage nodes ({}; {} encode(s) at once, {} thread(s) each)", len(script.scenes),
             len(comp.graph.nodes), cfg.assembly.strategy, comp.encode_slots, comp.encode_threads)
    cache = Cache(cfg.cache.dir) if cfg.cache.enabled else None
    try:
        outputs, records = comp.graph.run(cfg, layout.workdir(slug), threads=cfg.limits.stage_threads, cache=cache,
                                          slots=comp.slots, executors=executors,
                                          observer=ScriptObserver(stage_over=providers.release),
                                          cancelled=reliability.cancelled,
                                          on_interrupt=reliability.cancel,  # backoffs wake, no retry sends again
                                          on_abort=lambda: _stop(providers))
    except GraphError as exc:
        record["stages"] = [asdict(r) for r in exc.records]
        raise
    finally:
        providers.release()
        record["services"] = providers.services()
    record["stages"] = [asdict(r) for r in records]
    record["providers"] = _providers_used(records)
    record["fallbacks"] += [{"node": r.name, "to": r.provider, "reason": r.error,
                             **_breaker_of(providers, r.stage, record["services"])}
                            for r in records if r.status == "fallback"]
    for fb in record["fallbacks"]:
        log.warning("fallback {} -> {}: {}", fb["node"], fb["to"], fb["reason"])
    record["credits"] = _credits(comp, outputs)
    # the outputs' own, and what the run said of keeping them (a full cache: the same for every node, once)
    record["warnings"] += list(dict.fromkeys(w for r in records for w in r.warnings))
    return comp, outputs


def _encoder_fallback(comp: compose.Composition, record: dict[str, Any]) -> None:
    """A hardware encoder that could not start here: the video is the software encoder's, and the record says
    why (a fallback, and a warning)."""
    if not (why := comp.encoder_fallback):
        return
    encode = comp.cfg.encode
    record["fallbacks"].append({"node": "encode", "from": f"{encode.codec} on {encode.hw}", "to": comp.encoder.name,
                                "reason": why})
    record["warnings"].append(f"encode.hw={encode.hw}: no hardware {encode.codec} encoder worked here ({why}); "
                              f"{comp.encoder.name} encoded the video")


def _credits(comp: compose.Composition, outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Whose footage each scene shows (stock clips: service, id, creator, page), in scene and shot order, each
    clip once per scene."""
    credits = ({"scene": n, **credit} for n in comp.scenes for shot in comp.pictures(n)
               for credit in getattr(outputs.get(shot), "credits", ()))
    return list({(c["scene"], c.get("service"), c.get("id")): c for c in credits}.values())


def words_on_screen(comp: compose.Composition, outputs: dict[str, Any], timeline: list[dict[str, float]]
                    ) -> dict[str, float]:
    """How long the video shows words to read, from what its layers drew (typed lines, captions, the title and
    credits cards): seconds and share of its length."""
    spans = []
    for n, span in enumerate(timeline):
        start, end = span["start"], span["start"] + span["duration"]
        for layer in comp.layers:
            for a, b in getattr(outputs.get(comp.name(layer, n)), "words", lambda: [])():
                spans.append((start + a / 100, min(end, start + b / 100) if b is not None else end))
    seconds = ass.covered_s([(a, b) for a, b in spans if b > a])
    total = timeline[-1]["start"] + timeline[-1]["duration"] if timeline else 0.0
    return {"seconds": round(seconds, 2), "share": round(seconds / total, 4) if total else 0.0}


def _publish(comp: compose.Composition, outputs: dict[str, Any], layout: RunLayout,
             credits: list[dict[str, Any]]) -> Video:
    """The video, its captions and its credits (when it shows others' footage), each written atomically
    into the script's folder."""
    script, slug = comp.script, comp.slug
    video: Video = outputs[comp.name("mux")]
    copy_atomic(video.path, layout.video(slug))  # a copy: the rendered file may live in the cache
    voices = comp.outputs(outputs, "voice")
    cue_list = captions.cues([[n.text for n in s.narration] for s in script.scenes], video.timeline,
                             [getattr(v, "duration", 0.0) for v in voices], lead=script.scenes[0].start,
                             alignments=[getattr(v, "alignment", None) for v in voices])
    files = layout.outputs(slug)
    write_text_atomic(files["srt"], captions.srt(cue_list))
    write_text_atomic(files["vtt"], captions.vtt(cue_list))
    if credits:
        write_text_atomic(layout.credits(slug), credits_text(credits, script.title))
    return video


def _thumbnails(thumbs: Thumbnails | None, layout: RunLayout, slug: str, log: Any) -> list[str]:
    """The thumbnails stage's JPEGs into the script's folder, each written atomically, for the report; their
    paths relative to that folder. Failing costs only them."""
    names = []
    try:
        for n, path in enumerate(thumbs.images if thumbs else ()):
            target = layout.thumbnail(slug, n)
            copy_atomic(path, target)
            names.append(target.relative_to(layout.script_dir(slug)).as_posix())
    except OSError as exc:
        log.warning("no thumbnails for the report: {}", exc)
        return []
    return names


def new_record(path: Path, slug: str, error: str = "") -> dict[str, Any]:
    """A script's record before anything succeeded: failed until rendering says otherwise."""
    return {"script": str(path), "slug": slug, "status": "failed", "error": error, "issues": [], "stages": [],
            "fallbacks": [], "warnings": [], "outputs": {}}


def _admit(cfg: DictConfig, layout: RunLayout, record: dict[str, Any], log: Any) -> None:
    """Room for this job: a nearly full run disk or a memory limit no job can meet stops it with the fix;
    a nearly full cache, or memory that did not come free in time, is a warning."""
    try:
        warnings = [admission.check_disk(cfg.limits, layout.run_dir, cfg.cache.dir if cfg.cache.enabled else None),
                    admission.await_memory(cfg.limits, log)]
    except (admission.DiskFull, admission.NeverFits) as exc:
        raise ScriptError(str(exc)) from None
    record["warnings"] += [w for w in warnings if w]


def render_script(path: Path, slug: str, cfg: DictConfig, layout: RunLayout,
                  executors: Mapping[str, SlotExecutor] | None = None) -> dict[str, Any]:
    """Render one script into ``<run>/<slug>/``; never raises (but for an interruption): failures are
    returned in the record, which is also written as ``<slug>.json``. Its log records (every thread's) carry
    its slug and go to ``<slug>.log`` too; the health monitor sees it in flight meanwhile. ``executors``: slots
    whose nodes run elsewhere (the encodes on other Dask workers, batch.dask.split_scenes)."""
    with logs.correlate(script=slug), logs.script_log(layout.outputs(slug)["log"], slug), health.in_flight(slug):
        return _render(path, slug, cfg, layout, executors)


def _render(path: Path, slug: str, cfg: DictConfig, layout: RunLayout,
            executors: Mapping[str, SlotExecutor] | None) -> dict[str, Any]:
    started = time.perf_counter()
    log = logger.bind(script=slug)
    record = new_record(path, slug)
    try:
        _admit(cfg, layout, record, log)
        script = _parse(path, cfg, record, log)
        comp, outputs = _run_graph(script, slug, cfg, layout, record, log, executors)
        video = _publish(comp, outputs, layout, record["credits"])
        record["words_on_screen"] = words_on_screen(comp, outputs, video.timeline)
        record["thumbnails"] = _thumbnails(outputs.get(comp.name("thumbnails")), layout, slug, log)
        for warning in record["warnings"]:
            log.warning(warning)
        published = layout.outputs(slug) | ({"credits.txt": layout.credits(slug)} if record["credits"] else {})
        record.update(status="ok", duration=video.duration, timeline=video.timeline,
                      outputs={ext: str(path) for ext, path in published.items()})
        log.info("rendered {} ({:.1f} s of video)", layout.video(slug), video.duration)
    except KeyboardInterrupt:
        record.update(status="cancelled", error="cancelled (interrupted)")
        log.warning("cancelled")
        raise
    except Exception as exc:  # one bad script never stops the batch: its failure is its record
        known = (ScriptError, ProviderUnavailable, compose.CompositionError, codecs.CodecError)
        message = f"{exc}" if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
        record["error"] = redact(message)
        log.error("failed: {}", record["error"])
    finally:
        layout.clean_workdir(slug)
        record["seconds"] = round(time.perf_counter() - started, 3)
        write_json_atomic(layout.record(slug), record)
    return record
