"""P6: start-up, and memory against video length.

`python -m renderer --cfg job` composes the config and exits: what every run pays before its first node.
The orchestrator is the Python process of a sequential batch (batch.backend=sequential): frames never pass
through it, so its memory must not grow with the video. Nor may the whole process tree's (its ffmpeg children
and the voice process, PSS), whose stages that read every scene's output (the soundtrack, the thumbnails) must
read them a few at a time. A 1-minute 3-scene and a 10-minute 30-scene script are rendered cold at 320x180 (the
frame size is ffmpeg's concern) with procedural visuals and each offline voice: piper, whose model runs in the
voice process (a process of its own, shared by every worker on the machine), and espeak-ng, which runs as a tool
of its own like ffmpeg. The orchestrator's peak and the tree's come from the same runs.
"""

from __future__ import annotations

import sys

from tests.benchmarks import measure, scripts
from tests.benchmarks.report import Row, failed

START_TARGET_S = 1.0
MEMORY_TARGET_MB = 100.0
FLAT_TARGET = 1.1


def rows(b) -> list[Row]:
    return [_start(b), *_memory(b, ("P6b", "P6d"), "piper", "the default voice, piper, its model in the voice process"),
            *_memory(b, ("P6c",), "espeak", "espeak-ng, a process of its own")]


def _start(b) -> Row:
    runs = [measure.run([sys.executable, "-m", "renderer", "--cfg", "job"]) for _ in range(max(b.runs, 5))]
    wall = measure.median([r.seconds for r in runs])
    return Row("P6a", "start-up: `python -m renderer --cfg job`", f"{wall:.2f} s", "—", "—", f"≤ {START_TARGET_S:g} s",
               wall <= START_TARGET_S, [f"{r.seconds:.2f} s" for r in runs])


# what P6's memory rows read of a run: the orchestrator's peak RSS (also under a cap), the process tree's peak PSS
MEASURES = [("orchestrator's peak RSS", lambda r: r.own_rss_mb, MEMORY_TARGET_MB),
            ("process tree's peak PSS", lambda r: r.pss_mb, None)]


def _target(cap: float | None) -> str:
    return (f"≤ {cap:g} MB, " if cap else "") + f"≤ {FLAT_TARGET}× the shorter (flat in length)"


def _memory(b, ids: tuple[str, ...], voice: str, which: str) -> list[Row]:
    """A row for each of ``ids``, the ``MEASURES`` in turn, for a short and a long script."""
    sizes = [(20, 2), (60, 3)] if b.quick else [(60, 3), (600, 30)]
    rows_of = list(zip(ids, MEASURES))
    try:
        runs = {total: [_render(b, total, count, voice) for _ in range(b.runs)] for total, count in sizes}
    except measure.Failed as exc:
        return [failed(id_, f"{name} with {which}", _target(cap), exc) for id_, (name, _, cap) in rows_of]
    (short, _), (long, _) = sizes
    out = []
    for id_, (name, mb, cap) in rows_of:
        low, high = (measure.median([mb(r) for r in runs[total]]) for total in (short, long))
        detail = [f"{scripts.length(total)}: " + ", ".join(f"{mb(r):.0f} MB" for r in runs[total])
                  for total, _ in sizes]
        out.append(Row(id_, f"{name} with {which}: a {scripts.length(long)} script", f"{high:.0f} MB",
                       f"{scripts.length(short)} script {low:.0f} MB", f"{high / low:.2f}×", _target(cap),
                       (cap is None or high <= cap) and high / low <= FLAT_TARGET, detail))
    return out


def _render(b, total: int, count: int, voice: str) -> measure.Run:
    script = scripts.write(b.dir("memory-in") / "bench.txt", scripts.edit_scenes(total, count))
    return measure.renderer([f"batch.inputs=[{script}]", "batch.backend=sequential",
                             f"cache.dir={b.dir('memory-cache')}", f"voice={voice}",
                             f"script.min_last_scene_s={total / count:g}", "format=landscape_720p",
                             "format.width=320", "format.height=180", "format.fps=30"], b.dir("memory"))
