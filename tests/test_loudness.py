"""Loudness that composes (renderer/media/loudness.py): a clip's measurements are ffmpeg's EBU R128 meter's,
and clips placed on a timeline (offsets, silence between, a cut with a fade) give the programme's integrated
loudness as the meter measures the programme itself."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest

from renderer.media import audio, loudness
from tests.test_soundtrack import r128


def speech(path: Path, text: str, *extra: str) -> Path:
    subprocess.run(["espeak-ng", *extra, "-w", str(path), text], check=True)
    return path


def test_a_clip_measures_as_ffmpeg_s_meter_measures_it(tmp_path):
    clip = speech(tmp_path / "a.wav", "The first red flag was a loop. Nobody could explain it.")
    measured = loudness.of_file(clip, tmp_path, timeout=60)
    meter, peak = r128(clip)
    assert measured.lufs == pytest.approx(meter, abs=0.15) and measured.true_peak_db == pytest.approx(peak, abs=0.15)
    assert len(measured.energies) == math.ceil(float(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(clip)],
        capture_output=True, text=True, check=True).stdout) / loudness.STEP_S)
    tone = tmp_path / "tone.wav"  # lavfi's sine plays at -18 dBFS: a -6 dBFS tone
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=f=997:d=1:r=48000", "-af", "volume=12dB",
                    str(tone)], check=True)
    assert loudness.of_file(tone, tmp_path, timeout=60).true_peak_db == pytest.approx(-6.0, abs=0.1)
    quiet = tmp_path / "quiet.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono", "-t", "0.5", str(quiet)],
                   check=True)
    silence = loudness.of_file(quiet, tmp_path, timeout=60)
    assert silence.lufs == loudness.SILENT_LUFS and silence.true_peak_db == -math.inf
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "quiet.wav", "tone.wav"]  # nothing left behind


def test_a_shaped_voice_keeps_its_length_and_its_peaks_near_its_level(tmp_path):
    clip = speech(tmp_path / "a.wav", "We did not build gods. We built mirrors, and they looked back.", "-a", "180")
    before = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                   str(clip)], capture_output=True, text=True, check=True).stdout)
    shaped = tmp_path / "shaped.wav"
    measured = audio.level_voice(clip, shaped, tmp_path, timeout=60)
    after = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                  str(shaped)], capture_output=True, text=True, check=True).stdout)
    assert after == pytest.approx(before, abs=0.01)
    meter, peak = r128(shaped)
    assert measured.lufs == pytest.approx(meter, abs=0.15) and measured.true_peak_db == pytest.approx(peak, abs=0.3)
    assert measured.true_peak_db - measured.lufs <= audio.VOICE_PEAK_LU + 2.5  # what a gain to target leaves
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "shaped.wav"]  # nothing left behind


def test_placed_clips_give_the_loudness_of_the_programme_they_make(tmp_path):
    """Three clips on a 12 s programme: one 0.37 s in, one 4.2 s in cut at 5.0 s with a 0.3 s fade out, one
    quieter at 8.05 s; the programme is made by ffmpeg (adelay, afade, atrim) and measured by its meter."""
    clips = [speech(tmp_path / f"{n}.wav", text, *extra) for n, (text, extra) in enumerate([
        ("Signal lost at dawn.", ()), ("The relay answered once, then nothing at all for a long time.", ()),
        ("Quiet now.", ("-a", "60"))])]
    places = [(0.37, 4.0, 0.0), (4.2, 5.0, 0.3), (8.05, 12.0, 0.0)]
    chains = []
    for n, (start, end, fade) in enumerate(places):
        chain = f"[{n}:a]aresample=48000,adelay={start * 1000:.0f}:all=1"
        if fade:
            chain += f",afade=t=out:st={end - fade}:d={fade}"
        chains.append(f"{chain},apad,atrim=start={0 if n == 0 else places[n - 1][1]}:end={end}[p{n}]")
    programme = tmp_path / "programme.wav"
    subprocess.run(["ffmpeg", "-v", "error", *sum((["-i", str(c)] for c in clips), []), "-filter_complex",
                    ";".join(chains) + ";[p0][p1][p2]concat=n=3:v=0:a=1[out]", "-map", "[out]", str(programme)],
                   check=True)
    placements = [loudness.Placement(loudness.of_file(c, tmp_path, timeout=60), start, end, fade)
                  for c, (start, end, fade) in zip(clips, places)]
    composed = loudness.integrated(loudness.programme(placements, 12.0))
    meter, _ = r128(programme)
    assert composed == pytest.approx(meter, abs=0.2)
    alone = loudness.integrated(loudness.programme(placements[:1], 12.0))
    assert abs(alone - composed) > 0.3  # the other clips count: the test would see a wrong placement


def test_a_long_clip_is_measured_in_bounded_memory(tmp_path):
    """Every step's mean square as the whole file would give it, read a block at a time: a 2-minute clip's
    K-weighted samples (46 MB) never sit in memory at once, nor their squares (four voices measured side by side
    held ~25 MB each, the orchestrator's peak growing with the scene count)."""
    import tracemalloc

    import numpy as np

    step = round(loudness.STEP_S * loudness.RATE)
    samples = np.random.default_rng(7).standard_normal(120 * loudness.RATE + step // 3)  # a partial last step
    samples.astype("<f8").tofile(tmp_path / "clip.k64")  # as an ffmpeg run of ``analysis`` writes it
    whole = np.zeros(-(-samples.size // step) * step)
    whole[:samples.size] = samples * samples
    tracemalloc.start()
    try:
        energies = loudness.Analysis([], [], tmp_path, "clip", peak=False).result().energies
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert energies == tuple(whole.reshape(-1, step).mean(axis=1).tolist())
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MB"
