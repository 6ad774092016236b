"""renderer.providers (espeak, silent, procedural, backdrop) and renderer.media.ffmpeg — real binaries."""

from __future__ import annotations

import json
import subprocess
import threading
import wave
from pathlib import Path

import psutil
import pytest

from renderer.config import (
    BackdropVisualConfig,
    EspeakVoiceConfig,
    ProceduralVisualConfig,
    SilentVoiceConfig,
)
from renderer.media import ffmpeg
from renderer.providers.base import ProviderConfigError
from renderer.providers.chain import make
from renderer.providers.espeak import SPEAKER_GAP_S, EspeakError
from renderer.providers.procedural import LAVFI, SOURCES, seed_of

HANG_GUARD_S = 60


def ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                          str(path)], capture_output=True, text=True, timeout=30, check=True).stdout
    return json.loads(out)


def first_frame(path: Path) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                           "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=30, check=True).stdout


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


# --------------------------------------------------------------------------- espeak


@pytest.fixture(scope="module")
def espeak():
    return make(EspeakVoiceConfig, speakers={"Anya": "en-gb", "Winston": "en-us+m3"})


def test_espeak_writes_a_wav_whose_length_grows_with_the_text(espeak, tmp_path: Path):
    short = espeak.synthesize([("The first red flag.", None)], tmp_path / "short.wav")
    long = espeak.synthesize([("The first red flag was a loop that nobody could explain, repeating every "
                               "night in the same subsystem, and gone by morning.", None)], tmp_path / "long.wav")
    for clip in (short, long):
        assert clip.path is not None and clip.path.exists()
        assert clip.provider == "espeak"
        assert clip.duration > 0
        assert clip.duration == pytest.approx(wav_seconds(clip.path), abs=1e-3)
        info = ffprobe(clip.path)
        assert info["streams"][0]["codec_type"] == "audio"
        assert float(info["format"]["duration"]) == pytest.approx(clip.duration, abs=0.05)
    assert long.duration > 3 * short.duration


def test_espeak_two_speakers_two_voices_one_file(espeak, tmp_path: Path):
    text = "We did not build gods."
    anya = espeak.synthesize([(text, "Anya")], tmp_path / "anya.wav")
    winston = espeak.synthesize([(text, "Winston")], tmp_path / "winston.wav")
    both = espeak.synthesize([(text, "Anya"), (text, "Winston")], tmp_path / "both.wav")

    assert anya.path.read_bytes() != winston.path.read_bytes()  # the speakers have different voices
    assert both.path == tmp_path / "both.wav"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("both")] == ["both.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anya.wav", "both.wav", "winston.wav"]  # no temp left
    # one file: Anya's take, a short gap, Winston's take
    assert both.duration == pytest.approx(anya.duration + SPEAKER_GAP_S + winston.duration, abs=0.01)
    assert wav_seconds(both.path) == pytest.approx(both.duration, abs=1e-3)


def test_espeak_consecutive_lines_of_one_speaker_share_a_take(espeak, tmp_path: Path):
    joined = espeak.synthesize([("One.", "Anya"), ("Two.", "Anya")], tmp_path / "joined.wav")
    split = espeak.synthesize([("One.", "Anya"), ("Two.", "Winston")], tmp_path / "split.wav")
    assert joined.duration < split.duration  # no speaker-change gap inside one take


def test_espeak_hostile_text_is_spoken_not_interpreted(espeak, tmp_path: Path):
    clip = espeak.synthesize([('-v xx --stdout "quotes" %s {braces} C:\\path; rm -rf /', None)],
                             tmp_path / "hostile.wav")
    assert clip.path.exists() and clip.duration > 1.0


def test_espeak_no_text_gives_no_file(espeak, tmp_path: Path):
    clip = espeak.synthesize([("   ", None), ("", "Anya")], tmp_path / "none.wav")
    assert clip.path is None and clip.duration == 0.0
    assert not (tmp_path / "none.wav").exists()


def test_espeak_unknown_voice_fails_at_construction():
    with pytest.raises(EspeakError, match="unknown espeak-ng voice"):
        make(EspeakVoiceConfig, voice="xx-nonexistent")


# --------------------------------------------------------------------------- silent


