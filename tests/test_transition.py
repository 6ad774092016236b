"""Transitions at the cuts (ffmpeg xfade), as rendered: the same frames and length as hard cuts, a clean join,
a real blend in the window, the fallbacks, and a clear error for a name xfade does not know.

A red and a blue scene, from the user's own clips (visual=library), so the blend can be read off the pixels."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from renderer.engine.node import NodeInput
from renderer.media.codecs import Encoder
from renderer.media.ffmpeg import FFmpegError
from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from renderer.providers.base import VisualClip
from renderer.stages import transition
from renderer.media.xfade import TransitionError, xfade_name
from renderer.stages.timeline import cut_window, plan
from tests.conftest import compose_cfg

W, H, FPS = 160, 90, 25
RED_BLUE = """SCRIPT: TEST_0003 — COLOURS

[0:00 – Red]
Visual: red
Narration: “One.”

[0:01 – Blue]
Visual: blue
Narration: “Two.”

[0:02 – Red again]
Visual: red
Narration: “Three.”
END TEST_0003
"""
CUTS = (25, 50)  # 1 s and 2 s at 25 fps
FAST = [f"format.width={W}", f"format.height={H}", f"format.fps={FPS}", "encode.preset=ultrafast",
        "batch.backend=sequential", "voice=silent", "assembly=visual_only", "visual=library"]


def solid_clip(path: Path, colour: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"color=c={colour}:s={W}x{H}:r={FPS}:d=1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for colour in ("red", "blue"):
        solid_clip(folder / f"{colour}.mp4", colour)
    return folder


def render(tmp: Path, clips: Path, *overrides: str, text: str = RED_BLUE) -> tuple[dict, Path]:
    """The script rendered with its own cache; its record and video."""
    script = tmp / "colours.txt"
    script.write_text(text, encoding="utf-8")
    cfg = compose_cfg(*FAST, f"visual.dir={clips}", "cache.enabled=true", f"cache.dir={tmp / 'cache'}", *overrides)
    record = render_script(script, "colours", cfg, RunLayout(tmp / "run"))
    return record, tmp / "run" / "colours" / "colours.mp4"


def frames_and_duration(path: Path) -> tuple[int, float, float]:
    """Counted video frames, the video's and the audio's duration."""
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-print_format", "json", "-show_streams",
                          str(path)], capture_output=True, text=True, check=True).stdout
    streams = {s["codec_type"]: s for s in json.loads(out)["streams"]}
    return (int(streams["video"]["nb_read_frames"]), float(streams["video"]["duration"]),
            float(streams["audio"]["duration"]))


def decode_errors(path: Path) -> str:
    return subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True).stderr


def colours(path: Path) -> list[tuple[int, int, int]]:
    """Each frame's colour in the middle of the picture."""
    middle = f"crop=8:8:{W // 2}:{H // 2},scale=1:1:flags=area"
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-vf", middle, "-fps_mode",
                          "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True,
                         check=True).stdout
    return [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]


@pytest.fixture(scope="module")
def renders(tmp_path_factory, clips) -> dict[str, tuple[dict, Path]]:
    out = {}
    for name, overrides in {"hard": (), "crossfade": ("assembly.transition=crossfade", "assembly.transition_s=0.4"),
                            "wipe": ("assembly.transition=wipeleft", "assembly.transition_s=0.4")}.items():
        record, video = render(tmp_path_factory.mktemp(name), clips, *overrides)
        assert record["status"] == "ok" and record["fallbacks"] == [], record["error"]
        out[name] = record, video
    return out


def test_transitions_keep_the_frames_the_length_and_the_sync_of_hard_cuts(renders):
    hard = frames_and_duration(renders["hard"][1])
    assert hard[0] == round(renders["hard"][0]["duration"] * FPS) and hard[0] > CUTS[1]
    for name in ("crossfade", "wipe"):
        record, video = renders[name]
        assert frames_and_duration(video) == hard, name
        assert record["timeline"] == renders["hard"][0]["timeline"]
        assert decode_errors(video) == "", name
        assert [s["name"] for s in record["stages"] if s["stage"] == "transition"] == ["transition/0", "transition/1"]


