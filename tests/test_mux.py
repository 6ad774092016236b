"""The final video, as muxed from the segments and the soundtrack: decodes cleanly, streams end together,
scenes start on their timestamps with the segments' very frames (a stream copy), faststart; and the
placeholder that stands in when the mux fails for good."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from renderer.engine.cache import Cache
from renderer.engine.node import NodeInput
from renderer.media.codecs import Encoder
from renderer.media.ffmpeg import FFmpegError
from renderer.stages import join, mux, segment
from renderer.stages.segment import Segment
from renderer.stages.soundtrack import Soundtrack
from renderer.stages.timeline import plan, split
from tests.conftest import TINY, codecs, compose_cfg, ffprobe
from tests.test_segment import FPS, THREE_SCENES, decode, render, segment_files

STRATEGIES = ("overlay", "visual_only", "ui_only", "audio_only")
TIMESTAMPS = (0.0, 3.0, 7.0)  # THREE_SCENES: 0:00, 0:03, 0:07
AUDIO_RATE = 48000
X264 = Encoder("h264", "libx264")  # the default encode.codec, in software


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """(strategy, *overrides) -> (record, final mp4, segment files, cache); rendered on first use, one cache
    for all."""
    base = tmp_path_factory.mktemp("mux")
    done: dict[tuple[str, ...], tuple[dict, Path, list[Path], Path]] = {}

    def get(strategy: str, *overrides: str) -> tuple[dict, Path, list[Path], Path]:
        if (strategy, *overrides) not in done:
            tmp = base / "-".join((strategy, *overrides)).replace("=", "_")
            tmp.mkdir(exist_ok=True)
            record, cache = render(tmp, f"assembly={strategy}", *overrides, cache=base / "cache")
            segments = segment_files(record, cache) if strategy != "audio_only" else []
            done[(strategy, *overrides)] = record, tmp / "run" / "tiny" / "tiny.mp4", segments, cache
        return done[(strategy, *overrides)]

    assert "Visual: A red sky" in THREE_SCENES and "Visual: A blue sea." in THREE_SCENES
    return get


def cached_soundtrack(record: dict, cache: Path) -> Soundtrack:
    """The soundtrack a render left in the cache (its joined packets and the options that mux them)."""
    key = next(s["key"] for s in record["stages"] if s["name"] == "soundtrack")
    return Cache(cache).get("soundtrack", key)


def md5s(frames: list[bytes]) -> list[str]:
    return [hashlib.md5(f).hexdigest() for f in frames]


def decoded_seconds_of_audio(path: Path) -> float:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0", "-f", "s16le",
                          "-ac", "1", "-ar", str(AUDIO_RATE), "-"], capture_output=True, check=True).stdout
    return len(raw) / 2 / AUDIO_RATE


def decode_errors(path: Path) -> str:
    done = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    return done.stdout + done.stderr


def top_level_boxes(path: Path) -> list[str]:
    """The types of the MP4's top-level boxes, in file order."""
    data = path.read_bytes()
    boxes, at = [], 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at:at + 4], "big"), data[at + 4:at + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[at + 8:at + 16], "big")
        elif size == 0:
            size = len(data) - at
        assert size >= 8, (kind, size)
        boxes.append(kind)
        at += size
    assert at == len(data)
    return boxes


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_final_video_decodes_without_errors(rendered, strategy):
    record, out, *_ = rendered(strategy)
    assert decode_errors(out) == ""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_streams_end_together_at_the_timeline_end(rendered, strategy):
    record, out, *_ = rendered(strategy)
    end = record["timeline"][-1]["start"] + record["timeline"][-1]["duration"]
    assert record["duration"] == pytest.approx(end)
    info = ffprobe(out)
    assert codecs(info) == (["aac"] if strategy == "audio_only" else ["aac", "h264"])
    durations = {s["codec_type"]: float(s["duration"]) for s in info["streams"]}
    for kind, seconds in durations.items():
        assert abs(seconds - end) <= 1 / FPS, (kind, seconds, end)
        assert float(next(s for s in info["streams"] if s["codec_type"] == kind)["start_time"]) == 0.0
    assert abs(max(durations.values()) - min(durations.values())) <= 1 / FPS, durations
    assert abs(decoded_seconds_of_audio(out) - end) <= 1 / FPS
    if strategy != "audio_only":
        v = next(s for s in info["streams"] if s["codec_type"] == "video")
        assert v["r_frame_rate"] == v["avg_frame_rate"] == f"{FPS}/1"
        assert len(decode(out)) == round(end * FPS)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_faststart_puts_the_index_before_the_media(rendered, strategy):
    record, out, *_ = rendered(strategy)
    boxes = top_level_boxes(out)
    assert boxes[0] == "ftyp"
    assert "moov" in boxes and "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat"), boxes


