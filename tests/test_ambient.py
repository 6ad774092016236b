"""The ambient pad: one per script, the same every time, in the key and tempo asked for, calm at its chord
changes, cheap; a key it cannot play is a clear error."""

from __future__ import annotations

import time
import wave

import numpy as np
import pytest

from renderer.media import ambient

PAD = ambient.Pad.of({"key": "D minor", "bpm": 60, "beats_per_chord": 8})
RATE = ambient.SYNTH_RATE


def test_the_same_script_gets_the_same_pad_sample_for_sample_and_another_script_another():
    first = ambient.synthesise("log-0002-the-descent", 30, PAD, channels=2)
    assert np.array_equal(first, ambient.synthesise("log-0002-the-descent", 30, PAD, channels=2))
    other = ambient.synthesise("log-0003-the-signal", 30, PAD, channels=2)
    assert not np.allclose(first, other, atol=0.05)
    plans = {ambient._plan(PAD, f"script-{n}") for n in range(12)}
    assert len({(p.progression, p.colour) for p in plans}) >= 6  # different progressions and voicings


def test_the_pad_is_as_long_as_asked_in_the_channels_asked_and_within_its_peak():
    mono = ambient.synthesise("s", 7.3, PAD, channels=1)
    stereo = ambient.synthesise("s", 7.3, PAD, channels=2)
    assert mono.shape == (int(np.ceil(7.3 * RATE)), 1) and stereo.shape == (mono.shape[0], 2)
    assert np.abs(stereo).max() == pytest.approx(ambient.PEAK, rel=1e-4)
    assert not np.allclose(stereo[:, 0], stereo[:, 1], atol=0.02)  # a stereo image, not one channel twice
    assert np.abs(stereo[:RATE // 100]).max() < 0.01 and np.abs(stereo[-RATE // 100:]).max() < 0.01  # faded


@pytest.mark.parametrize("key, tonic, minor", [("D minor", 2, True), ("F major", 5, False), ("Bb min", 10, True),
                                               ("f# m", 6, True), ("C", 0, False), ("E♭ major", 3, False)])
def test_keys_are_read_as_written(key, tonic, minor):
    assert ambient.parse_key(key) == ambient.Key(tonic, minor)


def test_the_pad_plays_in_its_key_and_changes_chord_with_the_tempo():
    """Every note of every chord is in the key (the raised seventh of a minor key's V aside), and the chords
    change every beats_per_chord beats: the spectrum differs across a change, not within a chord."""
    for key in ("D minor", "F major"):
        pad = ambient.Pad.of({"key": key, "bpm": 60, "beats_per_chord": 8})
        scale = {(pad.key.tonic + d) % 12 for d in ambient.SCALES[pad.key.minor]}
        for seed in ("a", "b", "c", "d"):
            plan = ambient._plan(pad, seed)
            for voicing in ambient._voice_led(plan, pad.key, 8):
                assert {m % 12 for m in voicing} - scale <= {(pad.key.tonic + 11) % 12}, (key, seed, voicing)
    samples = ambient.synthesise("tempo", 40, ambient.Pad.of({"key": "D minor", "bpm": 120, "beats_per_chord": 8}))

    def spectrum(at: float) -> np.ndarray:
        window = samples[int(at * RATE):int(at * RATE) + RATE, 0] * np.hanning(RATE)
        return np.abs(np.fft.rfft(window))

    def distance(a: float, b: float) -> float:
        x, y = spectrum(a), spectrum(b)
        return float(np.sum(np.abs(x - y)) / np.sum(x + y))

    # at 120 bpm, 8 beats are 4 s: chord 2 (4-8 s) twice, then chord 2 against chord 3 (8-12 s)
    within, across = distance(5.0, 6.5), distance(6.5, 9.5)
    assert across > 2 * within, (within, across)


def test_no_clicks_at_the_chord_changes_or_anywhere():
    """Everything the pad plays lies under 2.7 kHz, so a click (a step, broadband) shows in a short-time
    spectrum above 3.2 kHz: no frame has more than a trace there (cut the crossfades and it is -30 dB)."""
    n = 256
    for seed in ("calm-1", "calm-2", "calm-3"):
        samples = ambient.synthesise(seed, 48, PAD, channels=2).astype(np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(samples, n, axis=0)[::n // 2]  # frame, channel, sample
        power = np.abs(np.fft.rfft(frames * np.hanning(n), axis=-1)) ** 2
        high = power[..., int(3200 / RATE * n):].sum(axis=-1)
        mean_frame_power = np.mean(samples ** 2) * np.sum(np.hanning(n) ** 2) * n / 2
        assert 10 * np.log10(high.max() / mean_frame_power) < -70, seed


def test_five_minutes_of_pad_are_cheap():
    start = time.process_time()  # CPU time (every thread's): other work on the machine does not count
    ambient.synthesise("long", 300, PAD, channels=2)
    assert time.process_time() - start < 3.0  # about 0.25 s here


@pytest.mark.parametrize("settings, needle", [
    ({"key": "H minor"}, "audio.ambient.key: 'H minor' is not a key"),
    ({"key": "D dorian"}, "then major or minor"),
    ({"bpm": 0}, "audio.ambient.bpm: 0"),
    ({"beats_per_chord": 0}, "audio.ambient.beats_per_chord: 0"),
    ({"bpm": 240, "beats_per_chord": 2}, "every 0.50 s; a pad needs at least 1 s a chord"),
])
def test_a_setting_the_pad_cannot_play_is_a_clear_error(settings, needle):
    with pytest.raises(ambient.AmbientError, match=needle):
        ambient.bed({"key": "D minor", "bpm": 60, "beats_per_chord": 8, **settings}, "seed")


def test_the_pad_is_written_as_16_bit_pcm(tmp_path):
    samples = ambient.synthesise("wav", 2.0, PAD, channels=2)
    path = ambient.write_wav(samples, RATE, tmp_path / "pad.wav")
    with wave.open(str(path)) as back:
        assert (back.getnchannels(), back.getsampwidth(), back.getframerate(), back.getnframes()) == \
            (2, 2, RATE, len(samples))
        pcm = np.frombuffer(back.readframes(back.getnframes()), "<i2").reshape(-1, 2)
    assert np.abs(pcm / 32767 - samples).max() < 1e-4
