"""Segments, one per scene, as rendered: exact frame counts, stream-copy-ready encodes, fades, backgrounds.

Real renders of a three-scene script through ``render_script``; each segment file is read back from the
stage cache, where its record's key puts it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from tests.conftest import THREE_SCENES, TINY, compose_cfg

FPS, W, H = 10, 192, 108  # as in TINY

# THREE_SCENES: scenes 1 and 3 show a terminal, scene 2 does not; three different Visual prompts
WITH_TERMINAL, WITHOUT_TERMINAL = (0, 2), (1,)


def render(tmp: Path, *overrides: str, cache: Path | None = None) -> tuple[dict, Path]:
    """Render THREE_SCENES with the cache on (in ``cache``, else in ``tmp``); the record and the cache."""
    script = tmp / "tiny.txt"
    script.write_text(THREE_SCENES, encoding="utf-8")
    cache = cache or tmp / "cache"
    cfg = compose_cfg(*TINY, "cache.enabled=true", f"cache.dir={cache}", *overrides)
    record = render_script(script, "tiny", cfg, RunLayout(tmp / "run"))
    assert record["status"] == "ok", record["error"]
    assert record["fallbacks"] == []
    return record, cache


def segment_files(record: dict, cache: Path, stage: str = "segment") -> list[Path]:
    """Each scene's segment file in the cache (``stage="transition"``: each cut's), in scene order."""
    keys = {s["name"]: s["key"] for s in record["stages"] if s["stage"] == stage}
    files = []
    for i in range(len(keys)):
        key = keys[f"segment/{i}.0" if stage == "segment" else f"{stage}/{i}"]
        (entry,) = (cache / stage / key[:2] / key).glob("*.mp4")
        files.append(entry)
    return files


def probe(path: Path, *args: str) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", *args, str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def decode(path: Path, pix_fmt: str = "rgb24") -> list[bytes]:
    """Every video frame of ``path``, decoded as it is stored (no frame dropped or repeated)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
                         capture_output=True, check=True).stdout
    size = W * H * {"rgb24": 3, "gray": 1}[pix_fmt]
    assert len(raw) % size == 0
    return [raw[i:i + size] for i in range(0, len(raw), size)]


def luma(frame: bytes) -> float:
    return sum(frame) / len(frame)


def pixel(frame: bytes, x: int, y: int) -> tuple[int, int, int]:
    at = (y * W + x) * 3
    return tuple(frame[at:at + 3])


def span_frames(record: dict) -> list[int]:
    return [round(s["duration"] * FPS) for s in record["timeline"]]


@pytest.fixture(scope="module")
def faded(tmp_path_factory) -> tuple[dict, list[Path], list[Path]]:
    """The overlay strategy with 0.3 s transitions (fades through black) at the cuts: the scenes' segments, the
    cuts'."""
    record, cache = render(tmp_path_factory.mktemp("faded"), "assembly=overlay", "assembly.transition_s=0.3")
    return record, segment_files(record, cache), segment_files(record, cache, "transition")


@pytest.fixture(scope="module")
def backgrounds(tmp_path_factory) -> dict[str, tuple[dict, list[Path]]]:
    """ui_only (the terminal on the theme's background) in two themes, no fades."""
    out = {}
    for theme in ("dark", "solarized_dark"):
        record, cache = render(tmp_path_factory.mktemp(theme), "assembly=ui_only", f"theme={theme}")
        out[theme] = record, segment_files(record, cache)
    return out


def check_segment(path: Path, frames: int) -> None:
    info = probe(path, "-count_frames", "-show_streams", "-show_format")
    assert [s["codec_type"] for s in info["streams"]] == ["video"], "a segment holds its video only"
    (v,) = info["streams"]
    assert v["codec_name"] == "h264" and v["pix_fmt"] == "yuv420p"
    assert (int(v["width"]), int(v["height"])) == (W, H)
    assert int(v["nb_read_frames"]) == frames
    assert v["r_frame_rate"] == v["avg_frame_rate"] == f"{FPS}/1"  # constant frame rate
    assert abs(float(v["duration"]) - frames / FPS) < 1e-6
    packets = probe(path, "-select_streams", "v", "-show_entries", "packet=pts,duration,flags")["packets"]
    steps = {b["pts"] - a["pts"] for a, b in zip(packets, packets[1:])}
    assert len(packets) == frames and len(steps) == 1  # evenly spaced timestamps, one per frame
    first = probe(path, "-select_streams", "v", "-read_intervals", "%+#1", "-show_entries",
                  "frame=key_frame,pict_type")["frames"][0]
    assert (first["key_frame"], first["pict_type"]) == (1, "I")
    assert packets[0]["flags"].startswith("K")


