"""The soundtrack stage: loudness on target whatever the voice, a music bed that ducks under speech (real
ffmpeg, real voices, measured with ffmpeg's EBU R128 meter and band-passed levels)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from renderer.engine.node import NodeInput
from renderer.media import ambient, audio
from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from renderer.providers.base import AudioClip
from renderer.stages import soundtrack
from renderer.stages.timeline import plan
from tests.conftest import TINY, TWO_SCENES, compose_cfg, parsed

RATE = 48000
CFG = {"encode.audio_bitrate": "128k", "encode.audio_rate": RATE, "encode.audio_channels": 1,
       "audio.loudness_lufs": -16.0, "audio.true_peak_db": -1.5, "audio.music": "", "audio.music_db": -18.0,
       "audio.duck_db": 10.0}

SPEECHES = {
    "espeak": (["voice=espeak"], "“The first red flag was a loop. Nobody could explain it.”"),
    "espeak-quiet": (["voice=espeak", "voice.voice=en-gb", "voice.amplitude=40"],
                     "“Signal lost at dawn; the relay answered once, then nothing.”"),
    "piper": (["voice=piper", "voice.speakers={Anya: 'pitch_semitones=-3'}"],
              "“We did not build gods. We built mirrors, and they looked back.”"),
}


def r128(path: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) of a file's audio, by ffmpeg's ebur128 filter."""
    err = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", str(path), "-vn", "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    summary = err[err.rindex("Summary:"):]
    loudness = float(summary.split("I:")[1].split("LUFS")[0])
    peak = float(summary.split("True peak:")[1].split("Peak:")[1].split("dBFS")[0])
    return loudness, peak


def decoded(path: Path, band: str = "") -> np.ndarray:
    af = ["-af", band] if band else []
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), *af, "-ac", "1", "-ar", str(RATE), "-f", "f32le",
                          "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


def rms_db(samples: np.ndarray, start: float, end: float) -> float:
    window = samples[int(start * RATE):int(end * RATE)]
    return 20 * np.log10(np.sqrt(np.mean(window ** 2)) + 1e-12)


def duration(path: Path) -> float:
    return float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=duration", "-of", "csv=p=0",
                                 str(path)], capture_output=True, text=True, check=True).stdout)


def tone(path: Path, freq: int, seconds: float, volume_db: float = -6.0) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=f={freq}:d={seconds}:r=22050",
                    "-af", f"volume={volume_db}dB", str(path)], check=True)
    return path


@pytest.mark.parametrize("name", sorted(SPEECHES))
def test_every_voice_lands_on_the_loudness_target(name, tmp_path):
    overrides, line = SPEECHES[name]
    script = tmp_path / f"{name}.txt"
    script.write_text(TWO_SCENES.replace("“Short line one.”", line), encoding="utf-8")
    cfg = compose_cfg(*TINY, "assembly=audio_only", *overrides)
    record = render_script(script, name, cfg, RunLayout(tmp_path))
    assert record["status"] == "ok" and record["fallbacks"] == [], record
    assert record["providers"]["voice"] == [name.split("-")[0]]
    loudness, peak = r128(tmp_path / name / f"{name}.mp4")
    assert loudness == pytest.approx(-16.0, abs=1.0)
    assert peak <= -1.5


def test_the_target_is_a_setting(tmp_path, two_scenes):
    cfg = compose_cfg(*TINY, "assembly=audio_only", "audio.loudness_lufs=-23", "audio.true_peak_db=-3")
    record = render_script(two_scenes, "tiny", cfg, RunLayout(tmp_path))
    loudness, peak = r128(tmp_path / "tiny" / "tiny.mp4")
    assert record["status"] == "ok" and loudness == pytest.approx(-23.0, abs=1.0) and peak <= -3.0


def _render_tones(tmp_path: Path, **settings) -> Path:
    """Scene 1 silent (0-4 s), scene 2 a 1 kHz 'voice' for 2 s (4-8 s), scene 3 silent (8-14 s)."""
    voice = tone(tmp_path / "voice.wav", 1000, 2.0)
    clips = [AudioClip(None, 0.0, provider="silent"), AudioClip(voice, 2.0, provider="tone"),
             AudioClip(None, 0.0, provider="silent")]
    timeline = plan([(0, 4), (4, 4), (8, 6)], 25)
    music = audio.pick_music(settings.pop("music", ""), "tones")
    cfg = {**CFG, **settings}
    out = soundtrack.render(NodeInput({"music": music}, cfg, {"timeline": timeline, "voices": clips}, tmp_path,
                                      "k" * 64), timeout=60)
    return out.path


