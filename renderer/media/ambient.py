"""An ambient pad made from nothing: the music bed ``audio.music=ambient`` asks for, so no audio is shipped.

A slow chord progression in a named key (``audio.ambient.key``, e.g. "D minor") changing every
``beats_per_chord`` beats at ``bpm``, played by soft additive voices: a sine with a little second and third
harmonic per note, a quieter copy on either side a few cents sharp and flat (a slow shimmer, spread across
the stereo field), a sine bass on the root and now and then a high "sparkle" on a chord tone. Consecutive
chords crossfade over seconds; every oscillator's phase is a function of its pitch and absolute time, so a
note two chords share carries straight through the change, and nothing starts or stops abruptly: no clicks.
The harmonics swell and fade with a slow "filter" movement, the whole pad breathes in time with the chords.

The script seeds everything (``seed``): the progression from a small set of common ones, its colour (triads,
added ninths or sevenths), register, sparkles and the movements' phases, so the same script always gets the
same bed, sample for sample, and another script another one. Everything it plays lies under 3 kHz, so it is
computed at ``SYNTH_RATE`` (cheap: a few hundred milliseconds for five minutes) and the soundtrack's
resampler takes it to the encode rate with the rest of the bed chain.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

AMBIENT = "ambient"  # the audio.music value that asks for the pad instead of a file
VERSION = "1"  # of the synthesis: in every pad's cache key (Bed), so a change re-renders those soundtracks only
SYNTH_RATE = 8000  # Hz: the highest partial (a sparkle's octave) stays under 2.7 kHz
PEAK = 0.5  # the pad's sample peak (-6 dBFS); the soundtrack sets its level by measured loudness anyway

NOTES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
ACCIDENTALS = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}
MODES = {"": False, "maj": False, "major": False, "m": True, "min": True, "minor": True}
_KEY = re.compile(r"^\s*([a-g])\s*([#♯b♭]?)\s*([a-z]*)\s*$", re.IGNORECASE)
SCALES = {False: (0, 2, 4, 5, 7, 9, 11), True: (0, 2, 3, 5, 7, 8, 10)}  # major, natural minor
ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii")
# a small set of progressions every listener knows, in roman numerals (upper case: a major chord)
PROGRESSIONS = {
    True: ("i VI III VII", "i iv VI V", "i VII VI VII", "i v VI iv", "i VI iv VII", "i III VII iv"),
    False: ("I V vi IV", "I vi IV V", "IV I V vi", "I IV vi V", "vi IV I V", "I iii IV V"),
}
COLOURS = ("triad", "add9", "seventh")
UPPER_VOICES = 4
UPPER_RANGE = (50, 77)  # MIDI: D3 up to E5
BASS_RANGE = (36, 48)  # MIDI: C2 up to (not including) C3
SPARKLE_RANGE = (76, 89)  # E5 .. E6
SPARKLE_CHANCE = 0.12  # per beat
SPARKLE_S = 4.0  # a sparkle's whole length: 80 ms rise, then a slow decay
DETUNE_CENTS = 5.0
SIDE_GAIN = 0.15  # of the detuned copies, against the note itself: a shimmer, not a tremolo
HARMONICS = (1.0, 0.32, 0.12)  # the voices' 1st, 2nd, 3rd harmonic at full brightness
BASS_GAIN = 0.55
SPARKLE_GAIN = 0.22
MAX_CROSSFADE_S = 3.0
MIN_CHORD_S = 1.0  # a chord held shorter than this is no pad
CHUNK = 1 << 18  # samples worked on at once where the whole pad would need a temporary copy
FADE_IN_S = 4.0
FADE_OUT_S = 6.0


class AmbientError(ValueError):
    """An ``audio.ambient`` setting the pad cannot play; the message names it and what to write instead."""


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class, C = 0
    minor: bool

    def chord(self, numeral: str) -> tuple[int, bool]:
        """The root (semitones above the tonic) and minor-ness of a roman-numeral chord of this key."""
        return SCALES[self.minor][ROMAN.index(numeral.lower())], numeral.islower()


def parse_key(text: str) -> Key:
    """'D minor', 'Dm', 'F# major', 'Bb min', 'C' (major) ..."""
    match = _KEY.match(str(text))
    if not match or match.group(3).lower() not in MODES:
        raise AmbientError(f"audio.ambient.key: {text!r} is not a key: write a note A-G, optionally # or b, then "
                           "major or minor (e.g. audio.ambient.key='D minor' or 'F# major')")
    note, accidental, mode = match.groups()
    return Key((NOTES[note.lower()] + ACCIDENTALS[accidental]) % 12, MODES[mode.lower()])


@dataclass(frozen=True)
class Pad:
    """What the pad is played in: the key, and how long each chord lasts."""

    key: Key
    bpm: float
    beats_per_chord: int

    @property
    def beat_s(self) -> float:
        return 60.0 / self.bpm

    @property
    def chord_s(self) -> float:
        return self.beats_per_chord * self.beat_s

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> Pad:
        """From the ``audio.ambient`` settings (key, bpm, beats_per_chord), checked."""
        key = parse_key(settings["key"])
        bpm, beats = settings["bpm"], settings["beats_per_chord"]
        if not bpm > 0:
            raise AmbientError(f"audio.ambient.bpm: {bpm} is not a tempo: give beats per minute above 0 (e.g. 60)")
        if not (beats >= 1 and int(beats) == beats):
            raise AmbientError(f"audio.ambient.beats_per_chord: {beats}: give a whole number of beats, 1 or more "
                               "(e.g. 8)")
        pad = cls(key, float(bpm), int(beats))
        if pad.chord_s < MIN_CHORD_S:
            raise AmbientError(f"audio.ambient: {beats} beats at {bpm} bpm change the chord every {pad.chord_s:.2f} s; "
                               f"a pad needs at least {MIN_CHORD_S:g} s a chord: lower audio.ambient.bpm or raise "
                               "audio.ambient.beats_per_chord")
        return pad


@dataclass(frozen=True)
class Bed:
    """The pad one script gets, as a soundtrack's data: its seed (the script's slug). What it is played in
    comes from the soundtrack's ``audio.ambient`` settings."""

    seed: str
    version: str = VERSION