def test_each_segment_is_the_scene_exactly(faded, backgrounds):
    for record, files in backgrounds.values():
        assert len(files) == 3
        assert span_frames(record) == [30, 40, 40]
        for path, frames in zip(files, span_frames(record)):
            check_segment(path, frames)
    # with 3-frame transitions: 1 frame before each cut and 2 after go to its window, the rest is the scenes'
    record, files, cuts = faded
    assert span_frames(record) == [30, 40, 40]
    for path, frames in zip(files + cuts, [29, 37, 38, 3, 3]):
        check_segment(path, frames)


def test_segments_of_one_video_share_their_stream_parameters(faded):
    """What the concat demuxer needs to join them by stream copy: one codec setup (the same SPS/PPS: the
    joined file keeps the first segment's), one timebase; the transitions' too."""
    record, files, cuts = faded
    files = files + cuts
    keys = ("codec_name", "profile", "level", "pix_fmt", "width", "height", "time_base", "r_frame_rate",
            "color_range", "sample_aspect_ratio", "has_b_frames", "extradata_hash")
    streams = [probe(p, "-show_streams", "-show_data_hash", "MD5")["streams"][0] for p in files]
    setups = [{k: stream.get(k) for k in keys} for stream in streams]
    assert setups[0]["extradata_hash"].startswith("MD5:")
    assert all(s == setups[0] for s in setups), setups


def test_with_transitions_the_video_fades_in_and_out_at_its_ends_and_the_cuts_go_through_black(faded):
    record, files, cuts = faded
    fade = round(0.3 * FPS)
    scenes = [[luma(f) for f in decode(path, "gray")] for path in files]
    for i, frames in enumerate(scenes):
        middle = frames[len(frames) // 2]
        assert middle > 15, (i, middle)  # the procedural picture, in full (a blue sea is dark)
        assert (frames[0] < 1.0) == (i == 0), (i, frames[0])  # black, the terminal too: the whole frame fades
        assert (frames[-1] < middle / 2) == (i == 2), (i, frames[-1], middle)
    # fading in: brighter frame by frame until the fade is over
    assert scenes[0][:fade + 1] == sorted(scenes[0][:fade + 1]), scenes[0][:fade + 1]
    for c, path in enumerate(cuts):  # xfade's fadeblack: darker than either scene at the cut
        frames = [luma(f) for f in decode(path, "gray")]
        assert min(frames) < min(scenes[c][-1], scenes[c + 1][0]) / 2, (c, frames)


def test_without_a_transition_the_first_frame_is_the_picture(backgrounds):
    record, files = backgrounds["dark"]
    for path in files:
        first = decode(path)[0]
        assert abs(pixel(first, 0, H - 1)[0] - 0x1E) <= 6  # the background, not black


@pytest.mark.parametrize("theme, colour", [("dark", "#1e1e1e"), ("solarized_dark", "#002b36")])
def test_ui_only_segments_are_drawn_on_the_theme_background(backgrounds, theme, colour):
    want = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    record, files = backgrounds[theme]
    for i, path in enumerate(files):
        frames = decode(path)
        for n in (0, len(frames) // 2, len(frames) - 1):
            for x, y in ((0, H - 1), (W - 1, H - 1)):  # bottom corners: below the window chrome
                got = pixel(frames[n], x, y)
                assert all(abs(a - b) <= 6 for a, b in zip(got, want)), (theme, i, n, (x, y), got, want)


def test_a_scene_with_a_terminal_shows_it_over_its_picture(faded):
    """The same picture with and without the terminal layer differs in the panel's area only."""
    record, files, _ = faded
    from renderer.media.layout import frame_layout

    panel = frame_layout(W, H).panel  # where the layout rule puts it (conf/assembly/overlay.yaml sets none)
    x0, y0 = round(panel.x), round(panel.y)
    x1, y1 = round(panel.right), round(panel.bottom)
    for i, path in enumerate(files):
        frame = decode(path)[20]
        inside = [pixel(frame, x, y) for y in range(y0 + 8, y1 - 2) for x in range(x0 + 2, x1 - 2)]
        panel_grey = sum(1 for p in inside if all(abs(c - 0x1E) <= 14 for c in p)) / len(inside)
        if i in WITH_TERMINAL:
            assert panel_grey > 0.5, (i, panel_grey)  # the panel, #1e1e1e at 0.9 opacity, covers the picture
        else:
            assert panel_grey < 0.5, (i, panel_grey)  # the picture itself


@pytest.mark.parametrize("strategy, transition_s", [("overlay", 0), ("ui_only", 0), ("visual_only", 1.5)])
def test_chunks_of_a_scene_show_exactly_the_frames_of_the_whole_scene(tmp_path, strategy, transition_s):
    """Encoded losslessly, a render in chunks of 1 s and one of whole scenes decode to the same pixels:
    the picture, the typing, the cursor and the fades (1.5 s: across chunks) go on across every boundary."""
    lossless = [f"assembly={strategy}", "encode.crf=0", f"assembly.transition_s={transition_s}"]
    (tmp_path / "whole").mkdir()
    (tmp_path / "chunked").mkdir()
    whole, _ = render(tmp_path / "whole", *lossless, "encode.chunk_s=0")
    chunked, _ = render(tmp_path / "chunked", *lossless, "encode.chunk_s=1")
    names = [s["name"] for s in chunked["stages"] if s["stage"] == "segment"]
    assert names[:4] == ["segment/0.0", "segment/0.1", "segment/0.2", "segment/1.0"] and len(names) == 11
    frames = [decode(tmp_path / run / "run" / "tiny" / "tiny.mp4") for run in ("whole", "chunked")]
    assert len(frames[0]) == len(frames[1]) == 110
    differ = [n for n, (a, b) in enumerate(zip(*frames)) if a != b]
    assert differ == []
    if transition_s:
        assert luma(decode(tmp_path / "chunked" / "run" / "tiny" / "tiny.mp4", "gray")[0]) < 1.0


LONG_SCENE = """SCRIPT: TEST_0003 — LONG SCENE
[0:00 – Long]
Visual: A harbour at dusk.
Narration:
“It goes on.”

[0:08 – After]
Visual: A harbour at night.
Narration:
“Done.”
END TEST_0003"""


@pytest.mark.parametrize("source", ["procedural", "library"])
def test_chunks_entering_a_long_clip_by_seeking_show_the_frames_of_the_whole_scene(tmp_path, source):
    """A chunk well inside its scene's clip seeks to it instead of decoding the scene up to it; its frames are
    still exactly those of the whole scene: a procedural clip, and a library clip at 24 fps (its frames fall
    between the output's 10 fps, so which one each output frame shows depends on exact timestamps)."""
    extra = []
    if source == "library":
        media = tmp_path / "media" / "harbour.mp4"
        media.parent.mkdir()
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=320x180:r=24:d=5",
                        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(media)], check=True)
        extra = ["visual=library", f"visual.dir={media.parent}"]
    videos = []
    for run, chunk_s in (("whole", 0), ("chunked", 1.5)):
        script = tmp_path / run / "long.txt"
        script.parent.mkdir()
        script.write_text(LONG_SCENE, encoding="utf-8")
        cfg = compose_cfg(*TINY, "voice=silent", "assembly=visual_only", "encode.crf=0", *extra,
                          f"encode.chunk_s={chunk_s}")
        record = render_script(script, "long", cfg, RunLayout(tmp_path / run / "run"))
        assert record["status"] == "ok" and record["fallbacks"] == [], record["error"]
        videos.append(decode(tmp_path / run / "run" / "long" / "long.mp4"))
    whole, chunked = videos
    assert len(whole) == len(chunked) > 80
    assert [n for n, (a, b) in enumerate(zip(whole, chunked)) if a != b] == []