def test_the_music_bed_ducks_under_the_voice_and_loops_to_the_end(tmp_path):
    music = tone(tmp_path / "bed.wav", 200, 3.0, volume_db=-10)  # shorter than the video: looped
    track = _render_tones(tmp_path, music=str(music))
    bed = decoded(track, "bandpass=f=200:width_type=q:w=8,bandpass=f=200:width_type=q:w=8")
    voice = decoded(track, "bandpass=f=1000:width_type=q:w=8")
    gap_before, under, gap_after = rms_db(bed, 2.0, 3.5), rms_db(bed, 4.6, 5.8), rms_db(bed, 7.5, 9.5)
    assert gap_before - under >= 6 and gap_after - under >= 6, (gap_before, under, gap_after)
    assert abs(gap_before - gap_after) < 1.5  # back up after the voice, and still playing past its 3 s
    assert rms_db(voice, 4.6, 5.8) - under >= 12  # the voice stands clear of the bed
    assert rms_db(bed, 0.0, 0.3) < gap_before - 6 and rms_db(bed, 13.7, 14.0) < gap_before - 10  # faded in, out
    loudness, peak = r128(track)
    assert loudness == pytest.approx(-16.0, abs=1.0) and peak <= -1.5


def test_the_bed_level_follows_music_db(tmp_path):
    """The bed sits music_db below the narration (the whole mix is then set to the target loudness)."""
    music = str(tone(tmp_path / "bed.wav", 200, 3.0))
    band = "bandpass=f=200:width_type=q:w=8,bandpass=f=200:width_type=q:w=8"
    voice_band = "bandpass=f=1000:width_type=q:w=8"
    below = {}
    for music_db in (-24.0, -12.0):
        (tmp_path / str(music_db)).mkdir()
        track = _render_tones(tmp_path / str(music_db), music=music, **{"audio.music_db": music_db})
        below[music_db] = rms_db(decoded(track, voice_band), 4.6, 5.8) - rms_db(decoded(track, band), 2.0, 3.5)
    assert below[-24.0] - below[-12.0] == pytest.approx(12, abs=1.5)


def test_the_ambient_pad_ducks_under_the_voice_like_any_bed_and_the_mix_lands_on_target(tmp_path):
    """audio.music=ambient: the script's pad, synthesised to the timeline, plays where a music file would.
    A 4 kHz 'voice' (6-8 s) lies above everything the pad plays; the pad is measured under 500 Hz."""
    voice = tone(tmp_path / "voice.wav", 4000, 2.0)
    clips = [AudioClip(None, 0.0, provider="silent"), AudioClip(voice, 2.0, provider="tone"),
             AudioClip(None, 0.0, provider="silent")]
    timeline = plan([(0, 6), (6, 4), (10, 8)], 25)
    cfg = {**CFG, "audio.music": "ambient", "audio.ambient": {"key": "F major", "bpm": 30, "beats_per_chord": 8}}
    track = soundtrack.render(NodeInput({"music": ambient.Bed("tones")}, cfg, {"timeline": timeline, "voices": clips},
                                        tmp_path, "k" * 64), timeout=60).path
    pad = decoded(track, ",".join(["lowpass=f=500"] * 3))
    gap_before, under, gap_after = rms_db(pad, 4.0, 5.5), rms_db(pad, 6.6, 7.8), rms_db(pad, 9.0, 11.0)
    assert gap_before - under >= 6 and gap_after - under >= 6, (gap_before, under, gap_after)
    assert abs(gap_before - gap_after) < 2  # back up after the voice
    assert rms_db(decoded(track, ",".join(["highpass=f=3000"] * 3)), 6.6, 7.8) - under >= 12
    assert rms_db(pad, 0.0, 0.3) < gap_before - 10 and rms_db(pad, 17.7, 18.0) < gap_before - 10  # faded in, out
    loudness, peak = r128(track)
    assert loudness == pytest.approx(-16.0, abs=1.0) and peak <= -1.5


def test_a_script_rendered_over_the_ambient_pad_lands_on_the_loudness_target(tmp_path, two_scenes):
    cfg = compose_cfg(*TINY, "assembly=audio_only", "audio.music=ambient", "encode.audio_channels=2")
    record = render_script(two_scenes, "tiny", cfg, RunLayout(tmp_path))
    assert record["status"] == "ok" and record["fallbacks"] == [], record
    loudness, peak = r128(tmp_path / "tiny" / "tiny.mp4")
    assert loudness == pytest.approx(-16.0, abs=1.0) and peak <= -1.5


