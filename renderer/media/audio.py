"""Soundtrack sound: loudness measured with ffmpeg's EBU R128 meter, and the music bed that ducks under speech.

Loudness is measured and applied as a gain: the narration is set to the target (and compressed, as a voice
is for broadcast), the bed to its level below it. A look-ahead limiter keeps the peaks under the true-peak
ceiling (its limit sits 1 dB lower, for the overs between samples); what it takes off is measured on the
finished mix and given back before it, until the mix is within a fraction of a LU of the target. The encoded
file's true peak is measured too: where the AAC encode overshot the ceiling, the limit comes down by as much
and the track is made again. So every video of a batch lands on the target, whichever voices spoke it.
"""

from __future__ import annotations

import hashlib
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from renderer.media import ffmpeg, loudness
from renderer.media.ambient import AMBIENT

MUSIC_EXTENSIONS = (".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma")
MIN_THRESHOLD = 0.000977  # acompressor's and sidechaincompress' lowest threshold (-60 dBFS)
VOICE_PEAK_LU = 10.0  # a voice's (sample) peaks are limited to this far above its loudness
VOICE_LIMIT_LUFS = -20.0  # the level a voice is limited at
VOICE_PEAK_MAX_DB = -1.0  # and no voice's peaks go over this
SILENT_LUFS = -69.0  # ebur128 reports -70 for silence: nothing to set a level from
PEAK_MARGIN_DB = 1.0  # the limiter's ceiling below the true-peak target
FADE_IN_S = 1.5
FADE_OUT_S = 3.0
DUCK_RATIO = 20.0  # sidechaincompress' steepest: the bed drops by ~(level - threshold) under speech
SPEECH_RMS_BELOW_LUFS = 3.0  # narration at L LUFS runs at about L - 3 dBFS RMS
DUCK_ATTACK_MS = 30
DUCK_RELEASE_MS = 600  # the bed stays down through the pauses between words
SETTLED_LU = 0.3  # the limited mix is this close to the target
MAX_SETTLE_PASSES = 4
MAX_PEAK_PASSES = 3  # encodes of one soundtrack, each with the limit lowered by the overshoot of the last


class MusicError(ValueError):
    """``audio.music`` names nothing playable; the message says which file and what to do."""


@dataclass(frozen=True)
class Music:
    """The bed one script gets: its file, and what identifies that file's content for the cache key."""

    path: Path
    size: int
    mtime_ns: int


def _playable(path: Path, timeout: float) -> Music:
    try:
        stat = path.stat()
        info = ffmpeg.probe(path, timeout=timeout)
    except (OSError, ffmpeg.FFmpegError) as exc:
        raise MusicError(f"audio.music: cannot read {path} ({ffmpeg_reason(exc)}): give a playable audio file "
                         "or folder, or audio.music='' for none") from None
    if info.first("audio") is None:
        raise MusicError(f"audio.music: {path} has no audio stream: give an audio file (mp3, wav, flac, ogg ...)")
    return Music(path.resolve(), stat.st_size, stat.st_mtime_ns)


def ffmpeg_reason(exc: Exception) -> str:
    lines = (getattr(exc, "stderr_tail", "") or str(exc)).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__


def pick_music(setting: str, seed: str, *, timeout: float = 30.0) -> Music | None:
    """The bed for the script ``seed`` names: the file ``setting`` names, or one of the audio files of the
    folder it names, chosen by the seed (the same script always gets the same file). Checked to be playable,
    so a bad setting stops the script before anything renders."""
    if not setting:
        return None
    path = Path(setting).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MUSIC_EXTENSIONS)
        if not files:
            raise MusicError(f"audio.music: the folder {path} holds no audio files ({', '.join(MUSIC_EXTENSIONS)})")
        path = files[int(hashlib.sha256(seed.encode()).hexdigest(), 16) % len(files)]
    elif not path.exists():
        raise MusicError(f"audio.music: {path} does not exist: give a music file or folder, or audio.music='' for none")
    elif not path.is_file():  # a FIFO or device would block the read (a folder's pick skips them already)
        raise MusicError(f"audio.music: {path} is not a regular file (a FIFO, device or socket): give a music "
                         "file or folder, or audio.music='' for none")
    return _playable(path, timeout)