def bed(settings: Mapping[str, Any], seed: str) -> Bed:
    """The pad for the script ``seed``, its ``audio.ambient`` settings checked, so a bad one stops the script
    before anything renders."""
    Pad.of(settings)
    return Bed(seed)


@dataclass(frozen=True)
class _Plan:
    """What the seed chose."""

    progression: tuple[tuple[int, bool], ...]  # (root above the tonic, minor) per chord of the loop
    colour: str
    centre: int  # MIDI note the first voicing centres on
    phases: tuple[float, float]  # of the breathing and of the brightness movement


def _plan(pad: Pad, seed: str) -> _Plan:
    rng = random.Random(f"ambient:{seed}")
    progressions = PROGRESSIONS[pad.key.minor]
    numerals = progressions[int(rng.random() * len(progressions))].split()
    colour = COLOURS[int(rng.random() * len(COLOURS))]
    centre = 60 + int(rng.random() * 6)
    return _Plan(tuple(pad.key.chord(n) for n in numerals), colour, centre,
                 (rng.random() * 2 * math.pi, rng.random() * 2 * math.pi))


def _pitch_classes(key: Key, root: int, minor: bool, colour: str) -> tuple[int, ...]:
    """The chord's pitch classes: its triad, and with the colour an added ninth or a seventh where the key has
    one (a dominant gets its flat seventh, a chord on the tonic of a major key its major seventh)."""
    tones = [root, root + (3 if minor else 4), root + 7]
    for extra in {"add9": (2,), "seventh": (10, 11)}.get(colour, ()):
        if (root + extra) % 12 in SCALES[key.minor]:
            tones.append(root + extra)
            break
    return tuple((key.tonic + t) % 12 for t in tones)


