"""P12: where piper's model lives. One voice process per machine (the default) against a model in every
rendering process (`voice.server_idle_s=0`, as before the voice process), over a batch of 3 narrated scripts
at batch.n_jobs=1 and n_jobs=3 (loky): the peak PSS of the process tree (the voice process counted in), the
voice process's own peak, and wall time. With n_jobs=3 the batch should cost one model, not three."""

from __future__ import annotations

from tests.benchmarks import measure, scripts
from tests.benchmarks.report import Row, failed

SCRIPTS = 3
MODES = {"voice process": [], "model per process": ["voice.server_idle_s=0"]}
JOBS = (1, 3)
SLOWER_TARGET, ONE_MODEL_TARGET = 1.1, 1.1


def rows(b) -> list[Row]:
    seconds = 10 if b.quick else 20
    inputs = b.dir("voice-process-in")
    for n in range(SCRIPTS):
        scripts.write(inputs / f"bench{n}.txt", scripts.edit_scenes(seconds, 2), title=f"BENCH_{n:04d} — VOICE")
    base = [f"batch.inputs=[{inputs}/*.txt]", "cache.enabled=false", "limits.memory_gb=0",
            f"limits.max_jobs={max(JOBS)}", "batch.backend=loky", "voice=piper",
            f"script.min_last_scene_s={seconds / 2:g}", *b.format]
    try:
        runs = {(jobs, mode): [measure.renderer([*base, f"batch.n_jobs={jobs}", *extra], b.dir("voice-process"))
                               for _ in range(b.runs)]
                for jobs in JOBS for mode, extra in MODES.items()}
    except measure.Failed as exc:
        return [failed("P12a", "piper's model in one voice process", "≤ a model per process", exc)]
    pss = {k: measure.median([r.pss_mb for r in rs]) for k, rs in runs.items()}
    wall = {k: measure.median([r.seconds for r in rs]) for k, rs in runs.items()}
    voice = {jobs: measure.median([r.voice_mb for r in runs[jobs, "voice process"]]) for jobs in JOBS}
    out = []
    for letter, jobs in zip("ab", JOBS):
        ours, theirs = (jobs, "voice process"), (jobs, "model per process")
        detail = [f"{mode}: {r.seconds:.1f} s, tree {r.pss_mb:.0f} MB PSS ({r.rss_mb:.0f} MB RSS), voice process "
                  f"{r.voice_mb:.0f} MB" for mode in MODES for r in runs[jobs, mode]]
        slower = wall[ours] / wall[theirs]
        out.append(Row(f"P12{letter}", f"{SCRIPTS} narrated {scripts.length(seconds)} scripts with piper, "
                       f"batch.n_jobs={jobs}: peak PSS of the process tree and wall, one voice process vs a model "
                       "in each rendering process",
                       f"{pss[ours]:.0f} MB, {wall[ours]:.1f} s", f"{pss[theirs]:.0f} MB, {wall[theirs]:.1f} s",
                       f"{pss[ours] - pss[theirs]:+.0f} MB, {slower:.2f}× the time",
                       f"less memory; ≤ {SLOWER_TARGET}× the time",
                       pss[ours] < pss[theirs] and slower <= SLOWER_TARGET, detail))
    ratio = voice[3] / voice[1] if voice[1] else float("inf")
    out.append(Row("P12c", "n_jobs=3 costs one model: the voice process's own peak PSS at n_jobs=3 vs n_jobs=1",
                   f"{voice[3]:.0f} MB", f"n_jobs=1 {voice[1]:.0f} MB", f"{ratio:.2f}×", f"≤ {ONE_MODEL_TARGET}×",
                   ratio <= ONE_MODEL_TARGET))
    return out
