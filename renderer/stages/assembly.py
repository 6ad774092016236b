"""Assembly stage: scenes on the script's timeline, in one ffmpeg pass.

Every scene becomes a segment of exactly its duration (whole frames): its visual scaled to the format (or the
theme's background), its narration padded or cut to fit; segments are concatenated video and audio together,
so the streams stay in sync and end together; the terminal events of all scenes are burnt in by libass.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from loguru import logger

from renderer import ass, ffmpeg
from renderer.graph import Node, NodeInput
from renderer.reliability import RetryPolicy
from renderer.providers.base import AudioClip, VisualClip
from renderer.script import Script
from renderer.stages.terminal import TerminalTrack

VERSION = "1"
STRATEGIES = ("overlay", "visual_only", "ui_only", "audio_only")
TAIL_S = 0.75  # the last scene outlasts its narration by this much
CUT_FADE_S = 0.3  # narration cut at a scene end fades out over this
SAFE_ENCODE = {"preset": "ultrafast", "crf": 30, "audio_bitrate": "96k", "audio_rate": 48000}  # placeholders


@dataclass(frozen=True)
class Assembled:
    path: Path
    duration: float
    provider: str
    timeline: list[dict[str, float]]  # per scene: start, duration (seconds, whole frames)
    warnings: list[str] = field(default_factory=list)


def timeline(scenes: list[dict[str, float]], last_voice_s: float, fps: int) -> list[dict[str, float]]:
    """Final scene starts and durations: timestamps as written, the last scene long enough for its voice."""
    durations = [s["duration"] for s in scenes]
    durations[0] += scenes[0]["start"]  # a script starting after 0:00 opens on its first scene
    durations[-1] = max(durations[-1], last_voice_s + TAIL_S)
    frames = [max(1, math.ceil(d * fps - 1e-6)) for d in durations]
    out, start = [], 0
    for n in frames:
        out.append({"start": start / fps, "duration": n / fps})
        start += n
    return out


def _video_segment(i: int, src: int | None, dur: float, cfg: dict[str, Any], background: str) -> str:
    fmt, asm = cfg["format"], cfg["assembly"]
    w, h, fps = fmt["width"], fmt["height"], fmt["fps"]
    if src is None:
        chain = f"color=c={background}:s={w}x{h}:r={fps}:d={dur:.6f},setsar=1"
    else:
        chain = (f"[{src}:v]scale={w}:{h}:force_original_aspect_ratio=increase:flags=bicubic,crop={w}:{h},"
                 f"setsar=1,fps={fps}")
        if asm["grade"]:
            chain += f",{asm['grade']}"
    chain += f",trim=duration={dur:.6f},setpts=PTS-STARTPTS"
    fade = min(asm["transition_s"], dur / 2)
    if fade > 0:
        chain += f",fade=t=in:st=0:d={fade:.3f},fade=t=out:st={dur - fade:.6f}:d={fade:.3f}"
    return f"{chain}[v{i}]"


def _audio_segment(i: int, src: int | None, dur: float, lead: float, voice_s: float, rate: int) -> str:
    if src is None:
        return f"anullsrc=r={rate}:cl=stereo,atrim=duration={dur:.6f}[a{i}]"
    chain = f"[{src}:a]aresample={rate},aformat=sample_fmts=fltp:channel_layouts=stereo"
    if lead > 0:
        chain += f",adelay={lead * 1000:.0f}:all=1"
    if lead + voice_s > dur:
        chain += f",afade=t=out:st={max(0.0, dur - CUT_FADE_S):.6f}:d={CUT_FADE_S}"
    return f"{chain},apad,atrim=duration={dur:.6f},asetpts=PTS-STARTPTS[a{i}]"


def _write_ass(path: Path, tracks: list[TerminalTrack | None], spans: list[dict[str, float]]) -> bool:
    """Merge the scenes' terminal events onto the timeline; False when there is nothing to show."""
    events: list[ass.Event] = []
    head = next((t.header for t in tracks if t and t.header), "")
    for track, span in zip(tracks, spans):
        if not track:
            continue
        start_cs, end_cs = round(span["start"] * 100), round((span["start"] + span["duration"]) * 100)
        events += [e for e in (ev.shifted(start_cs, end_cs) for ev in track.events) if e]
    if not events:
        return False
    path.write_text(head + "\n" + "\n".join(e.line() for e in events) + "\n", encoding="utf-8")
    return True


