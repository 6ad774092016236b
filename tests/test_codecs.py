"""Codecs and hardware encoders (``encode.codec``, ``encode.hw``), as rendered: HEVC and AV1 videos whose
segments (scene chunks and transition windows) join by stream copy, a hardware encoder that cannot start here
falling back to software with the reason in the record, the trial's answer kept per machine, and clear errors
for names the renderer does not know.

This machine has no GPU: the hardware encoders in its ffmpeg (NVENC, QSV, VAAPI) fail to initialise, which is
the fallback path tested here; encoding on real hardware is not."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from renderer.media import codecs, tool_notes
from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from tests.conftest import THREE_SCENES, TINY, compose_cfg, ffprobe, video_size

FPS, W, H = 10, 192, 108  # as in TINY


def render(tmp: Path, cache: Path, *overrides: str) -> tuple[dict, Path]:
    """THREE_SCENES with 0.3 s transitions (so the video is scene chunks and cut windows), cached in ``cache``;
    the record and the video."""
    script = tmp / "tiny.txt"
    script.write_text(THREE_SCENES, encoding="utf-8")
    cfg = compose_cfg(*TINY, "cache.enabled=true", f"cache.dir={cache}", "assembly.transition_s=0.3", *overrides)
    record = render_script(script, "tiny", cfg, RunLayout(tmp / "run"))
    return record, tmp / "run" / "tiny" / "tiny.mp4"


def decode_errors(path: Path) -> str:
    return subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True, check=False).stderr.strip()


def video_stream(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v", "-print_format", "json",
                          "-show_streams", str(path)], capture_output=True, text=True, check=True).stdout
    (stream,) = json.loads(out)["streams"]
    return stream


def statuses(record: dict, *stages: str) -> set[str]:
    return {s["status"] for s in record["stages"] if s["stage"] in stages}


def keys(record: dict, *stages: str) -> dict[str, str]:
    return {s["name"]: s["key"] for s in record["stages"] if s["stage"] in stages}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One cache for the module, first filled by an h264 render (``h264`` below)."""
    return tmp_path_factory.mktemp("codec-cache")


@pytest.fixture(scope="module")
def h264(tmp_path_factory, cache) -> dict:
    record, _ = render(tmp_path_factory.mktemp("h264"), cache)
    assert record["status"] == "ok", record["error"]
    return record


@pytest.mark.parametrize("codec, name, tag", [("hevc", "hevc", "hvc1"), ("av1", "av1", "av01")])
def test_a_video_in_another_codec_joins_its_segments_by_stream_copy(tmp_path, cache, h264, codec, name, tag):
    record, video = render(tmp_path, cache, f"encode.codec={codec}")
    assert record["status"] == "ok", record["error"]
    assert record["fallbacks"] == [] and record["warnings"] == []
    # the encoder is in the segments' keys: the h264 render's cache entries are not this codec's
    assert statuses(record, "segment", "transition") == {"ok"}
    assert not set(keys(record, "segment", "transition").values()) & set(keys(h264, "segment", "transition").values())
    assert keys(record, "voice", "visual", "terminal") == keys(h264, "voice", "visual", "terminal")
    join = next(s for s in record["stages"] if s["stage"] == "join")
    assert join["provider"] == "ffmpeg:concat"  # joined by stream copy, not re-encoded
    stream = video_stream(video)
    assert (stream["codec_name"], stream["codec_tag_string"]) == (name, tag)  # hvc1: what Apple's players need
    assert (stream["width"], stream["height"], stream["pix_fmt"]) == (W, H, "yuv420p")
    assert int(stream["nb_read_frames"]) == sum(round(s["duration"] * FPS) for s in record["timeline"])
    assert decode_errors(video) == ""
    assert video_size(ffprobe(video)) == (W, H)


def test_a_hardware_encoder_that_cannot_start_falls_back_to_software_with_the_reason(tmp_path, cache, h264):
    """No GPU here: NVENC fails its trial encode, libx264 encodes the video, and the record says why. Its segments
    are keyed by what encoded them: the software render's, from the cache."""
    record, video = render(tmp_path, cache, "encode.hw=nvenc")
    assert record["status"] == "ok", record["error"]
    (fallback,) = record["fallbacks"]
    assert fallback["node"] == "encode" and fallback["to"] == "libx264" and "h264_nvenc: " in fallback["reason"]
    (warning,) = [w for w in record["warnings"] if "encode.hw=nvenc" in w]
    assert "h264_nvenc: " in warning and "libx264 encoded the video" in warning
    assert fallback["reason"] in warning and fallback["reason"].split(": ", 1)[1]  # ffmpeg's own reason
    assert video_stream(video)["codec_name"] == "h264" and decode_errors(video) == ""
    assert keys(record, "segment", "transition") == keys(h264, "segment", "transition")
    assert statuses(record, "segment", "transition") == {"cached"}


def test_auto_without_hardware_is_software_with_every_reason():
    encoder, why = codecs.resolve("hevc", "auto", preset="ultrafast")
    assert encoder == codecs.Encoder("hevc", "libx265")
    assert all(f"hevc_{hw}: " in why for hw in ("nvenc", "qsv", "vaapi"))


def test_the_trial_is_kept_per_machine_in_the_user_cache(tmp_path, monkeypatch):
    """A trial's answer is read back from the user's cache file, in a process that has not tried it yet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    codecs.forget()
    try:
        assert codecs.resolve("hevc", "none", preset="ultrafast")[0].name == "libx265"
        data = json.loads(tool_notes.cache_file().read_text(encoding="utf-8"))
        ((machine, trials),) = data.items()
        (trial,) = [t for t in trials if "libx265" in t]
        assert trials[trial]["ok"] is True and str(Path(machine.split("|")[1]).name) == "ffmpeg"
        # what the file says is what this machine can do: a failure written there is believed, not tried again
        trials[trial] = {"ok": False, "reason": "no libx265 (as recorded)", "at": trials[trial]["at"]}
        tool_notes.cache_file().write_text(json.dumps(data), encoding="utf-8")
        codecs.forget()
        with pytest.raises(codecs.CodecError, match=r"encode\.codec=hevc: .* \(no libx265 \(as recorded\)\)"):
            codecs.resolve("hevc", "none", preset="ultrafast")
    finally:
        codecs.forget()


@pytest.mark.parametrize("override, message", [
    ("encode.codec=vp9", "encode.codec='vp9' is not a codec the renderer encodes: use one of h264, hevc, av1"),
    ("encode.hw=cuda", ("encode.hw='cuda' is not a hardware encoder the renderer knows: use one of none, auto, "
                        "nvenc, qsv, vaapi, videotoolbox")),
    ("encode.preset=quick", "encode.preset='quick' is not an x264 preset: use one of ultrafast"),
])
def test_an_unknown_codec_is_a_clear_config_error(tmp_path, override, message):
    record, video = render(tmp_path, tmp_path / "cache", override)
    assert record["status"] == "failed"
    assert record["error"].startswith(message)
    assert record["stages"] == [] and not video.exists()  # nothing ran
