"""P1 (cold render vs its floor) and P4 (what an edit costs), from the same renders of one script.

Each run starts a fresh cache: a cold render of a synthetic 9-scene, 5-minute script (every other scene types
on-screen text), one ffmpeg re-encode of its MP4 (the floor), then on the same cache: the script unchanged,
one scene's narration edited, one scene's on-screen text edited, theme=matrix. With the default burned-in
captions a narration edit redraws its scene's captions, so that scene's segments are encoded again (P4e); the
audio path alone (P4b: no segment may be re-encoded) is measured on a cache of its own with
``captions.burn=false``: a cold render, then the same narration edit.
"""

from __future__ import annotations

from renderer.config import EncodeConfig
from tests.benchmarks import measure, scripts
from tests.benchmarks.report import Row, failed

_ENC = EncodeConfig()  # the schema's defaults, as every segment and the soundtrack use them
X264 = ["-c:v", "libx264", "-preset", _ENC.preset, "-crf", str(_ENC.crf), "-pix_fmt", "yuv420p"]
ENCODE = [*X264, "-c:a", "aac", "-b:a", _ENC.audio_bitrate, "-ar", str(_ENC.audio_rate), "-ac", str(_ENC.audio_channels)]
EDITS = [("unchanged", "", ()), ("narration", "narration", ()), ("screen", "screen", ()), ("theme", "", ("theme=matrix",))]
# what a theme may re-run: what is drawn in its colours (terminals, backgrounds, the title card, burned-in
# captions), the segments; no voice or soundtrack
THEME_REDRAWS = {"terminal", "visual", "title", "captions", "segment", "join", "mux", "thumbnails"}
P1_TARGET = 1.15  # the cold render against one re-encode of what it made
SOFT_CAPTIONS = ("captions.burn=false",)  # P4b: captions in their own files, so a narration edit is audio only


def rows(b) -> list[Row]:
    total, count = (30, 3) if b.quick else (300, 9)
    sizes = f"{scripts.length(total)}, {count}-scene"
    try:
        runs = [_one(b, total, count) for _ in range(b.runs)]
    except measure.Failed as exc:
        return [failed(id_, claim, target, exc) for id_, claim, target in
                [("P1", "cold render vs its floor", f"≤ {P1_TARGET}×"), ("P4a", "unchanged rerun", "≤ 5 % of cold")]]
    cold = measure.median([r["cold"].seconds for r in runs])
    floor = measure.median([r["floor"].seconds for r in runs])
    ratio = measure.median([r["cold"].seconds / r["floor"].seconds for r in runs])
    out = [Row("P1", f"cold offline render of a {sizes} script, 720p30", f"cold render {cold:.1f} s",
               f"one ffmpeg re-encode of its MP4 {floor:.1f} s", f"{ratio:.2f}×", f"≤ {P1_TARGET}×", ratio <= P1_TARGET,
               [f"cold {r['cold'].seconds:.1f} s vs floor {r['floor'].seconds:.1f} s" for r in runs])]
    share = {name: measure.median([r[name].seconds / r["cold"].seconds for r in runs]) for name, _, _ in EDITS}
    seconds = {name: measure.median([r[name].seconds for r in runs]) for name, _, _ in EDITS}
    detail = {name: [f"{r[name].seconds:.1f} s ({r[name].seconds / r['cold'].seconds:.1%}): {r[name + ' ran']}"
                     for r in runs] for name, _, _ in EDITS}
    screen_target, burned_target = 1 / count + 0.10, 1 / count + 0.05
    soft_cold = measure.median([r["soft cold"].seconds for r in runs])
    soft_share = measure.median([r["soft narration"].seconds / r["soft cold"].seconds for r in runs])
    soft_clean = all("segment" not in r["soft narration ran"] for r in runs)
    out += [Row("P4a", "unchanged rerun", f"{seconds['unchanged']:.1f} s", f"cold {cold:.1f} s",
                f"{share['unchanged']:.1%}", "≤ 5 %", share["unchanged"] <= 0.05, detail["unchanged"]),
            Row("P4b", "one scene's narration edited, captions in their own files (captions.burn=false): the audio "
                "path", f"{measure.median([r['soft narration'].seconds for r in runs]):.1f} s; "
                f"{runs[0]['soft narration ran']}", f"cold {soft_cold:.1f} s", f"{soft_share:.1%}",
                "≤ 5 %, no segment re-encoded", soft_share <= 0.05 and soft_clean,
                [f"{r['soft narration'].seconds:.1f} s ({r['soft narration'].seconds / r['soft cold'].seconds:.1%} of "
                 f"cold {r['soft cold'].seconds:.1f} s): {r['soft narration ran']}" for r in runs]),
            Row("P4e", "one scene's narration edited, captions burned in (the default): its captions and segments "
                "redrawn", f"{seconds['narration']:.1f} s", f"cold {cold:.1f} s", f"{share['narration']:.1%}",
                f"≤ 1/{count} + 5 % = {burned_target:.0%}", share["narration"] <= burned_target, detail["narration"]),
            Row("P4c", "one scene's on-screen text edited", f"{seconds['screen']:.1f} s", f"cold {cold:.1f} s",
                f"{share['screen']:.1%}", f"≤ 1/{count} + 10 % = {screen_target:.0%}", share["screen"] <= screen_target,
                detail["screen"]),
            Row("P4d", "theme change: terminals and backgrounds redrawn in its colours",
                f"{seconds['theme']:.1f} s; {runs[0]['theme ran']}", f"cold {cold:.1f} s", f"{share['theme']:.1%}",
                "no voice or soundtrack re-run", all(r["theme redraws only"] for r in runs), detail["theme"])]
    return out