def bed_chain(src: int, duration: float, rate: int, layout: str, gain_db: float, out: str) -> str:
    """The music looped (its input has -stream_loop -1) or cut to ``duration``, at ``gain_db``, faded in and out."""
    fade_in = min(FADE_IN_S, duration / 4)
    fade_out = min(FADE_OUT_S, duration / 3)
    return (f"[{src}:a]aresample={rate},aformat=sample_fmts=fltp:channel_layouts={layout},"
            f"atrim=duration={duration:.6f},asetpts=PTS-STARTPTS,volume={gain_db:.3f}dB,"
            f"afade=t=in:st=0:d={fade_in:.3f},afade=t=out:st={duration - fade_out:.6f}:d={fade_out:.3f}[{out}]")


def duck(bed: str, voice: str, out: str, *, loudness_lufs: float, duck_db: float) -> str:
    """``bed`` pushed down about ``duck_db`` while ``voice`` (already at ``loudness_lufs``) speaks, and mixed
    with it. The threshold sits below the voice's level by what the ratio turns into ``duck_db`` of cut."""
    threshold_db = loudness_lufs - SPEECH_RMS_BELOW_LUFS - duck_db / (1 - 1 / DUCK_RATIO)
    threshold = max(MIN_THRESHOLD, 10 ** (threshold_db / 20))
    return (f"[{voice}]asplit=2[{voice}_m][{voice}_sc];"
            f"[{bed}][{voice}_sc]sidechaincompress=threshold={threshold:.6f}:ratio={DUCK_RATIO}:"
            f"attack={DUCK_ATTACK_MS}:release={DUCK_RELEASE_MS}:detection=rms[{bed}_ducked];"
            f"[{voice}_m][{bed}_ducked]amix=inputs=2:duration=first:normalize=0[{out}]")


def voice_compressor(loudness_lufs: float) -> str:
    """A fast compressor for a voice at ``loudness_lufs`` (its threshold relative to that level, so it shapes
    the voice alike at any level and leaves the level to a gain later): the loudest syllables come down, and
    the voice sits evenly over the music."""
    threshold = max(MIN_THRESHOLD, 10 ** ((loudness_lufs + 2) / 20))
    return f"acompressor=threshold={threshold:.6f}:ratio=4:attack=2:release=60:knee=2"


def voice_limiter(loudness_lufs: float) -> str:
    """A look-ahead limiter holding a voice at ``loudness_lufs`` to peaks ``VOICE_PEAK_LU`` above it, so the
    soundtrack's limiter has nothing to do at the usual targets (hard limiting there makes the AAC encode
    overshoot the ceiling, and would take loudness off that no clip's measurements foresee). The voice is
    limited at ``VOICE_LIMIT_LUFS`` and given its level back (the limiter's range ends at -24 dBFS); a voice so
    loud that would put its peaks over ``VOICE_PEAK_MAX_DB`` is limited there (its file holds 16-bit samples)."""
    level = max(loudness_lufs, SILENT_LUFS)
    lift = VOICE_LIMIT_LUFS - level
    limit = 10 ** ((VOICE_LIMIT_LUFS + min(VOICE_PEAK_LU, VOICE_PEAK_MAX_DB - level)) / 20)
    return (f"volume={lift:.3f}dB,alimiter=limit={max(0.0625, limit):.6f}:level=false:latency=true:attack=5:release=80,"
            f"volume={-lift:.3f}dB")


