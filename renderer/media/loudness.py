"""Loudness that composes: a clip's ITU-R BS.1770 (EBU R128) measurements, taken once when the clip is made,
from which a programme's integrated loudness is worked out wherever its clips are placed, without measuring
the programme.

A clip keeps the K-weighted mean square of every ``STEP_S`` of its samples (``Loudness.energies``) and its
true peak. Placed on a timeline (an offset, a cut, a fade out), its steps add into the programme's (the clips
never overlap, so energies add); the programme's 400 ms gating blocks, overlapping by 75 %, are formed from
those steps and gated as BS.1770-4 says (absolute -70 LUFS, then relative -10 LU). A clip is measured at
``RATE`` (the soundtrack's usual rate: the filters are BS.1770's own coefficients, run by ffmpeg's biquad in
double precision, the true peak by its ebur128 meter) as one channel: a mono clip upmixed to stereo keeps
its loudness (each channel at -3 dB).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renderer.media import ffmpeg

RATE = 48000
MONO = f"aresample={RATE},aformat=sample_fmts=flt:channel_layouts=mono"  # what a clip is measured as
STEP_S = 0.01  # the resolution clips are measured and placed at
READ_STEPS = 500  # a measurement is read this many steps at a time (5 s: 1.9 MB of samples)
BLOCK_STEPS = 40  # a gating block: 400 ms
HOP_STEPS = 10  # blocks start every 100 ms (75 % overlap)
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
SILENT_LUFS = -70.0  # what a programme with no block above the absolute gate measures (as ebur128 says)
# BS.1770-4 K-weighting at 48 kHz: the head's high shelf, then the RLB high-pass
K_WEIGHTING = ("biquad=b0=1.53512485958697:b1=-2.69169618940638:b2=1.19839281085285:"
               "a0=1:a1=-1.69065929318241:a2=0.73248077421585,"
               "biquad=b0=1:b1=-2:b2=1:a0=1:a1=-1.99004745483398:a2=0.99007225036621")


@dataclass(frozen=True)
class Loudness:
    """A clip's measurements: the K-weighted mean square of every ``STEP_S`` of it, and its true peak (dBTP;
    -inf for silence, or when not measured)."""

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


@dataclass(frozen=True)
class Analysis:
    """The filter graph lines and outputs that measure a mono stream at ``RATE`` in some ffmpeg run (files
    named ``stem``.* in the run's working folder, read and removed by ``result``)."""

    graph: list[str]
    outputs: list[str]
    workdir: Path
    stem: str
    peak: bool

    def result(self) -> Loudness:
        weighted, peaks = self.workdir / f"{self.stem}.k64", self.workdir / f"{self.stem}.peak"
        try:
            energies = _steps(weighted)
            top = 0.0
            if self.peak:
                top = max((float(line.split("=", 1)[1]) for line in peaks.read_text(encoding="utf-8").splitlines()
                           if line.startswith("lavfi.r128.true_peak=")), default=0.0)
            return Loudness(energies, 20 * math.log10(top) if top > 0 else -math.inf)
        finally:
            weighted.unlink(missing_ok=True)
            peaks.unlink(missing_ok=True)


def analysis(source: str, workdir: Path, *, peak: bool = True) -> Analysis:
    """What measures ``[source]`` (a mono stream at ``RATE``) in an ffmpeg run working in ``workdir``: its
    K-weighted samples written out (their squares averaged here), its true peak by ebur128 (with ``peak``)."""
    stem = f"loudness-{uuid.uuid4().hex[:12]}"
    graph = [f"[{source}]asplit=2[{stem}k][{stem}p]" if peak else f"[{source}]anull[{stem}k]",
             f"[{stem}k]aformat=sample_fmts=dbl,{K_WEIGHTING}[{stem}kw]"]
    outputs = ["-map", f"[{stem}kw]", "-f", "f64le", f"{stem}.k64"]
    if peak:
        graph.append(f"[{stem}p]ebur128=peak=true:metadata=1,ametadata=mode=print:key=lavfi.r128.true_peak:"
                     f"file={stem}.peak[{stem}pk]")
        outputs += ["-map", f"[{stem}pk]", "-f", "null", "-"]
    return Analysis(graph, outputs, workdir, stem, peak)


def _steps(weighted: Path) -> tuple[float, ...]:
    """The mean square of every ``STEP_S`` of the K-weighted samples in ``weighted`` (float64; the last step
    padded with silence), read ``READ_STEPS`` steps at a time: a clip's length costs no memory."""
    step = int(round(STEP_S * RATE))
    energies: list[float] = []
    with open(weighted, "rb") as file:
        while (block := np.fromfile(file, dtype="<f8", count=READ_STEPS * step)).size:
            steps = -(-block.size // step)
            if block.size < steps * step:  # the file's end
                block = np.concatenate([block, np.zeros(steps * step - block.size)])
            energies += np.square(block).reshape(steps, step).mean(axis=1).tolist()
    return tuple(energies)


def of_file(path: Path, workdir: Path, *, timeout: float, peak: bool = True) -> Loudness:
    """The measurements of a file's audio (as one channel at ``RATE``), in one ffmpeg run."""
    measuring = analysis("mono", workdir, peak=peak)
    ffmpeg.run(["-i", str(path.resolve()), "-filter_complex", ";".join([f"[0:a]{MONO}[mono]", *measuring.graph]),
                *measuring.outputs], timeout=timeout, cwd=workdir)
    return measuring.result()


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