def _progress_logger(slug: str) -> Callable[[float], None]:
    """Log the encode's progress in quarters (the run log shows where a long render is)."""
    reported = [0]

    def report(fraction: float) -> None:
        quarter = int(fraction * 4)
        if quarter > reported[0]:
            reported[0] = quarter
            logger.bind(script=slug).debug("assembly {:.0%}", quarter / 4)

    return report


def assemble(inp: NodeInput, *, n_scenes: int, slug: str, timeout: float) -> Assembled:
    cfg = inp.cfg
    strategy, enc = cfg["assembly"]["strategy"], cfg["encode"]
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown assembly strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    voices: list[AudioClip | None] = [inp.deps.get(f"voice/{i}") for i in range(n_scenes)]
    visuals: list[VisualClip | None] = [inp.deps.get(f"visual/{i}") for i in range(n_scenes)]
    tracks: list[TerminalTrack | None] = [inp.deps.get(f"terminal/{i}") for i in range(n_scenes)]
    spans = _spans(inp, n_scenes)
    lead = inp.data["scenes"][0]["start"]
    warnings = []

    args: list[str] = []
    graph: list[str] = []
    n_inputs = 0
    with_video = strategy != "audio_only"
    for i, span in enumerate(spans):
        dur = span["duration"]
        if with_video:
            visual = visuals[i]
            src = None
            if visual is not None and strategy in ("overlay", "visual_only"):
                args += ["-stream_loop", "-1", "-t", f"{dur:.6f}", "-i", str(visual.path)]
                src, n_inputs = n_inputs, n_inputs + 1
            graph.append(_video_segment(i, src, dur, cfg, "0x" + cfg["theme.background"].lstrip("#")))
        voice = voices[i]
        src = None
        if voice is not None and voice.path is not None:
            args += ["-i", str(voice.path)]
            src, n_inputs = n_inputs, n_inputs + 1
        scene_lead = lead if i == 0 else 0.0
        if voice is not None and voice.duration + scene_lead > dur + 0.05:
            warnings.append(f"scene {i + 1}: narration ({voice.duration:.1f} s) is longer than the scene "
                            f"({dur:.1f} s) and was cut; give the scene more time or shorten the narration")
        graph.append(_audio_segment(i, src, dur, scene_lead, voice.duration if voice else 0.0, enc["audio_rate"]))

    pads = "".join(f"[v{i}][a{i}]" if with_video else f"[a{i}]" for i in range(len(spans)))
    graph.append(f"{pads}concat=n={len(spans)}:v={int(with_video)}:a=1[vc][ac]" if with_video
                 else f"{pads}concat=n={len(spans)}:v=0:a=1[ac]")
    maps = ["-map", "[ac]"]
    if with_video:
        ass_file = inp.workdir / f"terminal-{inp.key[:12]}.ass"
        if strategy in ("overlay", "ui_only") and _write_ass(ass_file, tracks, spans):
            graph.append(f"[vc]ass=filename={ass_file.name}[vo]")
            maps = ["-map", "[vo]", *maps]
        else:
            maps = ["-map", "[vc]", *maps]
    script_file = inp.workdir / f"assembly-{inp.key[:12]}.filter"
    script_file.write_text(";\n".join(graph) + "\n", encoding="utf-8")
    out = inp.workdir / f"{slug}-{inp.key[:12]}.mp4"
    total = spans[-1]["start"] + spans[-1]["duration"]
    ffmpeg.run([*args, "-filter_complex_script", script_file.name, *maps, *_encoding(cfg, with_video),
                "-f", "mp4", str(out)], timeout=timeout, cwd=inp.workdir, duration=total,
               on_progress=_progress_logger(slug))
    return Assembled(out, total, f"ffmpeg:{strategy}", spans, warnings)