def _voicings(classes: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every 4-note voicing of the chord in the pad's register with each chord tone in it, no two notes closer than
    a whole tone and no wider than two octaves; a colour tone that fits no such voicing is left out."""
    pitches = [m for m in range(*UPPER_RANGE) if m % 12 in classes]
    voicings = [v for v in itertools.combinations(pitches, UPPER_VOICES)
                if {m % 12 for m in v} == set(classes) and min(b - a for a, b in zip(v, v[1:])) >= 2
                and v[-1] - v[0] <= 24]
    return voicings or _voicings(classes[:3])


def _voice_led(plan: _Plan, key: Key, chords: int) -> list[tuple[int, ...]]:
    """Upper voices for each chord, each moving as little as it can from the chord before."""
    out: list[tuple[int, ...]] = []
    for i in range(chords):
        root, minor = plan.progression[i % len(plan.progression)]
        candidates = _voicings(_pitch_classes(key, root, minor, plan.colour))
        if out:
            prev = out[-1]
            out.append(min(candidates, key=lambda v: (sum(abs(a - b) for a, b in zip(v, prev)), v)))
        else:
            out.append(min(candidates, key=lambda v: (abs(sum(v) / len(v) - plan.centre), v[-1] - v[0], v)))
    return out


def _bass(key: Key, root: int) -> int:
    return next(m for m in range(*BASS_RANGE) if m % 12 == (key.tonic + root) % 12)


def _freq(midi: float) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def _phase(midi: float) -> float:
    """A fixed starting phase (in cycles) per pitch (or partial): the same note in two chords is one continuous
    wave."""
    return (midi * 0.6180339887) % 1.0


def _oscillators(voicing: tuple[int, ...], bass: int, stereo: bool) -> tuple[np.ndarray, ...]:
    """Frequencies, start phases, harmonic number and per-channel gains of one chord's oscillators."""
    freqs, phases, harmonic, gains = [], [], [], []
    level = 1.0 / math.sqrt(len(voicing))

    def add(midi: float, number: int, gain: float, pan: float) -> None:
        freqs.append(_freq(midi) * number)
        phases.append(_phase(midi * number))
        harmonic.append(number)
        gains.append(tuple(gain * side for side in _pan(pan, stereo)))

    for i, midi in enumerate(voicing):
        pan = (i / (len(voicing) - 1) - 0.5) * 0.8  # the voices spread from -0.4 to 0.4
        for number in (1, 2, 3):
            add(midi, number, level, pan)
        add(midi - DETUNE_CENTS / 100, 1, level * SIDE_GAIN, -0.7)
        add(midi + DETUNE_CENTS / 100, 1, level * SIDE_GAIN, 0.7)
    add(bass, 1, BASS_GAIN, 0.0)
    add(bass, 2, BASS_GAIN * 0.4, 0.0)
    return np.array(freqs), np.array(phases), np.array(harmonic), np.array(gains).T


def _ramp(n: int) -> np.ndarray:
    """0 to 1 over ``n`` samples, raised cosine."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / max(n, 1))).astype(np.float32)


BLOCK = 256  # samples: sines over a block are the same sines shifted (see _sines)
BLOCKS_PER_PRODUCT = 16  # small matrix products: BLAS runs them on this thread, where a busy machine's cores
# make its worker threads cost several times what they give


def _sines(freqs: np.ndarray, phases: np.ndarray, gains: np.ndarray, start: int, n: int, rate: int) -> np.ndarray:
    """Σ gains[:, o] · sin 2π(phases[o] + freqs[o]·t) over samples ``start`` .. ``start + n``, per channel
    (``gains`` is channels × oscillators). By angle addition, sin(a_j + b_k) = sin a_j cos b_k + cos a_j sin b_k
    for block j and offset k in it: one matrix product instead of a sine per sample and oscillator. Phases are
    counted in float64 cycles, so a wave minutes long keeps its exact phase."""
    blocks = -(-n // (BLOCK * BLOCKS_PER_PRODUCT)) * BLOCKS_PER_PRODUCT
    step = freqs / rate
    at_block = (phases[:, None] + step[:, None] * (start + BLOCK * np.arange(blocks))) % 1.0 * (2 * np.pi)
    within = (step[:, None] * np.arange(BLOCK)) % 1.0 * (2 * np.pi)
    gains = gains.astype(np.float32)[:, None, :]
    left = np.concatenate([gains * np.sin(at_block).T.astype(np.float32),
                           gains * np.cos(at_block).T.astype(np.float32)], axis=2)
    right = np.concatenate([np.cos(within), np.sin(within)]).astype(np.float32)
    products = left.reshape(-1, BLOCKS_PER_PRODUCT, left.shape[2]) @ right
    return products.reshape(len(gains), blocks * BLOCK)[:, :n]


def _lfo(start: int, n: int, rate: int, period_s: float, phase: float, centre: float, depth: float) -> np.ndarray:
    """A slow sine movement over samples ``start`` .. ``start + n``: ``centre`` ± ``depth``."""
    t = (start + np.arange(n)) / rate
    return (centre + depth * np.sin(2 * np.pi * t / period_s + phase)).astype(np.float32)


def synthesise(seed: str, duration: float, pad: Pad, *, channels: int = 1, rate: int = SYNTH_RATE) -> np.ndarray:
    """The pad for ``seed``: ``duration`` seconds at ``rate``, shape (samples, channels), float32, peak ``PEAK``.
    Its memory is the result's and one chord's: an hour of stereo takes about 250 MB."""
    total = max(1, math.ceil(duration * rate))
    stereo = channels > 1
    out = np.zeros((total, 2 if stereo else 1), dtype=np.float32)
    plan = _plan(pad, seed)
    chord_n = max(1, int(round(pad.beat_s * rate))) * pad.beats_per_chord
    fade = min(int(MAX_CROSSFADE_S * rate), int(0.45 * chord_n)) // 2 * 2
    chords = max(1, -(-(total - fade // 2) // chord_n))  # the last change has room for its whole crossfade
    for i, voicing in enumerate(_voice_led(plan, pad.key, chords)):
        start = max(0, i * chord_n - fade // 2)
        end = min(total, (i + 1) * chord_n + fade // 2)
        freqs, phases, harmonic, gains = _oscillators(voicing, _bass(pad.key, plan.progression[i % len(
            plan.progression)][0]), stereo)
        bright = _lfo(start, end - start, rate, pad.chord_s * 3, plan.phases[1], 0.55, 0.45)  # the "filter" moving
        chord = _sines(freqs[harmonic == 1], phases[harmonic == 1], gains[:, harmonic == 1], start, end - start, rate)
        for number, weight in ((2, HARMONICS[1] * bright), (3, HARMONICS[2] * bright * bright)):
            these = harmonic == number
            chord += _sines(freqs[these], phases[these], gains[:, these], start, end - start, rate) * weight
        if i > 0:  # fades in as the chord before fades out: their gains sum to 1
            chord[:, :fade] *= _ramp(fade)
        if i < chords - 1:
            chord[:, -fade:] *= _ramp(fade)[::-1]
        out[start:end] += chord.T
    _sparkle(out, pad, plan, seed, rate)
    for start in range(0, total, CHUNK):  # breathing with the chords
        out[start:start + CHUNK] *= _lfo(start, min(CHUNK, total - start), rate, pad.chord_s * 4, plan.phases[0],
                                         1.0, 0.12)[:, None]
    _fade(out, rate)
    peak = max(float(out.max()), -float(out.min()))
    if peak > 0:
        out *= PEAK / peak
    return out


def _pan(pan: float, stereo: bool) -> tuple[float, ...]:
    """Equal-power gains of a source at ``pan`` (-1 left .. 1 right)."""
    angle = (pan + 1) * math.pi / 4
    return (math.cos(angle), math.sin(angle)) if stereo else (1.0,)


def _sparkle(out: np.ndarray, pad: Pad, plan: _Plan, seed: str, rate: int) -> None:
    """Now and then, on a beat, a soft high note of the chord sounding then, dying away over a few seconds."""
    rng = random.Random(f"sparkle:{seed}")
    total = len(out)
    length = int(SPARKLE_S * rate)
    envelope = np.exp(-np.arange(length) / (1.1 * rate)).astype(np.float32)
    envelope[:int(0.08 * rate)] *= _ramp(int(0.08 * rate))
    envelope[-int(0.5 * rate):] *= _ramp(int(0.5 * rate))[::-1]
    beat_n = max(1, int(round(pad.beat_s * rate)))
    chord_n = beat_n * pad.beats_per_chord
    for start in range(0, total, beat_n):
        if rng.random() >= SPARKLE_CHANCE:
            continue
        n = min(length, total - start)
        root, minor = plan.progression[(start // chord_n) % len(plan.progression)]
        classes = _pitch_classes(pad.key, root, minor, plan.colour)
        choices = [m for m in range(*SPARKLE_RANGE) if m % 12 in classes]
        midi = choices[int(rng.random() * len(choices))]
        side = np.array(_pan(rng.random() * 1.2 - 0.6, out.shape[1] > 1))
        gains = SPARKLE_GAIN * np.stack([side, 0.2 * side], axis=1)
        out[start:start + n] += (_sines(np.array([_freq(midi), 2 * _freq(midi)]),
                                        np.array([_phase(midi), _phase(midi + 12)]), gains, start, n,
                                        rate) * envelope[:n]).T


def _fade(out: np.ndarray, rate: int) -> None:
    total = len(out)
    fade_in = min(int(FADE_IN_S * rate), total // 4)
    fade_out = min(int(FADE_OUT_S * rate), total // 3)
    if fade_in:
        out[:fade_in] *= _ramp(fade_in)[:, None]
    if fade_out:
        out[total - fade_out:] *= _ramp(fade_out)[::-1, None]


def write_wav(samples: np.ndarray, rate: int, path: Path) -> Path:
    """``samples`` (samples, channels; within ±1) as 16-bit PCM WAV, a chunk at a time."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(samples.shape[1])
        out.setsampwidth(2)
        out.setframerate(rate)
        for start in range(0, len(samples), CHUNK):
            out.writeframes(np.round(np.clip(samples[start:start + CHUNK], -1.0, 1.0) * 32767).astype("<i2").tobytes())
    return path
