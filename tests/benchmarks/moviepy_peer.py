"""The peer of P2: the renderer's 60 s composition written the way a MoviePy 2.x generator writes it.

    python -m tests.benchmarks.moviepy_peer SPEC.json     (needs `pip install -e ".[bench]"`)

A ColorClip background; the on-screen text typed line by line, one TextClip per typed prefix, scrolling up
once the screen is full (positions as functions of time); the narration as an AudioFileClip; all in one
CompositeVideoClip written by MoviePy's ffmpeg writer with the renderer's x264 and AAC settings.
"""

from __future__ import annotations

import json
import sys

from moviepy import AudioFileClip, ColorClip, CompositeVideoClip, TextClip


def schedule(lines: list[dict], rhythm: dict) -> list[tuple[float, list[tuple[float, str]]]]:
    """Per line: when it appears, and its states as (from seconds, text shown)."""
    t, out = rhythm["start_delay_ms"] / 1000, []
    for line in lines:
        if line["kind"] == "output":
            t += rhythm["output_pause_ms"] / 1000
            out.append((t, [(t, line["text"])]))
            continue
        per_char = rhythm["command_ms_per_char" if line["kind"] == "command" else "comment_ms_per_char"] / 1000
        shown = f"{line['prompt']} " if line["prompt"] else ""
        states = [(t, shown)] + [(t + (k + 1) * per_char, shown + line["text"][:k + 1]) for k in range(len(line["text"]))]
        out.append((t, states))
        t = states[-1][0] + rhythm["line_pause_ms"] / 1000
    return out


def main(spec_path: str) -> None:
    spec = json.loads(open(spec_path, encoding="utf-8").read())
    width, height, duration = spec["width"], spec["height"], spec["duration"]
    line_h, pad, rows = spec["line_height"], spec["padding"], spec["rows"]
    lines = schedule(spec["lines"], spec["rhythm"])
    appear = [at for at, _ in lines]

    def row_y(i: int):
        def y(t: float) -> tuple[int, int]:
            shown = sum(1 for at in appear if at <= t)
            return pad, pad + (i - max(0, shown - rows)) * line_h
        return y

    clips = [ColorClip((width, height), color=tuple(int(spec["background"][k:k + 2], 16) for k in (1, 3, 5)),
                       duration=duration)]
    for i, (_, states) in enumerate(lines):
        gone = appear[i + rows] if i + rows < len(appear) else duration  # scrolled off the top
        for k, (start, text) in enumerate(states):
            end = states[k + 1][0] if k + 1 < len(states) else gone
            if not text.strip() or end <= start or start >= duration:
                continue
            clips.append(TextClip(font=spec["font"], text=text, font_size=spec["font_size"], color=spec["foreground"],
                                  method="label").with_start(start).with_end(min(end, duration)).with_position(row_y(i)))
    video = CompositeVideoClip(clips, size=(width, height)).with_duration(duration)
    video = video.with_audio(AudioFileClip(spec["audio"]))
    video.write_videofile(spec["out"], fps=spec["fps"], codec="libx264", preset=spec["preset"],
                          ffmpeg_params=["-crf", str(spec["crf"]), "-pix_fmt", "yuv420p"], audio_codec="aac",
                          audio_bitrate=spec["audio_bitrate"], audio_fps=spec["audio_rate"], logger=None)


if __name__ == "__main__":
    main(sys.argv[1])