@pytest.mark.parametrize("overrides", [(), ("encode.preset=veryfast",)], ids=["ultrafast", "veryfast"])
def test_scenes_start_on_their_timestamps_with_the_segments_own_frames(rendered, overrides):
    """veryfast encodes with B-frames: decode order differs from display order, timestamps are shifted."""
    record, out, segments, _ = rendered("overlay", *overrides)
    final = md5s(decode(out))
    per_segment = [md5s(decode(path)) for path in segments]
    assert [len(s) for s in per_segment] == [round(s["duration"] * FPS) for s in record["timeline"]]
    for i, (scene, stamp) in enumerate(zip(record["timeline"], TIMESTAMPS)):
        assert abs(scene["start"] - stamp) <= 1 / FPS
        if i == 0:
            assert final[0] == per_segment[0][0]
            continue
        cut = round(stamp * FPS)
        assert final[cut] == per_segment[i][0], f"frame {cut} is not scene {i + 1}'s first frame"
        assert final[cut - 1] == per_segment[i - 1][-1], f"frame {cut - 1} is not scene {i}'s last frame"
        assert final[cut] != final[cut - 1], f"no cut at frame {cut}"  # different prompts, different pictures
    # a stream copy: the final video is the segments' frames, every one of them, in order
    assert final == [h for frames in per_segment for h in frames]


def test_a_placeholder_segment_joins_the_others_by_stream_copy(rendered, tmp_path):
    """A scene that fell back to its placeholder is encoded alike, so the picture is still joined by stream copy,
    and the mux puts the soundtrack under it."""
    record, _, segments, cache = rendered("overlay")
    timeline = plan([(0.0, 3.0), (3.0, 4.0), (7.0, 4.0)], FPS)
    assert timeline.to_list() == record["timeline"]
    cfg = compose_cfg(*TINY)
    seg_cfg = {k: OmegaConf.select(cfg, k) for k in ("format.width", "format.height", "format.fps", "encode.preset",
                                                      "encode.crf", "assembly.transition_s", "assembly.grade")}
    (chunk,) = split(timeline.spans[1], 1)
    failed = segment.placeholder(
        NodeInput({"encoder": X264}, seg_cfg, {"chunk": chunk, "layers": []}, tmp_path, "a" * 64),
        FFmpegError("ffmpeg failed", stderr_tail="[h264 @ 0x1] Invalid data"), scene=1, part=0,
        threads=1, timeout=60)
    assert failed.provider == "placeholder" and "Invalid data" in failed.warnings[0]
    soundtrack = cached_soundtrack(record, cache)
    parts = [Segment(segments[0], 30, provider="ffmpeg"), failed, Segment(segments[2], 40, provider="ffmpeg")]
    picture = join.render(NodeInput(None, {"format.fps": FPS}, {"duration": 11.0, "segments": parts}, tmp_path,
                                    "b" * 64), timeout=60)
    assert picture.provider == "ffmpeg:concat" and codecs(ffprobe(picture.path)) == ["h264"]
    inp = NodeInput(None, {}, {"timeline": timeline, "soundtrack": soundtrack, "picture": picture}, tmp_path, "c" * 64)
    video = mux.render(inp, slug="tiny", timeout=60)
    assert video.provider == "ffmpeg:copy" and decode_errors(video.path) == ""
    final = md5s(decode(video.path))
    assert final == [h for part in parts for h in md5s(decode(part.path))]
    info = ffprobe(video.path)
    assert all(abs(float(st["duration"]) - 11.0) <= 1 / FPS for st in info["streams"])