def test_a_pad_in_no_key_stops_the_script_before_anything_renders(tmp_path, two_scenes):
    cfg = compose_cfg(*TINY, "assembly=audio_only", "audio.music=ambient", "audio.ambient.key='H minor'")
    record = render_script(two_scenes, "tiny", cfg, RunLayout(tmp_path))
    assert record["status"] == "failed" and record["stages"] == []
    assert "audio.ambient.key: 'H minor' is not a key" in record["error"] and "'D minor'" in record["error"]


def test_a_folder_of_music_gives_each_script_its_own_pick_always_the_same(tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    for name in ("a.wav", "b.wav", "c.wav"):
        tone(folder / name, 300, 0.5)
    (folder / "notes.txt").write_text("not music")
    picks = {seed: audio.pick_music(str(folder), seed).path.name for seed in (f"script-{n}" for n in range(12))}
    assert set(picks.values()) == {"a.wav", "b.wav", "c.wav"}
    assert all(audio.pick_music(str(folder), seed).path.name == name for seed, name in picks.items())


def test_bad_music_stops_the_script_before_anything_renders(tmp_path, two_scenes):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.mp3").write_bytes(b"ID3 this is not audio at all")
    os.mkfifo(tmp_path / "fifo.mp3")  # nothing ever writes to it: reading it would block
    for setting, needle in [(tmp_path / "nope.mp3", "nope.mp3 does not exist"),
                            (tmp_path / "fifo.mp3", "fifo.mp3 is not a regular file"),
                            (tmp_path / "broken.mp3", "cannot read"),
                            (tmp_path / "empty", "holds no audio files")]:
        cfg = compose_cfg(*TINY, "assembly=audio_only", f"audio.music={setting}")
        record = render_script(two_scenes, "tiny", cfg, RunLayout(tmp_path / "run"))
        assert record["status"] == "failed" and needle in record["error"] and str(setting) in record["error"]
        assert record["stages"] == []  # nothing ran


def test_the_soundtrack_is_keyed_by_the_music_file_and_its_settings(tmp_path):
    from renderer.engine.graph import Graph
    from renderer.pipeline import compose
    from renderer.pipeline.render import providers_for
    from tests.test_keys import outputs_for, with_leaf_flipped

    music = tone(tmp_path / "bed.wav", 200, 1.0)
    script = parsed()

    def key(*overrides, flip=None, slug="tiny"):
        cfg = compose_cfg(*TINY, "assembly=audio_only", *overrides)
        comp = compose.compose(script, slug, cfg, providers_for(cfg, RunLayout(tmp_path)))
        node = comp.graph.nodes["soundtrack"]
        return Graph.key(node, with_leaf_flipped(cfg, flip) if flip else cfg,
                         {n: "0" * 64 for n in comp.graph.nodes}, outputs_for(script))

    plain, with_music = key(), key(f"audio.music={music}")
    assert plain != with_music
    assert key(flip="audio.music_db") == plain  # no bed: its level cannot matter
    assert key(f"audio.music={music}", flip="audio.music_db") != with_music
    tone(music, 200, 2.0)  # the same name, other content
    assert key(f"audio.music={music}") != with_music

    pad = key("audio.music=ambient")
    assert pad not in (plain, with_music) and key("audio.music=ambient", slug="other") != pad  # seeded by the script
    for leaf in ("audio.ambient.key", "audio.ambient.bpm", "audio.ambient.beats_per_chord", "audio.music_db"):
        assert key("audio.music=ambient", flip=leaf) != pad
        assert key(flip=leaf) == plain  # no pad: its settings cannot matter



MANY_SCENES_UNDER_A_LOW_FILE_LIMIT = """
import resource, sys
from pathlib import Path
from renderer.engine.node import NodeInput
from renderer.media.audio import Music
from renderer.providers.base import AudioClip
from renderer.stages import soundtrack
from renderer.stages.timeline import plan

resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
work, voice, bed, scenes = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
clips = [AudioClip(voice, 0.1, provider="tone") for _ in range(scenes)]
timeline = plan([(0.2 * i, 0.2) for i in range(scenes)], 25)
cfg = {{**{cfg}, "audio.loudness_lufs": 0}}  # no loudness passes: the mix is what is tested
out = soundtrack.render(NodeInput({{"music": Music(bed, 0, 0)}}, cfg, {{"timeline": timeline, "voices": clips}}, work,
                                  "k" * 64), timeout=120)
print(out.path)
"""


def test_hundreds_of_speaking_scenes_mix_under_a_low_open_file_limit(tmp_path):
    """300 scenes with a voice each over a bed (here a silent one: the narration is mixed whole), and a process
    that may open 64 files: the narration is all there."""
    voice, bed = tone(tmp_path / "voice.wav", 1000, 0.1), tone(tmp_path / "bed.wav", 200, 1.0, volume_db=-200)
    code = MANY_SCENES_UNDER_A_LOW_FILE_LIMIT.format(cfg=CFG)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(voice), str(bed), "300"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    samples = decoded(Path(result.stdout.strip().splitlines()[-1]))
    assert len(samples) == pytest.approx(60 * RATE, abs=RATE * 0.05)
    for scene in (0, 150, 299):  # each scene speaks for its first 0.1 s, then is quiet until the next
        assert rms_db(samples, 0.2 * scene + 0.02, 0.2 * scene + 0.08) > -30, scene
        assert rms_db(samples, 0.2 * scene + 0.13, 0.2 * scene + 0.18) < -50, scene


def test_narration_that_cannot_be_read_fails_the_soundtrack_instead_of_silencing_it(tmp_path):
    missing = tmp_path / "gone.wav"
    clips = [AudioClip(missing, 1.0, provider="espeak")]
    bed = tone(tmp_path / "bed.wav", 200, 1.0)
    inp = NodeInput({"music": audio.Music(bed, 0, 0)}, CFG, {"timeline": plan([(0, 2)], 25), "voices": clips}, tmp_path,
                    "k" * 64)
    with pytest.raises(Exception) as failure:
        soundtrack.render(inp, timeout=60)
    with pytest.raises(RuntimeError, match="narration could not be read"):
        soundtrack.silence(inp, failure.value, timeout=60)
    # a mix that failed for another reason still falls back to silence: the video comes out
    silent = soundtrack.silence(inp, RuntimeError("the encoder broke"), timeout=60)
    assert silent.provider == "silence" and silent.path.is_file()


def log_script(scenes: list[tuple[str, str]]) -> str:
    """A LOG script of (timestamp, narration) scenes; a scene with no narration has a visual only, and one
    written "Speaker| line" is spoken by that speaker."""
    body = ""
    for n, (at, line) in enumerate(scenes):
        speaker, _, text = line.rpartition("|")
        label = f"Narration ({speaker}):" if speaker else "Narration:"
        body += f"\n[{at} – Scene {n + 1}]\nVisual: A quiet room.\n" + (f"{label}\n“{text}”\n" if text else "")
    return f"SCRIPT: TEST_0002 — LAYOUT\n{body}END TEST_0002\n"


LAYOUTS = {
    "short": ([("0:00", "Hello.")], []),
    "many-scenes": ([(f"0:{2 * n:02d}", line) for n, line in enumerate(
        ["One.", "The second line, a little longer.", "", "Four.", "Five, and then some more words.", "Six.",
         "Seven.", "Eight.", "Nine, the last of them."])], []),
    "a-cut-clip": ([("0:00", "A first line that runs far longer than the two seconds its scene has on screen."),
                    ("0:02", "Then the second."), ("0:05", "And the third.")], []),
    "a-lead-in-stereo": ([("0:02", "It starts late."), ("0:04", "Then goes on.")], ["encode.audio_channels=2"]),
    "a-quiet-voice": ([("0:00", "Soft and low."), ("0:03", "")], ["voice.amplitude=30"]),
    "two-voices": ([("0:00", "Anya| A whisper first."), ("0:03", "Then a plain voice, loud and clear.")],
                   ["voice.speakers={Anya: en+whisper}"]),
    "over-the-ambient-pad": ([("0:00", "A pad under the voice."), ("0:03", "Still there.")], ["audio.music=ambient"]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_narration_lands_on_the_target_from_its_clips_measurements(layout, tmp_path):
    """Layouts of scenes (one short clip, many with silence between, a clip cut at its scene's end, a lead and
    stereo, a quiet voice, a music bed): the finished file measures within 0.5 LU of the target by ffmpeg's
    meter, and under the true-peak ceiling."""
    scenes, overrides = LAYOUTS[layout]
    script = tmp_path / "layout.txt"
    script.write_text(log_script(scenes), encoding="utf-8")
    cfg = compose_cfg(*TINY, "assembly=audio_only", *overrides)
    record = render_script(script, "layout", cfg, RunLayout(tmp_path))
    assert record["status"] == "ok" and record["fallbacks"] == [], record
    loudness, peak = r128(tmp_path / "layout" / "layout.mp4")
    assert loudness == pytest.approx(-16.0, abs=0.5)
    assert peak <= -1.5


@pytest.mark.parametrize("channels", [1, 2])
def test_a_short_clip_on_a_long_scene_is_encoded_for_its_voiced_frames_and_plays_as_the_whole_encode(channels,
                                                                                                   tmp_path):
    """A 1.5 s clip on a 30 s scene: ffmpeg encodes the frames it sounds in (and a few silent ones), and the rest
    of the piece is the encoder's silent packet repeated; decoded, the piece is sample for sample one encode of
    the whole stretch, and it has the packets of the stretch's length, so it joins like any piece."""
    from hydra.utils import instantiate

    from renderer.media import adts
    from renderer.stages import level, narration, voice

    scene = parsed().scenes[0]
    (tmp_path / "voice").mkdir()
    spoken = voice.node(scene, instantiate(compose_cfg(*TINY).voice), timeout=60).fn(
        NodeInput(None, {}, {}, tmp_path / "voice", "v" * 64))
    clip = level.render(NodeInput(None, {}, {"voice": spoken}, tmp_path / "voice", "l" * 64), scene=0, timeout=60)
    cfg = {**CFG, "encode.audio_channels": channels}
    inp = NodeInput(None, cfg, {"voice": clip, "where": narration._where(plan([(0.5, 30), (30.5, 5)], 25), 0)},
                    tmp_path, "n" * 64)
    at = narration._stretch(inp)
    assert narration.voiced(clip, at, RATE) < at.samples / 5  # the clip is short for its stretch
    piece = narration.render(inp, scene=0, timeout=60)
    encoded = next(tmp_path.glob("narration-000-*.filter")).read_text(encoding="utf-8")
    assert f"apad=whole_len={narration.voiced(clip, at, RATE)}[out]" in encoded  # what ffmpeg was given to encode
    filters = tmp_path / "whole.filter"
    filters.write_text(narration._chain(clip, at, piece.gain_db, cfg["audio.true_peak_db"], RATE,
                                        "mono" if channels == 1 else "stereo") + "\n", encoding="utf-8")
    whole = tmp_path / "whole.aac"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip.path), "-filter_complex_script", str(filters), "-map",
                    "[out]", "-c:a", "aac", "-aac_pns", "0", "-b:a", "128k", "-ar", str(RATE), "-ac", str(channels),
                    "-fflags", "+bitexact", "-f", "adts", str(whole)], check=True)

    def decoded(path: Path) -> np.ndarray:
        return np.frombuffer(subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-"],
                                            capture_output=True, check=True).stdout, dtype=np.float32)

    assert len(adts.packets(piece.path.read_bytes())) == adts.frames_for(at.samples)
    got, reference = decoded(piece.path), decoded(whole)
    assert np.abs(got).max() > 0.1 and np.array_equal(got, reference)