def test_a_crossfade_blends_the_two_scenes_in_its_window(renders):
    hard, faded = colours(renders["hard"][1]), colours(renders["crossfade"][1])
    red, blue = hard[0], hard[CUTS[0]]
    assert red[0] > 200 > red[2] + 150 and blue[2] > 200 > blue[0] + 150
    half = round(0.4 * FPS) // 2  # 5 frames each side of the cut
    assert max(faded[0]) < 10 and max(faded[-1]) < 40  # the video fades in from black and out to it
    assert faded[half * 2:CUTS[0] - half] == hard[half * 2:CUTS[0] - half]  # the bodies are the scenes' frames
    assert faded[CUTS[0] + half:CUTS[1] - half] == hard[CUTS[0] + half:CUTS[1] - half]
    mid = faded[CUTS[0]]  # the cut's middle frame: half of each
    assert 90 < mid[0] < 165 and 90 < mid[2] < 165, mid
    window = faded[CUTS[0] - half:CUTS[0] + half]
    assert [r for r, _, _ in window] == sorted((r for r, _, _ in window), reverse=True)  # red going, blue coming
    assert faded[CUTS[1]][0] > 90 and faded[CUTS[1]][2] > 90  # blue into red again


def test_a_wipe_shows_both_scenes_side_by_side(renders):
    """wipeleft: mid-window, the next scene has wiped over the right of the frame, the left is still the last."""
    video = renders["wipe"][1]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(video), "-vf",
                          f"select=eq(n\\,{CUTS[0]}),scale={W}:1:flags=area", "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    left, right = tuple(raw[3 * 10:3 * 10 + 3]), tuple(raw[3 * (W - 10):3 * (W - 10) + 3])
    assert left[0] > 200 and left[2] < 60, left  # red
    assert right[2] > 200 and right[0] < 60, right  # blue


def test_an_unknown_transition_is_a_clear_config_error(tmp_path, clips):
    record, _ = render(tmp_path, clips, "assembly.transition=sparkle", "assembly.transition_s=0.5")
    assert record["status"] == "failed"
    assert "assembly.transition='sparkle'" in record["error"]
    assert "crossfade, fade," in record["error"] and "dissolve" in record["error"]  # the valid choices
    assert record["stages"] == [] and not (tmp_path / "run" / "colours" / "colours.mp4").exists()  # nothing ran


def test_a_failed_transition_is_a_hard_cut_or_else_a_card(tmp_path):
    timeline = plan([(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)], FPS)
    window = cut_window(timeline, 0, round(0.4 * FPS))
    cfg = {"format.width": W, "format.height": H, "format.fps": FPS, "encode.preset": "ultrafast", "encode.crf": 23,
           "assembly.transition_s": 0.4, "assembly.transition": "crossfade", "assembly.grade": ""}
    clip = solid_clip(tmp_path / "red.mp4", "red")

    def inp(picture: Path) -> NodeInput:
        deps = {"window": window, "picture": VisualClip(picture, 1.0), "layers": [],
                "next_picture": VisualClip(picture, 1.0), "next_layers": []}
        return NodeInput({"opens": True, "closes": False, "encoder": Encoder("h264", "libx264")}, cfg, deps, tmp_path,
                         "c" * 64)

    error = FFmpegError("ffmpeg failed", stderr_tail="[Parsed_xfade_0 @ 0x1] Invalid argument")
    held = transition.fallback(inp(clip), error, cut=0, threads=1, timeout=60)
    assert held.provider == "ffmpeg" and "hard cut" in held.warnings[0] and "Invalid argument" in held.warnings[0]
    assert count_frames(held.path) == window.frames == 10
    assert all(c[0] > 200 and c[2] < 60 for c in colours(held.path))  # the scene before the cut, running on
    card = transition.fallback(inp(tmp_path / "gone.mp4"), error, cut=0, threads=1, timeout=60)
    assert card.provider == "placeholder" and "placeholder" in card.warnings[0]
    assert count_frames(card.path) == 10 and decode_errors(card.path) == ""


def count_frames(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip())


SHOTS = """SCRIPT: TEST_0004 — SHOTS
[0:00 – Both]
Visual: red and blue
Narration: “One.”

[0:02 – Blue]
Visual: blue
Narration: “Two.”
END TEST_0004
"""