def test_silent_voice_has_no_file_and_time_proportional_to_words(tmp_path: Path):
    voice = make(SilentVoiceConfig, words_per_minute=150)
    ten = voice.synthesize([("one two three four five", None), ("six seven eight nine ten", "Anya")],
                           tmp_path / "x.wav")
    twenty = voice.synthesize([(" ".join(["word"] * 20), None)], tmp_path / "y.wav")
    assert ten.path is None and twenty.path is None
    assert ten.provider == "silent"
    assert ten.duration == pytest.approx(4.0)  # 10 words at 150 wpm
    assert twenty.duration == pytest.approx(2 * ten.duration)
    assert voice.synthesize([], tmp_path / "z.wav").duration == 0.0
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- procedural


@pytest.mark.parametrize("source", SOURCES)
def test_procedural_source_renders_a_clip_of_the_asked_duration(source, tmp_path: Path):
    visual = make(ProceduralVisualConfig, scale=0.5, fps=12, sources=[source])
    clip = visual.render("a terminal blinking to life", tmp_path / "v.mp4", width=160, height=90, duration=1.5)
    assert clip.provider == f"procedural:{source}"
    assert clip.duration == 1.5
    info = ffprobe(clip.path)
    video = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert len(video) == 1 and video[0]["codec_name"] == "h264"
    assert not [s for s in info["streams"] if s["codec_type"] == "audio"]
    assert float(info["format"]["duration"]) == pytest.approx(1.5, abs=0.15)
    assert video[0]["width"] <= 80 and video[0]["height"] <= 45  # rendered small; assembly scales it


def test_procedural_same_prompt_same_clip_different_prompt_different_clip(tmp_path: Path):
    visual = make(ProceduralVisualConfig, scale=0.5, fps=12, sources=["gradients"])
    kw = dict(width=160, height=90, duration=0.5)
    a1 = visual.render("the descent", tmp_path / "a1.mp4", **kw)
    a2 = visual.render("the descent", tmp_path / "a2.mp4", **kw)
    b = visual.render("the ascent", tmp_path / "b.mp4", **kw)
    assert first_frame(a1.path) == first_frame(a2.path)
    assert a1.path.read_bytes() == a2.path.read_bytes()
    assert first_frame(a1.path) != first_frame(b.path)


def test_procedural_choice_is_seeded_by_the_prompt(tmp_path: Path):
    assert seed_of("the descent") == seed_of("the descent") != seed_of("the ascent")
    prompts = [f"scene {i}" for i in range(6)]
    visual = make(ProceduralVisualConfig, scale=0.25, fps=4, sources=list(LAVFI))
    kinds = [visual.render(p, tmp_path / f"{i}.mp4", width=64, height=64, duration=0.25).provider
             for i, p in enumerate(prompts)]
    again = [visual.render(p, tmp_path / f"r{i}.mp4", width=64, height=64, duration=0.25).provider
             for i, p in enumerate(prompts[:2])]
    assert kinds[:2] == again
    assert len(set(kinds)) >= 3  # different prompts pick different sources


@pytest.mark.parametrize("sources", [["nebula"], ["life", "nebula"], []])
def test_procedural_unknown_or_no_source_is_refused_at_construction(sources):
    with pytest.raises(ProviderConfigError, match=r"visual\.sources=.*gradients, life, mandelbrot, plasma"):
        make(ProceduralVisualConfig, sources=sources)


def test_backdrop_renders_a_clip(tmp_path: Path):
    clip = make(BackdropVisualConfig).render("ignored", tmp_path / "b.mp4", width=1280, height=720, duration=2.0,
                                             timeout=60)
    assert clip.provider == "backdrop" and clip.duration == 2.0
    info = ffprobe(clip.path)
    video = info["streams"][0]
    assert video["codec_type"] == "video" and video["codec_name"] == "h264"
    assert float(info["format"]["duration"]) == pytest.approx(2.0, abs=0.15)
    frame = first_frame(clip.path)
    r, g, b = frame[0], frame[1], frame[2]
    assert max(r, g, b) < 50  # a dark still


# --------------------------------------------------------------------------- ffmpeg runner


