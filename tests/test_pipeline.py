"""Real renders of one small script, checked with ffprobe: streams, size, timeline, captions, records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loguru import logger

from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from tests.conftest import TINY, codecs, compose_cfg, ffprobe, max_volume_db, video_size

EXPECTED_STREAMS = {
    "overlay": ["aac", "h264"],
    "visual_only": ["aac", "h264"],
    "ui_only": ["aac", "h264"],
    "audio_only": ["aac"],
}


def render(script: Path, run_dir: Path, *overrides: str) -> dict:
    cfg = compose_cfg(*TINY, *overrides)
    return render_script(script, "tiny", cfg, RunLayout(run_dir))


@pytest.mark.parametrize("strategy", sorted(EXPECTED_STREAMS))
def test_each_strategy_renders_its_streams_on_the_timeline(strategy, two_scenes, tmp_path):
    record = render(two_scenes, tmp_path, f"assembly={strategy}")
    assert record["status"] == "ok", record["error"]
    mp4 = tmp_path / "tiny" / "tiny.mp4"
    info = ffprobe(mp4)
    assert codecs(info) == EXPECTED_STREAMS[strategy]
    if strategy != "audio_only":
        assert video_size(info) == (192, 108)
    # the second scene starts at its timestamp; the last lasts at least the parser's estimate
    timeline = record["timeline"]
    assert [round(s["start"], 3) for s in timeline] == [0.0, 3.0]
    assert timeline[1]["duration"] >= 4.0
    expected = timeline[-1]["start"] + timeline[-1]["duration"]
    assert abs(float(info["format"]["duration"]) - expected) <= 0.1
    for stream in info["streams"]:
        assert abs(float(stream["duration"]) - expected) <= 0.1, stream["codec_type"]


def test_narration_starts_at_its_scene_timestamp(two_scenes, tmp_path):
    record = render(two_scenes, tmp_path, "assembly=audio_only")
    mp4 = tmp_path / "tiny" / "tiny.mp4"
    first_voice = next(s for s in record["stages"] if s["name"] == "voice/0")
    assert first_voice["provider"] == "espeak"
    assert max_volume_db(mp4, 0.1, 0.6) > -30  # scene 1 speaks from the start
    assert max_volume_db(mp4, 2.3, 0.6) < -60  # silence before scene 2's timestamp
    assert max_volume_db(mp4, 3.05, 0.5) > -30  # scene 2 speaks at 0:03


def saved_thumbs(folder):
    return sorted(f"thumbs/{p.name}" for p in (folder / "thumbs").iterdir())


def test_outputs_and_record(two_scenes, tmp_path):
    record = render(two_scenes, tmp_path)
    folder = tmp_path / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["thumbs", "tiny.json", "tiny.log", "tiny.mp4",
                                                          "tiny.srt", "tiny.vtt"]
    assert saved_thumbs(folder) == ["thumbs/scene-01.jpg", "thumbs/scene-02.jpg"] == record["thumbnails"]
    saved = json.loads((folder / "tiny.json").read_text())
    assert saved["status"] == "ok" and saved["title"] == "TINY" and saved["script_id"] == "TEST_0001"
    assert saved["parsed"]["scenes"][1]["narration"][0]["speaker"] == "Anya"
    stages = {s["name"]: s for s in saved["stages"]}
    assert set(stages) == {"voice/0", "visual/0", "terminal/0", "voice/1", "visual/1", "terminal/1", "timeline",
                           "segment/0.0", "segment/1.0", "level/0", "level/1", "narration/0", "narration/1",
                           "soundtrack", "join", "mux", "thumbnails"}
    assert all(s["status"] == "ok" and s["seconds"] >= 0 and len(s["key"]) == 64 for s in stages.values())
    assert saved["providers"]["voice"] == ["espeak"]
    assert saved["fallbacks"] == []
    srt = (folder / "tiny.srt").read_text()
    assert "Short line one." in srt and "And two." in srt and "00:00:03,000 -->" in srt
    assert (folder / "tiny.vtt").read_text().startswith("WEBVTT")
    assert not any((tmp_path / "tmp").iterdir())  # work files are gone


def test_strategy_shapes_the_graph(two_scenes, tmp_path):
    record = render(two_scenes, tmp_path, "assembly=audio_only")
    assert {s["stage"] for s in record["stages"]} == {"voice", "timeline", "level", "narration", "soundtrack", "mux"}
    record = render(two_scenes, tmp_path, "assembly=ui_only")
    assert {s["stage"] for s in record["stages"]} == {"voice", "terminal", "timeline", "segment", "level", "narration",
                                                     "soundtrack", "join", "mux", "thumbnails"}
    record = render(two_scenes, tmp_path, "assembly=visual_only")
    assert {s["stage"] for s in record["stages"]} == {"voice", "visual", "timeline", "segment", "level", "narration",
                                                     "soundtrack", "join", "mux", "thumbnails"}


def test_a_strategy_naming_no_stage_fails_the_script_clearly(two_scenes, tmp_path):
    record = render(two_scenes, tmp_path, "assembly.layers=[terminal,sparkles]")
    assert record["status"] == "failed"
    assert "no stage 'sparkles' (renderer/stages/sparkles.py)" in record["error"]


def test_silent_voice_keeps_the_timeline(two_scenes, tmp_path):
    record = render(two_scenes, tmp_path, "voice=silent", "assembly=audio_only")
    assert record["status"] == "ok"
    assert max_volume_db(tmp_path / "tiny" / "tiny.mp4", 0.0, 5.0) < -80
    assert record["timeline"][1]["start"] == 3.0


def test_unusable_voice_falls_back_and_says_so(two_scenes, tmp_path):
    record = render(two_scenes, tmp_path, "voice.voice=no-such-voice", "assembly=audio_only")
    assert record["status"] == "ok"
    (fallback,) = record["fallbacks"]
    assert fallback["node"] == "voice" and fallback["from"] == "espeak" and fallback["to"] == "piper"
    assert "no-such-voice" in fallback["reason"]  # the stand-in is the first offline voice that starts
    assert record["providers"]["voice"] == ["piper"]


def test_bad_script_fails_with_file_and_line(tmp_path):
    bad = tmp_path / "broken.txt"
    bad.write_text("SCRIPT: X — Y\n[0:10 – A]\nNarration: “a”\n\n[0:05 – B]\nNarration: “b”\n", encoding="utf-8")
    record = render(bad, tmp_path)
    assert record["status"] == "failed"
    assert "broken.txt:5" in record["error"]
    assert any(i["code"] == "timestamp_backwards" and i["line"] == 5 for i in record["issues"])
    assert (tmp_path / "tiny" / "tiny.json").exists()
    assert not (tmp_path / "tiny" / "tiny.mp4").exists()


def test_text_too_long_for_its_scene_is_typed_faster_with_a_warning(tmp_path):
    crowded = tmp_path / "crowded.txt"
    commands = "\n".join(f"$ echo line number {n} with a fair amount of text to type" for n in range(12))
    crowded.write_text(f"SCRIPT: X — Crowded\n[0:00 – Busy]\nVisual: A desk.\nON-SCREEN TEXT:\n{commands}\n"
                       "Narration:\n“Quick.”\n", encoding="utf-8")
    record = render(crowded, tmp_path, "assembly=ui_only")
    assert record["status"] == "ok"
    (warning,) = [w for w in record["warnings"] if "typed" in w]
    assert "scene 1 (Busy)" in warning and "faster to fit" in warning


def test_a_scene_that_fails_to_render_is_retried_then_a_placeholder_that_says_so(two_scenes, tmp_path):
    record = render(two_scenes, tmp_path, "assembly.grade=nosuchfilter", "retry.assembly.attempts=2",
                    "retry.assembly.wait_s=0.01")
    assert record["status"] == "ok"
    assert [(f["node"], f["to"]) for f in record["fallbacks"]] == [("segment/0.0", "placeholder"),
                                                                  ("segment/1.0", "placeholder")]
    assert all("ffmpeg failed" in f["reason"] and "nosuchfilter" in f["reason"] for f in record["fallbacks"])
    assert sum("placeholder" in w for w in record["warnings"]) == 2
    mp4 = tmp_path / "tiny" / "tiny.mp4"
    info = ffprobe(mp4)
    assert codecs(info) == EXPECTED_STREAMS["overlay"]
    expected = record["timeline"][-1]["start"] + record["timeline"][-1]["duration"]
    assert abs(float(info["format"]["duration"]) - expected) <= 0.1
    assert max_volume_db(mp4, 0.1, 0.6) > -30  # the narration is kept


def test_narration_that_fails_is_retried_then_silence(two_scenes, tmp_path):
    record = render(two_scenes, tmp_path, "assembly=audio_only", "encode.audio_bitrate=lots",
                    "retry.assembly.attempts=2", "retry.assembly.wait_s=0.01")
    assert record["status"] == "ok"
    assert [f["node"] for f in record["fallbacks"]] == ["narration/0", "narration/1"]
    assert all(f["to"] == "silence" and "ffmpeg failed" in f["reason"] for f in record["fallbacks"])
    assert any("silent" in w for w in record["warnings"])
    info = ffprobe(tmp_path / "tiny" / "tiny.mp4")
    assert codecs(info) == ["aac"]
    expected = record["timeline"][-1]["start"] + record["timeline"][-1]["duration"]
    assert abs(float(info["format"]["duration"]) - expected) <= 0.1


def test_unreadable_script_is_retried_then_reported(tmp_path):
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(str(message)), level="WARNING")
    try:
        record = render(tmp_path / "gone.txt", tmp_path, "retry.parse.attempts=3", "retry.parse.wait_s=0.01")
    finally:
        logger.remove(sink)
    assert record["status"] == "failed" and "gone.txt" in record["error"]
    assert [i["code"] for i in record["issues"]] == ["unreadable_file"]
    assert sum("reading gone.txt failed" in m and "retrying" in m for m in messages) == 2  # three reads in all


def test_a_nearly_full_run_disk_stops_the_job_with_the_fix(two_scenes, small_disk):
    record = render(two_scenes, small_disk)
    assert record["status"] == "failed"
    assert f"free on the disk of {small_disk}" in record["error"] and "limits.min_free_gb=1)" in record["error"]
    assert (small_disk / "tiny" / "tiny.json").exists() and not (small_disk / "tiny" / "tiny.mp4").exists()
