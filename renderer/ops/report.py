"""The run's report.html: one page a person can open after an overnight batch and understand the run from.

Built from the manifest, each script's record (``<slug>/<slug>.json``) and ``metrics.json``, all already
redacted, through a jinja2 template shipped in the package (renderer/ops/templates/report.html) with autoescape
on. The page needs no network: styles inline, thumbnails and videos linked relatively from the script folders.
"""

from __future__ import annotations

import functools
import json
from contextlib import suppress
from pathlib import Path
from typing import Any

from renderer.ops.files import RunLayout, user_cache_dir, write_text_atomic
from renderer.script import format_time

STAGE_ORDER = ("voice", "level", "visual", "terminal", "timeline", "segment", "transition", "narration",
               "soundtrack", "join", "mux")
WATERFALL_W, ROW_H, LABEL_W = 560, 16, 80  # SVG geometry, in px


def minutes(seconds: float | None) -> str:
    """A length for the page: 196 -> '3:16'; none (or none yet) -> '–'."""
    return format_time(seconds) if seconds else "–"


def _load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def waterfall(stages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Bars for an SVG: one row per stage, one bar per node from its start for its seconds."""
    ran = [s for s in stages if s.get("status") not in ("pending", "skipped")]
    if not ran:
        return None
    total = max(s.get("started", 0.0) + s.get("seconds", 0.0) for s in ran) or 1.0
    names = sorted({s["stage"] for s in ran}, key=lambda n: (STAGE_ORDER.index(n) if n in STAGE_ORDER else 99, n))
    scale = (WATERFALL_W - LABEL_W) / total
    bars = [{"x": LABEL_W + s.get("started", 0.0) * scale, "y": names.index(s["stage"]) * ROW_H + 2,
             "w": max(1.0, s.get("seconds", 0.0) * scale), "status": s["status"],
             "tip": f"{s['name']}: {s['status']}, {s.get('seconds', 0.0):.2f} s from {s.get('started', 0.0):.2f} s"
                    + (f" ({s['provider']})" if s.get("provider") else "")} for s in ran]
    return {"rows": names, "bars": bars, "width": WATERFALL_W, "height": len(names) * ROW_H + 14,
            "row_h": ROW_H, "label_w": LABEL_W, "total": total}


def _link(layout: RunLayout, path: Path) -> str:
    """``path`` as the page links it: relative to the run dir, where report.html is."""
    return path.relative_to(layout.run_dir).as_posix()


def _card(slug: str, entry: dict[str, Any], layout: RunLayout) -> dict[str, Any]:
    record = _load(layout.record(slug))
    status = entry.get("status", "pending")
    outputs = {ext: path for ext, path in layout.outputs(slug).items() if path.exists()}
    scenes = (record.get("parsed") or {}).get("scenes") or []
    thumbs = [{"src": _link(layout, layout.script_dir(slug) / rel),
               "title": (scenes[n].get("title") if n < len(scenes) else "") or f"scene {n + 1}",
               "at": format_time(span["start"])}
              for n, (rel, span) in enumerate(zip(record.get("thumbnails") or [], record.get("timeline") or []))]
    error = entry.get("error") or ""
    issues = [i for i in entry.get("issues") or [] if i.partition(": ")[2] not in error]  # not said twice
    notes = ([error] if error else []) + issues + list(entry.get("warnings") or [])
    return {"slug": slug, "title": record.get("title") or "", "script": entry.get("script", ""), "status": status,
            "duration": minutes(entry.get("duration")), "took": f"{entry.get('seconds') or 0:.1f} s",
            "thumbs": thumbs, "providers": record.get("providers") or {}, "fallbacks": entry.get("fallbacks") or [],
            "notes": notes, "waterfall": waterfall(record.get("stages") or []),
            "links": {ext: _link(layout, path) for ext, path in outputs.items() if status != "pending"},
            "scenes": len(scenes), "credits": record.get("credits") or []}


def context(manifest: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    layout = RunLayout(run_dir)
    scripts = manifest.get("scripts", {})
    statuses = [s.get("status", "pending") for s in scripts.values()]
    cache = manifest.get("cache") or {}
    metrics = _load(layout.metrics)
    totals = [("rendered", f"{statuses.count('ok')} / {len(scripts)}"), ("failed", str(statuses.count("failed"))),
              ("fell back", str(sum(1 for s in scripts.values() if s.get("fallbacks")))),
              ("video", minutes(sum(s.get("duration") or 0 for s in scripts.values()))),
              ("wall time", minutes(manifest.get("seconds"))),
              ("stages from cache", f"{cache.get('hits', 0)} / {cache.get('hits', 0) + cache.get('misses', 0)}")]
    return {"run_dir": str(run_dir), "run_name": run_dir.name, "manifest": manifest, "totals": totals,
            "settings": manifest.get("settings") or {}, "metrics": metrics,
            "services": (metrics.get("services") or {}), "system": metrics.get("system") or {},
            "cards": [_card(slug, entry, layout) for slug, entry in sorted(scripts.items())],
            "unmatched": manifest.get("unmatched_inputs") or []}


@functools.cache
def _env() -> Any:
    """jinja2's environment, made when the report is written (not imported by every rendering process). The
    template compiles once per machine, not at every run (~0.1 s): jinja2 keeps its bytecode in the user's cache
    dir, checked against the template's source."""
    from jinja2 import Environment, FileSystemBytecodeCache, PackageLoader, StrictUndefined

    class KeptBytecode(FileSystemBytecodeCache):
        """A bytecode cache that cannot be read or written costs only itself."""

        def load_bytecode(self, bucket: Any) -> None:
            with suppress(OSError):
                super().load_bytecode(bucket)

        def dump_bytecode(self, bucket: Any) -> None:
            with suppress(OSError):
                super().dump_bytecode(bucket)

    kept = user_cache_dir() / "templates"
    with suppress(OSError):
        kept.mkdir(parents=True, exist_ok=True)
    env = Environment(loader=PackageLoader("renderer.ops", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, bytecode_cache=KeptBytecode(str(kept)))
    env.filters["gb"] = lambda n: f"{(n or 0) / 1024**3:.1f} GB"
    env.filters["ms"] = lambda s: f"{(s or 0) * 1000:.0f} ms" if (s or 0) < 10 else f"{s:.1f} s"
    return env


def render(manifest: dict[str, Any], run_dir: Path) -> str:
    return _env().get_template("report.html").render(**context(manifest, run_dir))


def write(manifest: dict[str, Any], run_dir: Path) -> Path:
    target = RunLayout(run_dir).report
    write_text_atomic(target, render(manifest, run_dir))
    return target