def test_a_scene_in_shots_crossfades_into_the_next_with_the_frames_of_hard_cuts(tmp_path, clips):
    (tmp_path / "hard").mkdir(), (tmp_path / "faded").mkdir()
    hard, hard_video = render(tmp_path / "hard", clips, "visual.shot_s=1", text=SHOTS)
    faded, faded_video = render(tmp_path / "faded", clips, "visual.shot_s=1", "assembly.transition=crossfade",
                                "assembly.transition_s=0.4", text=SHOTS)
    assert hard["status"] == faded["status"] == "ok", (hard["error"], faded["error"])
    assert {s["name"] for s in faded["stages"] if s["stage"] == "visual"} >= {"visual/0.0", "visual/0.1"}
    assert frames_and_duration(faded_video) == frames_and_duration(hard_video)
    assert decode_errors(faded_video) == ""
    shots = colours(hard_video)[:50]  # scene 0: its two shots, a file each (the narration gives no pauses: even)
    assert {max(range(3), key=lambda c: rgb[c]) for rgb in (shots[10], shots[40])} == {0, 2}  # red, then blue


BOTH_IN_SHOTS = """SCRIPT: TEST_0005 — SHOTS BOTH SIDES
[0:00 – Both]
Visual: red and blue
Narration: “One.”

[0:02 – Both again]
Visual: blue and red
Narration: “Two.”
END TEST_0005
"""


def test_a_cut_between_two_scenes_in_shots_crossfades(tmp_path, clips):
    """A transition's window draws both scenes, each in shots, in one filter graph: it blends them, with no
    fallback to a hard cut."""
    record, video = render(tmp_path, clips, "visual.shot_s=1", "script.min_last_scene_s=2",
                           "assembly.transition=crossfade", "assembly.transition_s=0.4", text=BOTH_IN_SHOTS)
    assert record["status"] == "ok" and record["fallbacks"] == [], (record["error"], record["fallbacks"])
    shot_counts = {s["scene"]: 0 for s in record["stages"] if s["stage"] == "visual"}
    for s in record["stages"]:
        if s["stage"] == "visual":
            shot_counts[s["scene"]] += 1
    assert shot_counts == {0: 2, 1: 2}
    assert [s["provider"] for s in record["stages"] if s["stage"] == "transition"] == ["ffmpeg:xfade"]
    assert decode_errors(video) == ""


def test_shots_blend_into_each_other_and_a_chunk_in_a_blend_shows_the_same_frames(tmp_path, clips):
    """A dissolve between a scene's red and blue shots: the frames around the cut between shots mix the two, and
    a render cut into chunks of 0.6 s (one starting inside the blend) gives every frame as one render does."""
    whole_dir, chunked_dir = tmp_path / "whole", tmp_path / "chunked"
    whole_dir.mkdir(), chunked_dir.mkdir()
    blend = ("visual.shot_s=1", "assembly.shot_transition=crossfade", "assembly.transition_s=0.4")
    whole, whole_video = render(whole_dir, clips, *blend, text=SHOTS)
    chunked, chunked_video = render(chunked_dir, clips, *blend, "encode.chunk_s=0.6", text=SHOTS)
    assert whole["status"] == chunked["status"] == "ok", (whole["error"], chunked["error"])
    frames = colours(whole_video)
    # the two files, one a shot (which first: the library's ranking), clear of the fades at the video's start
    # and at the scene's cut (0.4 s: frames 0-9 and 45-54)
    one, two = frames[15], frames[40]
    mid = frames[25 + 5]  # the shots' blend runs 10 frames from the cut between them (frame 25)
    assert min(max(one[0], one[2]), max(two[0], two[2])) > 200 and {one[0] > 200, two[0] > 200} == {True, False}
    assert 60 < mid[0] < 200 and 60 < mid[2] < 200
    assert all(abs(a - b) <= 6 for x, y in zip(colours(chunked_video), frames) for a, b in zip(x, y))
    assert decode_errors(chunked_video) == ""
    with pytest.raises(TransitionError, match=r"assembly.shot_transition='sparkle'.*crossfade"):
        xfade_name("sparkle", "assembly.shot_transition")
