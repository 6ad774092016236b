"""Which encoder makes a video's picture (``encode.codec``, ``encode.hw``), and with what options.

Every segment of a video (each scene's chunks, each cut's transition window) is a file of its own, joined to
the others by stream copy; that works only when all of them carry the same codec parameters (profile, level,
size, pixel format: the same SPS/PPS, VPS or AV1 sequence header) and the same timebase, and each starts on a
frame a decoder can start from. So the encoder is chosen once per script, before anything is encoded, and
every segment gets exactly the same options from ``video_args``; the ``Encoder`` that does the work is in every
segment's cache key, so switching codec encodes again, and an output is keyed by what made it rather than by
what was asked for (a fallback's segments are the software encoder's, and share its cache entries).

A hardware encoder (``encode.hw``) is tried for real, once per machine: a few frames through it with the
options a segment gets (at a middling speed and quality: the trial asks whether it starts). The answer is kept
for the process and in the user's cache dir (``$XDG_CACHE_HOME/renderer/encoders.json``, tool_notes.py),
keyed by host and by the ffmpeg binary (path, size, mtime); a failed trial is tried again after
``RETRY_FAILED_S``. One that cannot start falls back to the codec's software encoder, and ``resolve`` says why
(the script's record gets it as a warning and a fallback). Software encoders are tried the same way, so a
build without libx265 or libsvtav1 stops the script with the fix before anything is encoded.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from renderer.media import ffmpeg, tool_notes
from renderer.media.encoding import failure_reason

CODECS = ("h264", "hevc", "av1")
HW = ("none", "auto", "nvenc", "qsv", "vaapi", "videotoolbox")
SOFTWARE = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}
HARDWARE = {  # (codec, hw) -> ffmpeg's encoder; av1 in hardware needs a newer ffmpeg than 5.1 (and the chip)
    **{(c, "nvenc"): f"{c}_nvenc" for c in CODECS},
    **{(c, "qsv"): f"{c}_qsv" for c in CODECS},
    **{(c, "vaapi"): f"{c}_vaapi" for c in CODECS},
    ("h264", "videotoolbox"): "h264_videotoolbox", ("hevc", "videotoolbox"): "hevc_videotoolbox",
}
AUTO = {"darwin": ("videotoolbox",)}  # what encode.hw=auto tries, by platform; others: AUTO_OTHER
AUTO_OTHER = ("nvenc", "qsv", "vaapi")
VAAPI_DEVICE = "/dev/dri/renderD128"
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
           "placebo")  # x264's names, which encode.preset uses; the other encoders' own scales are mapped from them
SVT_PRESET = dict(zip(PRESETS, (12, 11, 10, 9, 8, 7, 5, 4, 2, 1)))  # SVT-AV1: 0 slowest .. 13 fastest
NVENC_PRESET = dict(zip(PRESETS, ("p1", "p1", "p2", "p3", "p4", "p4", "p5", "p6", "p7", "p7")))
QSV_PRESET = dict(zip(PRESETS, ("veryfast", "veryfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                                "veryslow", "veryslow")))
# encode.crf is on x264's scale; each codec's own crf for about the same picture, by SSIM on the renderer's own
# output at veryfast (benchmark P10): x265's 25 and SVT-AV1's 33 score within 0.001 of x264's 23 (x265's docs
# match its 28 with x264's 23 by eye, 0.002 lower by SSIM here)
CRF_OFFSET = {"h264": 0, "hevc": 2, "av1": 10}
TRIAL_SIZE, TRIAL_FRAMES, TRIAL_FPS, TRIAL_TIMEOUT_S = "256x144", 8, 25, 60.0
TRIAL = {"preset": "veryfast", "x264_crf": 23}
RETRY_FAILED_S = 24 * 3600  # a driver installed since: a failed hardware trial is tried again after a day


class CodecError(ValueError):
    """``encode.codec`` / ``encode.hw`` name something the renderer or this ffmpeg cannot encode with."""


@dataclass(frozen=True)
class Encoder:
    """What encodes every segment of a script's video; plain data (it goes to the workers, and into keys)."""

    codec: str  # h264 | hevc | av1
    name: str  # ffmpeg's encoder: libx264, hevc_nvenc ...
    hw: str = ""  # the hardware it runs on ("" for software)


def check(codec: str, hw: str, preset: str) -> None:
    """A clear error for a codec, hardware or preset name the renderer does not know."""
    if codec not in CODECS:
        raise CodecError(f"encode.codec={codec!r} is not a codec the renderer encodes: use one of {', '.join(CODECS)}")
    if hw not in HW:
        raise CodecError(f"encode.hw={hw!r} is not a hardware encoder the renderer knows: use one of {', '.join(HW)}")
    if preset not in PRESETS:
        raise CodecError(f"encode.preset={preset!r} is not an x264 preset: use one of {', '.join(PRESETS)}")


def crf(codec: str, x264_crf: int) -> int:
    """The codec's own quality setting for ``encode.crf`` (x264's scale), within the codec's range."""
    return max(0, min(63 if codec == "av1" else 51, x264_crf + CRF_OFFSET[codec]))


def pixels(encoder: Encoder) -> str:
    """The filters that end a segment's chain: the pixel format (and the upload) the encoder takes."""
    return {"qsv": "format=nv12", "vaapi": "format=nv12,hwupload"}.get(encoder.hw, "format=yuv420p")


