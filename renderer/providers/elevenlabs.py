"""ElevenLabs narration over its HTTP API: one WAV per scene, a voice per speaker, long text split at sentences.

``POST {base_url}/v1/text-to-speech/{voice_id}?output_format=pcm_22050`` (or ``/with-timestamps``, which
answers JSON with base64 audio and per-character timing), header ``xi-api-key`` from ELEVENLABS_API_KEY.
Raw PCM is written straight into the WAV; mp3 formats are decoded with ffmpeg. Every request goes through
the service guard (breaker, retries, concurrency) that the pipeline sets on ``guard``.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote

from renderer.media import ffmpeg
from renderer.ops.reliability import Cancelled, ServiceError, ServiceGuard
from renderer.providers.base import SCENE_TIMEOUT_S, SPEAKER_GAP_S, AudioClip, takes
from renderer.providers.http import Client, Guarded, api_key, json_body
from renderer.script import split_text

CONTEXT_CHARS = 300  # previous_text / next_text sent for continuity between chunks
SAMPLE_BYTES = 2  # 16-bit mono PCM


def parse_output_format(name: str) -> tuple[str, int]:
    """(codec, sample rate) of an ElevenLabs output format such as pcm_22050 or mp3_44100_128."""
    codec, _, rest = name.partition("_")
    rate = rest.split("_")[0]
    if codec not in ("pcm", "mp3") or not rate.isdigit():
        raise ValueError(f"unsupported ElevenLabs output_format {name!r}: use pcm_<rate> (e.g. pcm_22050, "
                         "pcm_44100) or mp3_<rate>_<kbps> (e.g. mp3_44100_128)")
    return codec, int(rate)


class ElevenLabsVoice(Guarded):
    """Built from ElevenLabsVoiceConfig (renderer/config.py), where its settings' defaults live."""

    UNKEYED = ("fallback",)  # what happens on failure, not what a success sounds like
    service = "elevenlabs"
    version = "1"

    def __init__(self, *, name: str, base_url: str, model_id: str, voice_id: str, speakers: Mapping[str, str],
                 voice_settings: Mapping[str, Any], output_format: str, char_limit: int, with_timestamps: bool,
                 fallback: bool):
        self.name = name
        self.model_id = model_id
        self.voice_id = voice_id
        self.speakers = dict(speakers)  # dict() also turns Hydra's DictConfig into plain data
        self.voice_settings = dict(voice_settings)
        self.output_format = output_format
        self.codec, self.sample_rate = parse_output_format(output_format)
        self.char_limit = max(0, int(char_limit))  # 0: no limit
        self.with_timestamps = with_timestamps
        self.fallback = fallback
        self.client = Client(self.service, base_url, {"xi-api-key": api_key("ELEVENLABS_API_KEY", "ElevenLabs")})
        self.guard: ServiceGuard | None = None  # set by the pipeline; see Guarded
        self._default_guard: ServiceGuard | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._characters = 0

    def __repr__(self) -> str:
        return f"ElevenLabsVoice(name={self.name!r}, base_url={self.client.base_url!r}, model_id={self.model_id!r})"

    # --- public ----------------------------------------------------------------------------------------
    def synthesize(self, lines: list[tuple[str, str | None]], out: Path, *,
                   timeout: float = SCENE_TIMEOUT_S) -> AudioClip:
        """Speak (text, speaker) lines into ``out`` (WAV); consecutive lines of one speaker share a take."""
        spoken = takes(lines, self.speakers, self.voice_id)
        if not spoken:
            return AudioClip(None, 0.0, provider=self.name)
        deadline = time.monotonic() + timeout
        gap = b"\0" * int(self.sample_rate * SPEAKER_GAP_S) * SAMPLE_BYTES
        pcm = bytearray()
        alignment: dict[str, list] = {"characters": [], "character_start_times_seconds": [],
                                      "character_end_times_seconds": []}
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            for n, (voice, text) in enumerate(spoken):
                if n:
                    pcm += gap
                chunks = split_text(text, self.char_limit or len(text))  # no limit: one chunk
                for i, chunk in enumerate(chunks):
                    before = chunks[i - 1][-CONTEXT_CHARS:] if i else ""
                    after = chunks[i + 1][:CONTEXT_CHARS] if i + 1 < len(chunks) else ""
                    audio, timing = self._speak_guarded(voice, chunk, before, after, deadline, Path(tmp))
                    _append_alignment(alignment, timing, offset_s=len(pcm) / SAMPLE_BYTES / self.sample_rate)
                    pcm += audio
        duration = _write_wav(out, bytes(pcm), self.sample_rate)
        return AudioClip(out, duration, provider=self.name, alignment=alignment if self.with_timestamps else None)

    def cancel(self) -> None:
        """Stop at the next request (called from another thread on abort)."""
        self._cancelled.set()

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            characters = self._characters
        return {"service": self.service, "characters": characters, **self.client.stats(),
                "retries": self.retries()}

    # --- one request -----------------------------------------------------------------------------------

    def _speak_guarded(self, voice: str, text: str, before: str, after: str, deadline: float,
                       tmp: Path) -> tuple[bytes, dict | None]:
        if self._cancelled.is_set():
            raise Cancelled(f"{self.name}: cancelled")
        guard = self.active_guard()
        audio, timing = guard.call(lambda: self._speak(voice, text, before, after, guard.request_timeout(deadline),
                                                       tmp),
                                   operation="text-to-speech", deadline=deadline)
        with self._lock:
            self._characters += len(text)
        return audio, timing

    def _speak(self, voice: str, text: str, before: str, after: str, timeout: float,
               tmp: Path) -> tuple[bytes, dict | None]:
        """One request: 16-bit mono PCM at ``sample_rate`` and, with timestamps, the character alignment."""
        path = f"/v1/text-to-speech/{quote(voice, safe='')}" + ("/with-timestamps" if self.with_timestamps else "")
        body: dict[str, Any] = {"text": text, "model_id": self.model_id, "voice_settings": self.voice_settings}
        if before:
            body["previous_text"] = before
        if after:
            body["next_text"] = after
        resp = self.client.request("POST", path, params={"output_format": self.output_format}, json=body,
                                   timeout=timeout)
        timing = None
        if self.with_timestamps:
            data = json_body(self.service, resp)
            try:
                audio = base64.b64decode(data["audio_base64"], validate=True)
                timing = data.get("alignment")
            except (KeyError, TypeError, binascii.Error):
                raise ServiceError(self.service, resp.status_code, "malformed_response",
                                   "the answer has no valid audio_base64", True) from None
        else:
            audio = resp.content
        return self._to_pcm(audio, tmp), timing

    def _to_pcm(self, audio: bytes, tmp: Path) -> bytes:
        """Raw PCM as it came, mp3 decoded by ffmpeg; a body that is no audio is a broken answer (retried)."""
        if self.codec == "pcm":
            if not audio or len(audio) % SAMPLE_BYTES:
                raise ServiceError(self.service, None, "malformed_audio",
                                   f"{len(audio)} bytes is not 16-bit PCM audio", True)
            return audio
        fd, name = tempfile.mkstemp(suffix=".mp3", dir=tmp)
        os.close(fd)
        src = Path(name)
        raw = src.with_suffix(".raw")
        src.write_bytes(audio)
        try:
            ffmpeg.run(["-f", "mp3", "-i", str(src), "-f", "s16le", "-ac", "1", "-ar", str(self.sample_rate),
                        str(raw)], timeout=60)
            pcm = raw.read_bytes()
        except ffmpeg.FFmpegError:
            raise ServiceError(self.service, None, "malformed_audio", "the answer is not decodable mp3",
                               True) from None
        finally:
            src.unlink(missing_ok=True)
            raw.unlink(missing_ok=True)
        if not pcm:
            raise ServiceError(self.service, None, "malformed_audio", "the mp3 answer holds no audio", True)
        return pcm


def _append_alignment(total: dict[str, list], part: dict | None, *, offset_s: float) -> None:
    if not part:
        return
    total["characters"] += list(part.get("characters", []))
    for key in ("character_start_times_seconds", "character_end_times_seconds"):
        total[key] += [round(float(t) + offset_s, 4) for t in part.get(key, [])]


def _write_wav(out: Path, pcm: bytes, rate: int) -> float:
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(SAMPLE_BYTES)
        w.setframerate(rate)
        w.writeframes(pcm)
    return len(pcm) / SAMPLE_BYTES / rate