def test_failed_ffmpeg_raises_with_the_stderr_tail(tmp_path: Path):
    missing = tmp_path / "does-not-exist.mp4"
    with pytest.raises(ffmpeg.FFmpegError) as info:
        ffmpeg.run(["-i", str(missing), "-f", "null", "-"])
    err = info.value
    assert err.returncode not in (None, 0)
    assert "No such file or directory" in err.stderr_tail
    assert "No such file or directory" in str(err)
    assert err.cmd[0].endswith("ffmpeg")


def test_error_keeps_only_the_last_stderr_lines():
    script = "i=1; while [ $i -le 50 ]; do echo line$i >&2; i=$((i+1)); done; exit 3"
    with pytest.raises(ffmpeg.FFmpegError) as info:
        ffmpeg.run_tool(["sh", "-c", script], timeout=30)
    lines = info.value.stderr_tail.splitlines()
    assert info.value.returncode == 3
    assert lines[-1] == "line50"
    assert "line1" not in lines and len(lines) <= 20


@pytest.fixture
def ffmpeg_with_pidfile(tmp_path: Path, monkeypatch):
    """The real ffmpeg behind FFMPEG_PATH, through a wrapper that records its pid (exec keeps the pid)."""
    pidfile = tmp_path / "ffmpeg.pid"
    wrapper = tmp_path / "ffmpeg-wrapper"
    real = subprocess.run(["sh", "-c", "command -v ffmpeg"], capture_output=True, text=True, check=True).stdout.strip()
    wrapper.write_text(f'#!/bin/sh\necho $$ > "{pidfile}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("FFMPEG_PATH", str(wrapper))
    return pidfile


def assert_gone(pid: int) -> None:
    if psutil.pid_exists(pid):  # a pid may be reused, but never by a zombie or an ffmpeg of ours
        proc = psutil.Process(pid)
        assert proc.status() != psutil.STATUS_ZOMBIE and "ffmpeg" not in proc.name()
    assert pid not in [c.pid for c in psutil.Process().children(recursive=True)]


def test_timeout_kills_ffmpeg(ffmpeg_with_pidfile: Path):
    errors: list[BaseException] = []

    def endless() -> None:
        try:
            ffmpeg.run(["-f", "lavfi", "-i", "testsrc=s=32x32:r=10", "-f", "null", "-"], timeout=1)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=endless, daemon=True)
    worker.start()
    worker.join(HANG_GUARD_S)  # a guard against hanging the suite, not a timing assertion
    pid = int(ffmpeg_with_pidfile.read_text())
    if worker.is_alive():
        psutil.Process(pid).kill()  # our own stray child: clean it up, then fail
        pytest.fail("ffmpeg.run did not return after its timeout")
    assert len(errors) == 1 and isinstance(errors[0], ffmpeg.FFmpegError), errors
    assert "timed out" in str(errors[0])
    assert_gone(pid)
    assert pid not in ffmpeg.live_pids()


def test_interrupting_a_run_kills_ffmpeg(ffmpeg_with_pidfile: Path):
    """A cancelled run (here: the progress callback raises, as a Ctrl-C would) leaves no ffmpeg behind."""
    started = threading.Event()

    def progress(fraction: float) -> None:
        started.set()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ffmpeg.run(["-f", "lavfi", "-i", "testsrc=s=32x32:r=10", "-f", "null", "-"], timeout=60,
                   duration=3600, on_progress=progress)
    assert started.is_set()
    assert_gone(int(ffmpeg_with_pidfile.read_text()))


def test_probe_reports_streams_and_duration(tmp_path: Path):
    clip = tmp_path / "av.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=96x64:r=10:d=1.2",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050:d=1.2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(clip)],
                   check=True, capture_output=True, timeout=60)
    info = ffmpeg.probe(clip)
    assert info.duration == pytest.approx(1.2, abs=0.1)
    assert "mp4" in info.format_name
    video, audio = info.first("video"), info.first("audio")
    assert (video.codec_name, video.width, video.height) == ("h264", 96, 64)
    assert video.fps == pytest.approx(10.0)
    assert (audio.codec_name, audio.sample_rate) == ("aac", 22050)
    assert sorted(info.codecs) == ["aac", "h264"]


def test_probe_of_a_non_media_file_raises(tmp_path: Path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video")
    with pytest.raises(ffmpeg.FFmpegError):
        ffmpeg.probe(bogus)