def _one(b, total: int, count: int) -> dict:
    cache, found = b.dir("edits-cache"), {}
    overrides = ["batch.n_jobs=1", f"cache.dir={cache}", f"script.min_last_scene_s={total / count:g}", *b.format]
    for name, edit, extra in [("cold", "", ()), *EDITS]:
        script = scripts.write(b.dir("edits-in") / "bench.txt", scripts.edit_scenes(total, count, edit))
        run_dir = b.dir(f"edits-{name}")
        found[name] = measure.renderer([f"batch.inputs=[{script}]", *overrides, *extra], run_dir)
        record = measure.record(run_dir, "bench")
        found[f"{name} ran"] = _ran(record)
        if name == "cold":
            mp4 = run_dir / "bench" / "bench.mp4"
            found["floor"] = measure.run(["ffmpeg", "-y", "-v", "error", "-i", str(mp4), *ENCODE,
                                          str(b.dir("edits-floor") / "floor.mp4")])
        if name == "theme":
            found["theme redraws only"] = {n["stage"] for n in measure.ran(record)} <= THEME_REDRAWS
    soft = ["batch.n_jobs=1", f"cache.dir={b.dir('edits-soft-cache')}", f"script.min_last_scene_s={total / count:g}",
            *b.format, *SOFT_CAPTIONS]
    for name, edit in [("soft cold", ""), ("soft narration", "narration")]:
        script = scripts.write(b.dir("edits-in") / "bench.txt", scripts.edit_scenes(total, count, edit))
        run_dir = b.dir(f"edits-{name.replace(' ', '-')}")
        found[name] = measure.renderer([f"batch.inputs=[{script}]", *soft], run_dir)
        found[f"{name} ran"] = _ran(measure.record(run_dir, "bench"))
    return found


def _ran(record: dict) -> str:
    """'voice ×1, segment ×2, soundtrack ×1 …': the nodes that did work (not from the cache), per stage."""
    counts: dict[str, int] = {}
    for node in measure.ran(record):
        counts[node["stage"]] = counts.get(node["stage"], 0) + 1
    return ", ".join(f"{stage} ×{n}" for stage, n in counts.items()) or "nothing"