def level_voice(path: Path, out: Path, workdir: Path, *, timeout: float) -> loudness.Loudness:
    """Shape the narration clip at ``path`` (``voice_compressor`` then ``voice_limiter``, each at the level the
    voice has there; one channel at ``loudness.RATE``) into ``out``, and return its measurements, taken once here
    so that a soundtrack of any clips is set to its target without measuring it (renderer/media/loudness.py)."""
    stem = workdir / f"voiced-{uuid.uuid4().hex[:12]}"
    compressed, shaped = stem.with_suffix(".f32"), stem.with_suffix(".wav")
    pcm = ["-f", "f32le", "-ar", str(loudness.RATE), "-ac", "1"]
    try:
        level = loudness.of_file(path, workdir, timeout=timeout, peak=False).lufs
        measuring = loudness.analysis("c", workdir, peak=False)
        ffmpeg.run(["-i", str(path.resolve()), "-filter_complex",
                    ";".join([f"[0:a]{loudness.MONO},{voice_compressor(level)},asplit=2[compressed][c]",
                              *measuring.graph]),
                    "-map", "[compressed]", *pcm, compressed.name, *measuring.outputs], timeout=timeout, cwd=workdir)
        measuring, level = loudness.analysis("s", workdir), measuring.result().lufs
        ffmpeg.run([*pcm, "-i", compressed.name, "-filter_complex",
                    ";".join([f"[0:a]{voice_limiter(level)},asplit=2[shaped][s]", *measuring.graph]),
                    "-map", "[shaped]", "-c:a", "pcm_s16le", "-f", "wav", shaped.name, *measuring.outputs],
                   timeout=timeout, cwd=workdir)
        measured = measuring.result()
        os.replace(shaped, out)
        return measured
    finally:
        compressed.unlink(missing_ok=True)
        shaped.unlink(missing_ok=True)


def settle(level_with: Callable[[float], float], target: float) -> float:
    """The correction (dB, before the limiter) that brings the limited mix to ``target``: the limiter takes
    more off the louder the mix, so it is measured and corrected again until within ``SETTLED_LU``."""
    correction = 0.0
    for _ in range(MAX_SETTLE_PASSES):
        error = gain_to(target, level_with(correction))
        if abs(error) <= SETTLED_LU:
            break
        correction += error
    return correction


def limiter(ceiling_db: float) -> str:
    """A look-ahead limiter holding sample peaks at ``ceiling_db`` less the margin for inter-sample peaks."""
    limit = max(0.0625, min(1.0, 10 ** ((ceiling_db - PEAK_MARGIN_DB) / 20)))
    return f"alimiter=limit={limit:.6f}:level=false:latency=true:attack=5:release=80"


def measure(args: list[str], graph: list[str], label: str, workdir: Path, stem: str, *, timeout: float) -> float:
    """Integrated loudness (LUFS) of ``label`` in the filter graph ``graph`` over inputs ``args``."""
    script = workdir / f"{stem}.filter"
    stats = workdir / f"{stem}.r128"
    script.write_text(";\n".join([*graph, f"[{label}]ebur128=metadata=1,ametadata=mode=print:key=lavfi.r128.I:"
                                          f"file={stats.name}[measured]"]) + "\n", encoding="utf-8")
    ffmpeg.run([*args, *ffmpeg.graph_file(script.name), "-map", "[measured]", "-f", "null", "-"],
               timeout=timeout, cwd=workdir)
    return loudness_of(stats.read_text(encoding="utf-8"))


def true_peak_db(path: Path, workdir: Path, stem: str, *, timeout: float) -> float:
    """The true peak (dBTP) of an encoded file's audio: the AAC encode can overshoot what the limiter let by."""
    stats = workdir / f"{stem}.peak"
    ffmpeg.run(["-i", str(path), "-vn", "-af", f"ebur128=metadata=1:peak=true,ametadata=mode=print:"
                f"key=lavfi.r128.true_peak:file={stats.name}", "-f", "null", "-"], timeout=timeout, cwd=workdir)
    values = [float(line.split("=", 1)[1]) for line in stats.read_text(encoding="utf-8").splitlines()
              if line.startswith("lavfi.r128.true_peak=")]
    peak = max(values, default=0.0)
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def loudness_of(stats: str) -> float:
    """The last integrated-loudness reading of an ebur128 metadata print (the whole programme's)."""
    values = [line.split("=", 1)[1] for line in stats.splitlines() if line.startswith("lavfi.r128.I=")]
    return float(values[-1]) if values else -70.0


def gain_to(target: float, measured: float) -> float:
    """dB that take ``measured`` LUFS to ``target``; none for silence."""
    return 0.0 if measured <= SILENT_LUFS else target - measured


def reads(cfg: Any) -> tuple[str, ...]:
    """The ``audio`` settings a soundtrack depends on: the bed's only when there is one, the pad's only when it
    is the bed."""
    out = ["audio.loudness_lufs", "audio.true_peak_db"]
    if cfg.audio.music:
        out += ["audio.music", "audio.music_db", "audio.duck_db"]
    if cfg.audio.music == AMBIENT:
        out.append("audio.ambient")
    return tuple(out)