def test_a_chunk_seeks_into_its_clip_only_well_inside_it():
    from renderer.providers.base import VisualClip
    from renderer.stages.segment import _seek
    from renderer.stages.timeline import Chunk

    clip = VisualClip(Path("clip.mp4"), 8.0)
    assert _seek(clip, Chunk(offset=30, frames=15, scene_frames=80, fps=10), 10) == "2.000"
    assert _seek(clip, Chunk(offset=5, frames=15, scene_frames=80, fps=10), 10) == ""  # near its start
    assert _seek(clip, Chunk(offset=60, frames=15, scene_frames=80, fps=10), 10) == ""  # reaching its end: loops


def test_every_input_of_an_encode_decodes_on_its_threads_alone(tmp_path):
    """A shot's clip or a transition's second scene is an encode's second input: left to choose, its decoder
    takes a thread per core and one more beside the encode's one (the first input's were set, the rest not)."""
    import os
    import time

    from renderer.stages.segment import on_threads

    if (os.cpu_count() or 1) < 2:
        pytest.skip("on one core a decoder left to choose takes one thread too")
    clips = []
    for name in ("a", "b"):
        clips.append(tmp_path / f"{name}.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=25:d=2", "-c:v", "libx264",
                        "-preset", "ultrafast", str(clips[-1])], check=True)
    inputs = [arg for clip in clips for arg in ("-readrate", "1", "-i", str(clip))]  # 2 s each, decoded in real time

    def threads_while_decoding(args: list[str]) -> int:
        proc = subprocess.Popen(["ffmpeg", "-v", "error", *args, "-filter_complex_threads", "1", "-filter_complex",
                                 "[0:v][1:v]blend=all_mode=average", "-f", "null", "-"])
        time.sleep(1.0)
        count = len(os.listdir(f"/proc/{proc.pid}/task"))
        assert proc.wait(timeout=30) == 0
        return count

    first_only = threads_while_decoding(["-threads", "1", *inputs])
    each = threads_while_decoding(on_threads(inputs, 1))
    assert each < first_only and on_threads(inputs, 1).count("-threads") == 2