def device_args(encoder: Encoder) -> list[str]:
    """Options that go before the inputs: the hardware device a filter uploads to."""
    return ["-vaapi_device", VAAPI_DEVICE] if encoder.hw == "vaapi" else []


def video_args(encoder: Encoder, *, preset: str, x264_crf: int, fps: int, threads: int) -> list[str]:
    """The output options every segment of a script gets: the encoder, its speed and quality, the frame rate, and
    the tag Apple's players need for HEVC in MP4 (``hvc1``: parameter sets in the header, where the concat
    demuxer takes them from the first segment)."""
    q, name = crf(encoder.codec, x264_crf), encoder.name
    if name == "libx264":
        codec = ["-preset", preset, "-crf", str(q), "-threads", str(threads)]
    elif name == "libx265":  # its thread pool is its own; its info lines would fill the error tail
        codec = ["-preset", preset, "-crf", str(q), "-x265-params", f"pools={threads}:log-level=error"]
    elif name == "libsvtav1":
        codec = ["-preset", str(SVT_PRESET[preset]), "-crf", str(q), "-svtav1-params", f"lp={threads}"]
    elif encoder.hw == "nvenc":
        codec = ["-preset", NVENC_PRESET[preset], "-rc", "vbr", "-cq", str(q), "-b:v", "0"]
    elif encoder.hw == "qsv":
        codec = ["-preset", QSV_PRESET[preset], "-global_quality", str(q)]
    elif encoder.hw == "vaapi":
        codec = ["-rc_mode", "CQP", "-qp", str(q)]
    else:  # videotoolbox: a quality of 1..100 (Apple silicon); crf 23 -> 65
        codec = ["-q:v", str(max(1, min(100, 111 - 2 * q)))]
    tag = ["-tag:v", "hvc1"] if encoder.codec == "hevc" else []
    pix_fmt = [] if encoder.hw == "vaapi" else ["-pix_fmt", pixels(encoder).removeprefix("format=")]  # on the GPU
    return ["-c:v", name, *codec, *tag, *pix_fmt, "-r", str(fps), "-fflags", "+bitexact", "-an"]


# --- finding out what works here ---------------------------------------------------------------------------
_tried: dict[str, str | None] = {}  # trial -> None (it works) or why not; for this process
_lock = threading.Lock()


def resolve(codec: str, hw: str, *, preset: str) -> tuple[Encoder, str]:
    """The encoder for ``codec`` on ``hw``, and why it is not the one asked for ("" when it is): the hardware one
    if a trial encode through it works (the first that does, for ``auto``), else the codec's software encoder.
    A software encoder this ffmpeg lacks is an error: no other makes the same stream."""
    check(codec, hw, preset)
    reasons = []
    for kind in _candidates(hw):
        name = HARDWARE.get((codec, kind))
        if name is None:
            reasons.append(f"{kind} has no {codec} encoder")
            continue
        encoder = Encoder(codec, name, kind)
        why = works(encoder)
        if why is None:
            return encoder, ""
        reasons.append(f"{name}: {why}")
    software = Encoder(codec, SOFTWARE[codec])
    why = works(software)
    if why is not None:
        raise CodecError(f"encode.codec={codec}: {ffmpeg.binary('ffmpeg')} cannot encode with {software.name} ({why}): "
                         f"install an ffmpeg built with it (Debian/Ubuntu: apt-get install ffmpeg), point "
                         f"FFMPEG_PATH at one, or use another encode.codec")
    return software, "; ".join(reasons)


def _candidates(hw: str) -> tuple[str, ...]:
    if hw == "none":
        return ()
    return AUTO.get(sys.platform, AUTO_OTHER) if hw == "auto" else (hw,)


def works(encoder: Encoder) -> str | None:
    """None if a few frames encode through ``encoder`` on this machine, else why not; asked of ffmpeg once per
    machine (and per binary), remembered in the process and in the user's cache dir."""
    args = [*device_args(encoder), "-f", "lavfi", "-i", f"testsrc2=s={TRIAL_SIZE}:r={TRIAL_FPS}", "-frames:v",
            str(TRIAL_FRAMES), "-vf", pixels(encoder),
            *video_args(encoder, **TRIAL, fps=TRIAL_FPS, threads=1), "-f", "null", "-"]
    trial = " ".join(args)
    with _lock:
        if trial in _tried:
            return _tried[trial]
        known = tool_notes.recall(ffmpeg.binary("ffmpeg"), trial)
        if known is not None and (known["ok"] or time.time() - known["at"] < RETRY_FAILED_S):
            _tried[trial] = None if known["ok"] else known["reason"]
            return _tried[trial]
    try:
        ffmpeg.run(args, timeout=TRIAL_TIMEOUT_S)
        why = None
    except ffmpeg.FFmpegError as exc:
        why = failure_reason(exc)
    with _lock:
        _tried[trial] = why
        tool_notes.note(ffmpeg.binary("ffmpeg"), trial, {"ok": why is None, "reason": why or "", "at": time.time()})
    return why


def forget() -> None:
    """What this process tried, forgotten (the file stays): for tests that point XDG_CACHE_HOME elsewhere."""
    with _lock:
        _tried.clear()