def _spans(inp: NodeInput, n_scenes: int) -> list[dict[str, float]]:
    scenes = inp.data["scenes"]
    lead = scenes[0]["start"]
    last_voice = getattr(inp.deps.get(f"voice/{n_scenes - 1}"), "duration", 0.0)
    return timeline(scenes, last_voice + (lead if n_scenes == 1 else 0.0), inp.cfg["format"]["fps"])


def _encoding(cfg: dict[str, Any], with_video: bool) -> list[str]:
    fmt, enc = cfg["format"], cfg["encode"]
    video = ["-c:v", "libx264", "-preset", enc["preset"], "-crf", str(enc["crf"]), "-pix_fmt", "yuv420p",
             "-r", str(fmt["fps"])] if with_video else []
    return [*video, "-c:a", "aac", "-b:a", enc["audio_bitrate"], "-ar", str(enc["audio_rate"]),
            "-movflags", "+faststart"]


def placeholder(inp: NodeInput, exc: Exception, *, n_scenes: int, slug: str, timeout: float) -> Assembled:
    """When assembly fails for good, the video still comes out: the script's length, silent, saying what
    failed (recorded as a fallback, so the batch report shows it)."""
    cfg = inp.cfg
    fmt = cfg["format"]
    spans = _spans(inp, n_scenes)
    total = spans[-1]["start"] + spans[-1]["duration"]
    with_video = cfg["assembly"]["strategy"] != "audio_only"
    lines = (getattr(exc, "stderr_tail", "") or str(exc)).strip().splitlines()
    # ffmpeg's first complaint says what broke; its "[aac @ 0x55…]" prefixes do not
    reason = re.sub(r"^(\[[^\]]*\]\s*)+", "", lines[0])[:160] if lines else type(exc).__name__
    args = ["-f", "lavfi", "-i", f"anullsrc=r={SAFE_ENCODE['audio_rate']}:cl=stereo,atrim=duration={total:.6f}"]
    if with_video:
        size = max(12, fmt["height"] // 24)
        card = ass.header(fmt["width"], fmt["height"], "DejaVu Sans", size, "#e0e0e0") + "\n" + ass.Event(
            0, round(total * 100), 0, "Term",
            f"{{\\an5\\pos({fmt['width'] // 2},{fmt['height'] // 2})}}{ass.escape(f'{slug}: rendering failed')}"
            f"\\N{{\\fs{size * 2 // 3}}}{ass.escape(reason)}").line() + "\n"
        card_file = inp.workdir / f"placeholder-{inp.key[:12]}.ass"
        card_file.write_text(card, encoding="utf-8")
        args += ["-f", "lavfi", "-i", f"color=c=black:s={fmt['width']}x{fmt['height']}:r={fmt['fps']}:d={total:.6f}",
                 "-map", "1:v", "-vf", f"ass=filename={card_file.name}"]
    out = inp.workdir / f"{slug}-{inp.key[:12]}-placeholder.mp4"
    safe = {**cfg, "encode": SAFE_ENCODE}  # whatever setting broke the assembly is not used here
    ffmpeg.run([*args, "-map", "0:a", *_encoding(safe, with_video), "-t", f"{total:.6f}", "-f", "mp4", str(out)],
               timeout=timeout, cwd=inp.workdir)
    return Assembled(out, total, "placeholder", spans,
                     [f"assembly failed ({reason}); the video is a placeholder that says so"])


def node(script: Script, slug: str, dep_names: list[str], *, timeout: float, retry: RetryPolicy | None = None
         ) -> Node:
    """The assembly node: retried per ``retry``, then a placeholder video if it still fails."""
    scenes = [{"start": s.start, "duration": s.duration} for s in script.scenes]
    return Node(
        name="assembly",
        stage="assembly",
        version=VERSION,
        reads=("assembly", "format", "encode", "theme.background"),
        data={"scenes": scenes, "slug": slug},
        deps=tuple(dep_names),
        fn=lambda inp: assemble(inp, n_scenes=len(scenes), slug=slug, timeout=timeout),
        fallback=lambda inp, exc: placeholder(inp, exc, n_scenes=len(scenes), slug=slug, timeout=timeout),
        retry=retry,
    )
