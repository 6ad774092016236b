"""The run's report.html: one page a person can open after an overnight batch.

Built from the manifest alone (already redacted), every value HTML-escaped; videos play inline from their
folders, so the page works straight from the run dir.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from renderer.files import write_text_atomic

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em} .meta{color:#666;margin-bottom:1.2em}
.cards{display:flex;gap:1em;margin:1em 0 1.5em} .card{background:#fff;border:1px solid #ddd;border-radius:6px;
padding:.6em 1em} .card b{display:block;font-size:1.5em}
table{border-collapse:collapse;width:100%;background:#fff} th,td{border-bottom:1px solid #e4e4e4;
padding:.5em .6em;text-align:left;vertical-align:top} th{background:#f0f0f0}
.ok{color:#17803d;font-weight:600} .failed,.cancelled{color:#b42318;font-weight:600} .pending{color:#8a6d00}
ul{margin:.2em 0;padding-left:1.2em} video{width:240px;border-radius:4px;background:#000} small{color:#666}
"""


def _minutes(seconds: float | None) -> str:
    if not seconds:
        return "–"
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def _items(values: list[str], empty: str = "") -> str:
    if not values:
        return empty
    return "<ul>" + "".join(f"<li>{escape(v)}</li>" for v in values) + "</ul>"


def _row(slug: str, entry: dict[str, Any], run_dir: Path) -> str:
    status = entry.get("status", "pending")
    video = Path(entry.get("outputs", {}).get("mp4", ""))
    if status == "ok" and video.name:
        rel = f"{escape(slug)}/{escape(video.name)}"
        media = (f'<video controls preload="none" src="{rel}"></video><br>'
                 f'<small><a href="{rel}">mp4</a> · <a href="{escape(slug)}/{escape(slug)}.srt">srt</a> · '
                 f'<a href="{escape(slug)}/{escape(slug)}.json">json</a></small>')
    else:
        media = f'<small><a href="{escape(slug)}/{escape(slug)}.json">json</a></small>' if status != "pending" else ""
    fallbacks = [f"{f.get('node')} → {f.get('to')}: {f.get('reason', '')}" for f in entry.get("fallbacks") or []]
    notes = ([entry["error"]] if entry.get("error") else []) + list(entry.get("warnings") or []) \
        + list(entry.get("issues") or [])
    return (f"<tr><td><b>{escape(slug)}</b><br><small>{escape(str(entry.get('script', '')))}</small></td>"
            f'<td class="{escape(status)}">{escape(status)}</td>'
            f"<td>{_minutes(entry.get('duration'))}</td><td>{_minutes(entry.get('seconds'))}</td>"
            f"<td>{_items(fallbacks, 'none')}</td><td>{_items(notes)}</td><td>{media}</td></tr>")


def render(manifest: dict[str, Any], run_dir: Path) -> str:
    scripts = manifest.get("scripts", {})
    done = sum(1 for s in scripts.values() if s.get("status") == "ok")
    video_s = sum(s.get("duration") or 0 for s in scripts.values())
    fallbacks = sum(len(s.get("fallbacks") or []) for s in scripts.values())
    cache = manifest.get("cache") or {}
    settings = " · ".join(f"{k}: {escape(str(v))}" for k, v in (manifest.get("settings") or {}).items())
    cards = [("rendered", f"{done} / {len(scripts)}"), ("video", _minutes(video_s)),
             ("wall time", _minutes(manifest.get("seconds"))), ("fallbacks", str(fallbacks)),
             ("stages from cache", f"{cache.get('hits', 0)} / {cache.get('hits', 0) + cache.get('misses', 0)}")]
    rows = "".join(_row(slug, entry, run_dir) for slug, entry in sorted(scripts.items()))
    unmatched = _items([f"no file matches {p}" for p in manifest.get("unmatched_inputs") or []])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>renderer run {escape(run_dir.name)}</title>
<style>{STYLE}</style></head><body>
<h1>Run {escape(str(run_dir))}</h1>
<div class="meta">started {escape(str(manifest.get("started") or ""))} · finished
{escape(str(manifest.get("finished") or "not yet"))} · {settings}
{(" · experiment " + escape(manifest["experiment"])) if manifest.get("experiment") else ""}</div>
<div class="cards">{"".join(f'<div class="card"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in cards)}</div>
{unmatched}
<table><tr><th>script</th><th>status</th><th>video</th><th>took</th><th>fallbacks</th><th>notes</th>
<th>output</th></tr>{rows}</table>
</body></html>
"""


def write(manifest: dict[str, Any], run_dir: Path) -> Path:
    target = run_dir / "report.html"
    write_text_atomic(target, render(manifest, run_dir))
    return target
