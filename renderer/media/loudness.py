"""Loudness that composes: a clip's ITU-R BS.1770 (EBU R128) measurements, taken once when the clip is made,
from which a programme's integrated loudness is worked out wherever its clips are placed, without measuring
the programme.

A clip keeps the K-weighted mean square of every ``STEP_S`` of its samples (``Loudness.energies``) and its
true peak. Placed on a timeline (an offset, a cut, a fade out), its steps add into the programme's (the clips
never overlap, so energies add); the programme's 400 ms gating blocks, overlapping by 75 %, are formed from
those steps and gated as BS.1770-4 says (absolute -70 LUFS, then relative -10 LU). Samples are measured at
``RATE`` (the soundtrack's usual rate: the filters are BS.1770's own coefficients) as one channel: a mono clip
upmixed to stereo keeps its loudness (each channel at -3 dB).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renderer.media import ffmpeg

RATE = 48000
STEP_S = 0.01  # the resolution clips are measured and placed at
BLOCK_STEPS = 40  # a gating block: 400 ms
HOP_STEPS = 10  # blocks start every 100 ms (75 % overlap)
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
SILENT_LUFS = -70.0  # what a programme with no block above the absolute gate measures (as ebur128 says)
OVERSAMPLING = 4  # for the true peak
# BS.1770-4 K-weighting at 48 kHz: the head's high shelf, then the RLB high-pass (b, a)
K_WEIGHTING = (([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585]),
               ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621]))
TAIL_S = 1.0  # what the filters ring on for, appended as silence so the FFT's wrap-around never reaches the clip


@dataclass(frozen=True)
class Loudness:
    """A clip's measurements: the K-weighted mean square of every ``STEP_S`` of it, and its true peak (dBTP;
    -inf for silence)."""

    energies: tuple[float, ...]
    true_peak_db: float

    @property
    def lufs(self) -> float:
        """The clip's own integrated loudness."""
        return integrated(np.asarray(self.energies))


@dataclass(frozen=True)
class Placement:
    """A clip on the programme's timeline: from ``start`` (seconds) until ``end``, where it is cut; faded out
    linearly over the ``fade_s`` before ``end`` (0: it ends of itself before)."""

    loudness: Loudness
    start: float
    end: float
    fade_s: float = 0.0


def measure(samples: np.ndarray, *, peak: bool = True) -> Loudness:
    """The measurements of mono ``samples`` at ``RATE`` (without ``peak``: the energies only)."""
    if not len(samples):
        return Loudness((), -math.inf)
    x = samples.astype(np.float64)
    n = 1 << (len(x) + int(TAIL_S * RATE) - 1).bit_length()  # a power of two: the FFT's fast size
    spectrum = np.fft.rfft(x, n)
    z = np.exp(-2j * np.pi * np.arange(n // 2 + 1) / n)  # z^-1 at every bin
    weighted = spectrum.copy()
    for b, a in K_WEIGHTING:  # an IIR filter's response, applied in the frequency domain
        weighted *= np.polyval(b[::-1], z) / np.polyval(a[::-1], z)
    y = np.fft.irfft(weighted, n)[:len(x)]
    step = int(round(STEP_S * RATE))
    steps = -(-len(y) // step)
    squares = np.zeros(steps * step)
    squares[:len(y)] = y * y
    energies = squares.reshape(steps, step).mean(axis=1)
    top = 0.0
    if peak:
        up = np.fft.irfft(spectrum, n * OVERSAMPLING) * OVERSAMPLING  # band-limited interpolation
        top = float(np.max(np.abs(up[:len(x) * OVERSAMPLING])))
    return Loudness(tuple(float(e) for e in energies), 20 * math.log10(top) if top > 0 else -math.inf)


def decode(path: Path, workdir: Path, *, timeout: float) -> np.ndarray:
    """A file's audio as mono float samples at ``RATE`` (through a raw file in ``workdir``, removed after)."""
    raw = workdir / f"loudness-{uuid.uuid4().hex[:12]}.f32"
    try:
        ffmpeg.run(["-i", str(path), "-vn", "-ac", "1", "-ar", str(RATE), "-f", "f32le", str(raw)], timeout=timeout)
        return np.fromfile(raw, dtype="<f4")
    finally:
        raw.unlink(missing_ok=True)


def of_file(path: Path, workdir: Path, *, timeout: float) -> Loudness:
    return measure(decode(path, workdir, timeout=timeout))


def _lufs(mean_square: np.ndarray | float) -> np.ndarray | float:
    return -0.691 + 10 * np.log10(np.maximum(mean_square, 1e-20))


def integrated(energies: np.ndarray) -> float:
    """The gated integrated loudness (LUFS) of a programme given as the energies of its steps."""
    if len(energies) < BLOCK_STEPS:
        energies = np.concatenate([energies, np.zeros(BLOCK_STEPS - len(energies))])
    sums = np.concatenate([[0.0], np.cumsum(energies)])
    starts = np.arange(0, len(energies) - BLOCK_STEPS + 1, HOP_STEPS)
    blocks = (sums[starts + BLOCK_STEPS] - sums[starts]) / BLOCK_STEPS
    loud = blocks[_lufs(blocks) > ABSOLUTE_GATE_LUFS]
    if not len(loud):
        return SILENT_LUFS
    relative = _lufs(loud.mean()) + RELATIVE_GATE_LU
    gated = loud[_lufs(loud) > relative]
    return float(_lufs(gated.mean()))


def programme(placements: list[Placement], duration: float) -> np.ndarray:
    """The energies of every step of a programme ``duration`` long with ``placements`` on it."""
    total = np.zeros(int(math.ceil(duration / STEP_S - 1e-9)))
    for p in placements:
        first = int(round(p.start / STEP_S))
        energies = np.asarray(p.loudness.energies)
        count = max(0, min(len(energies), int(round(p.end / STEP_S)) - first, len(total) - first))
        if count <= 0:
            continue
        part = energies[:count].copy()
        if p.fade_s > 0:  # a linear fade of the amplitude: the energy by its square, at each step's middle
            t = (first + np.arange(count) + 0.5) * STEP_S
            part *= np.clip((p.end - t) / p.fade_s, 0.0, 1.0) ** 2
        total[first:first + count] += part
    return total


def true_peak_db(placements: list[Placement]) -> float:
    """The programme's true peak before any gain: its loudest clip's (a fade or a cut only lowers it)."""
    return max((p.loudness.true_peak_db for p in placements), default=-math.inf)