def test_audio_only_is_one_aac_stream_of_the_timeline_length(rendered):
    record, out, *_ = rendered("audio_only")
    info = ffprobe(out)
    (stream,) = info["streams"]
    assert stream["codec_type"] == "audio" and stream["codec_name"] == "aac"
    assert int(stream["sample_rate"]) == AUDIO_RATE
    assert abs(float(stream["duration"]) - record["duration"]) <= 1 / FPS
    assert record["duration"] == pytest.approx(11.0)  # 0:07 + the last scene's 4 s
    assert {s["stage"] for s in record["stages"]} == {"voice", "timeline", "level", "narration", "soundtrack", "mux"}


def test_a_picture_that_cannot_be_joined_is_a_card_under_which_the_soundtrack_still_plays(rendered, tmp_path):
    record, *_, cache = rendered("overlay")
    timeline = plan([(0.0, 3.0), (3.0, 4.0), (7.0, 4.0)], FPS)
    cfg = {"format.width": 192, "format.height": 108, "format.fps": FPS}
    gone = [Segment(tmp_path / "gone.mp4", 30, provider="ffmpeg")]
    inp = NodeInput(None, cfg, {"duration": timeline.duration, "segments": gone}, tmp_path, "d" * 64)
    with pytest.raises(FFmpegError) as failed:
        join.render(inp, timeout=60)
    picture = join.card(inp, failed.value, slug="tiny", timeout=60)
    assert picture.provider == "placeholder" and "gone.mp4" in picture.warnings[0]
    info = ffprobe(picture.path)
    assert codecs(info) == ["h264"] and abs(float(info["streams"][0]["duration"]) - 11.0) <= 1 / FPS
    video = mux.render(NodeInput(None, {}, {"timeline": timeline, "soundtrack": cached_soundtrack(record, cache),
                                            "picture": picture}, tmp_path, "e" * 64), slug="tiny", timeout=60)
    assert codecs(ffprobe(video.path)) == ["aac", "h264"] and decode_errors(video.path) == ""
    assert decoded_seconds_of_audio(video.path) == pytest.approx(11.0, abs=0.05)


def test_the_placeholder_stands_in_when_the_mux_fails(tmp_path):
    timeline = plan([(0.0, 3.0), (3.0, 2.5)], 10)
    inp = NodeInput(data=None, cfg={"format.width": 192, "format.height": 108, "format.fps": 10},
                    deps={"timeline": timeline, "soundtrack": None, "picture": None}, workdir=tmp_path, key="0" * 64)
    exc = FFmpegError("ffmpeg failed", stderr_tail="[mp4 @ 0x55] No space left on device")
    video = mux.placeholder(inp, exc, slug="tiny", timeout=60)
    assert video.provider == "placeholder"
    assert video.path.exists() and video.path.parent == tmp_path
    assert video.duration == pytest.approx(5.5) == timeline.duration
    assert video.timeline == timeline.to_list()
    (warning,) = video.warnings
    assert "No space left on device" in warning and "[mp4 @" not in warning
    info = ffprobe(video.path)
    assert codecs(info) == ["aac", "h264"]
    v = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (int(v["width"]), int(v["height"])) == (192, 108) and v["avg_frame_rate"] == "10/1"
    for stream in info["streams"]:
        assert abs(float(stream["duration"]) - timeline.duration) <= 0.1, stream["codec_type"]
    assert decode_errors(video.path) == ""
    assert top_level_boxes(video.path).index("moov") < top_level_boxes(video.path).index("mdat")


def test_the_audio_only_placeholder_is_sound_only(tmp_path):
    timeline = plan([(0.0, 2.0)], 10)
    inp = NodeInput(data=None, cfg={}, deps={"timeline": timeline, "soundtrack": None}, workdir=tmp_path,
                    key="1" * 64)
    video = mux.placeholder(inp, FFmpegError("ffmpeg failed"), slug="tiny", timeout=60)
    info = ffprobe(video.path)
    assert codecs(info) == ["aac"]
    assert abs(float(info["streams"][0]["duration"]) - 2.0) <= 0.1
    assert video.provider == "placeholder" and "ffmpeg failed" in video.warnings[0]