def test_narration_alone_is_encoded_once_per_scene_and_never_measured(tmp_path):
    """The level stage's clips carry their measurements: each scene's piece takes its gain from them and is
    encoded once, with no pass of ffmpeg's meter over it or the joined track (no .r128 or .peak stats in their
    work folder); the joined track lasts exactly the timeline, and lands on the target."""
    from hydra.utils import instantiate

    from renderer.stages import level, mux, narration, voice

    script = parsed()
    speaker = instantiate(compose_cfg(*TINY).voice)
    clips = []
    for scene in script.scenes:
        work = tmp_path / f"voice{scene.index}"
        work.mkdir()
        spoken = voice.node(scene, speaker, timeout=60).fn(NodeInput(None, {}, {}, work, f"{scene.index}" * 64))
        clips.append(level.render(NodeInput(None, {}, {"voice": spoken}, work, "l" * 64), scene=scene.index,
                                  timeout=60))
    assert all(clip.loudness and clip.loudness.energies for clip in clips)
    work = tmp_path / "soundtrack"
    work.mkdir()
    timeline = plan([(0, 3), (3, 3)], 25)
    pieces = [narration.render(NodeInput(None, CFG, {"voice": clip, "where": narration._where(timeline, i)}, work,
                                         f"{i}" * 64), scene=i, timeout=60) for i, clip in enumerate(clips)]
    joined = soundtrack.join(NodeInput(None, CFG, {"pieces": pieces, "timeline": timeline}, work, "k" * 64))
    # no tool ran on the joined track: the mux copies it into the video with its options
    track = mux.render(NodeInput(None, {}, {"soundtrack": joined, "timeline": timeline}, work, "m" * 64), slug="tiny",
                       timeout=60).path
    assert not list(work.glob("*.r128")) and not list(work.glob("*.peak"))
    assert duration(track) == pytest.approx(6.0, abs=1e-3)
    loudness, peak = r128(track)
    assert loudness == pytest.approx(-16.0, abs=0.5) and peak <= -1.5
