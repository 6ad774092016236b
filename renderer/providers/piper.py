"""Offline neural narration with piper-tts: one WAV per scene, a voice per speaker, word timing for captions.

The model (renderer/providers/piper_model.py: a voice package or a .onnx file, never downloaded) lives in the
voice process (renderer/providers/voice_server.py), one per machine for every worker and script, which loads
it on the first sentence and exits once no script is speaking through it; with ``voice.server_idle_s=0`` it is
loaded in this process instead. Text is spoken a sentence at a time, so each sentence's place in the clip is known
exactly; its characters are spread over it by length, which gives captions the same per-character timing
ElevenLabs' alignment does.
"""

from __future__ import annotations

import threading
import time
import wave
from contextlib import suppress
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from renderer.providers.base import LOCAL_TIMEOUT_S, SPEAKER_GAP_S, AudioClip, takes
from renderer.providers.piper_model import Cast, Model, PiperError, PiperTimeout, locate, model, resample
from renderer.providers.voice_server import VoiceClient
from renderer.script import sentences

__all__ = ["Cast", "PiperError", "PiperTimeout", "PiperVoice", "locate", "model"]

PEAK = 0.9  # each sentence is scaled to this peak (the soundtrack sets the loudness)


def _peaked(audio: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio * (PEAK / peak) if peak > 1e-6 else audio


class PiperVoice:
    """Built from PiperVoiceConfig (renderer/config.py), where its settings' defaults live."""

    version = "2"  # 2: long sentences spoken in clause-sized pieces
    UNKEYED = ("server_idle_s",)  # where the model runs, not what it says
    PARALLEL = 1  # the model speaks one sentence at a time (each over every core): more scenes at once only wait

    def __init__(self, *, name: str, model: str, speaker_id: int, length_scale: float, sentence_silence_s: float,
                 threads: int, server_idle_s: float, speakers: Mapping[str, str]):
        self.name = name
        self.sentence_silence_s = sentence_silence_s
        self.threads = threads
        self.server = VoiceClient(server_idle_s) if server_idle_s > 0 else None
        self.default = Cast(model, speaker_id, length_scale, 0.0)
        self.casts = {speaker: self._cast(speaker, settings) for speaker, settings in speakers.items()}
        self.rate = self._load(self.default).rate
        for speaker, cast in self.casts.items():  # a typo in a speaker's voice fails now, not mid-render
            try:
                loaded = self._load(cast)
            except PiperError as exc:
                raise PiperError(f"voice.speakers.{speaker}: {exc}") from None
            if not 0 <= cast.speaker_id < max(1, loaded.speakers):
                raise PiperError(f"voice.speakers.{speaker}: speaker_id {cast.speaker_id} is out of range: "
                                 f"{cast.model!r} has {loaded.speakers} speaker(s)")

    @staticmethod
    def warm_up(settings: Mapping[str, Any]) -> None:
        """Start the voice process and load the narrator's model while the run starts (imports, config, cache
        checks: ~1 s), so its first sentence finds them ready rather than waiting ~1 s for both on the narration's
        path. Not holding it: a run with nothing to speak leaves it to exit after ``server_idle_s``. Best effort,
        beside the run, which at its end waits for it only until the process is started (~0.4 s: a started
        process loads the model whoever is left to ask): a voice that cannot start says so when it is first
        asked to speak."""
        if settings["server_idle_s"] <= 0:
            return

        def warm() -> None:
            # silent: this runs before the run's logs are set up, and the run says why when it builds the voice
            with suppress(Exception):
                VoiceClient(settings["server_idle_s"]).load(model(settings["model"], settings["threads"]))

        threading.Thread(target=warm, name="voice-warm-up").start()

    def _cast(self, speaker: str, spec: str) -> Cast:
        """A speaker's voice from ``model`` and/or ``key=value`` words, checked against PiperSpeakerConfig."""
        from omegaconf import OmegaConf

        from renderer.config import PiperSpeakerConfig

        settings: dict[str, str] = {}
        for word in str(spec).replace(",", " ").split():
            key, eq, value = word.partition("=")
            settings.update({key.strip(): value.strip()} if eq else {"model": word})
        try:
            s = OmegaConf.merge(OmegaConf.structured(PiperSpeakerConfig), settings)
        except Exception as exc:
            raise PiperError(f"voice.speakers.{speaker}={spec!r}: {str(exc).splitlines()[0]}; write a voice "
                             "package or .onnx file and/or model=, speaker_id=, length_scale=, pitch_semitones= "
                             "words") from None
        d = self.default
        return Cast(s.model or d.model, d.speaker_id if s.speaker_id is None else s.speaker_id,
                    d.length_scale if s.length_scale is None else s.length_scale, s.pitch_semitones)

    def _load(self, cast: Cast) -> Model:
        return model(cast.model, self.threads)

    def _speak(self, loaded: Model, sentence: str, cast: Cast, deadline: float, last: bool) -> np.ndarray:
        if self.server is None:
            return loaded.speak(sentence, cast, deadline, last=last)
        return self.server.speak(loaded, sentence, cast, deadline, last)

    def cancel(self) -> None:
        """An interrupted render: the sentence the voice process speaks for it is dropped."""
        if self.server is not None:
            self.server.cancel()

    def release(self) -> None:
        """The script's narration is spoken: the voice process may go (it exits once no script holds it)."""
        if self.server is not None:
            self.server.release()

    def synthesize(self, lines: list[tuple[str, str | None]], out: Path, *,
                   timeout: float = LOCAL_TIMEOUT_S) -> AudioClip:
        """Speak (text, speaker) lines into ``out`` (16-bit mono WAV at the default model's rate).
        Consecutive lines of one speaker share a take; takes are joined with a short pause."""
        deadline = time.monotonic() + timeout
        spoken = takes(lines, self.casts, self.default)
        if not spoken:
            return AudioClip(None, 0.0, provider=self.name)
        pieces: list[np.ndarray] = []
        chars: list[str] = []
        starts: list[float] = []
        ends: list[float] = []
        t = 0
        for n, (cast, text) in enumerate(spoken):
            loaded = self._load(cast)
            said = list(sentences(" ".join(text.split())))
            for k, sentence in enumerate(said):
                gap = round(self.rate * (SPEAKER_GAP_S if n and not k else self.sentence_silence_s if k else 0))
                if gap:
                    pieces.append(np.zeros(gap, dtype=np.float32))
                    _spread(" ", t, t + gap, self.rate, chars, starts, ends)
                    t += gap
                ends_clip = n == len(spoken) - 1 and k == len(said) - 1
                audio = self._speak(loaded, sentence, cast, deadline, last=ends_clip)
                if loaded.rate != self.rate:
                    audio = resample(audio, round(audio.size * self.rate / loaded.rate))
                pieces.append(_peaked(audio))
                _spread(sentence, t, t + audio.size, self.rate, chars, starts, ends)
                t += audio.size
        samples = np.concatenate(pieces)
        tmp = out.with_name(out.name + ".part")
        with wave.open(str(tmp), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(self.rate)
            wav.writeframes((np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes())
        tmp.replace(out)
        alignment = {"characters": chars, "character_start_times_seconds": starts,
                     "character_end_times_seconds": ends}
        return AudioClip(out, samples.size / self.rate, provider=self.name, alignment=alignment)


def _spread(text: str, first: int, last: int, rate: int, chars: list[str], starts: list[float],
            ends: list[float]) -> None:
    """``text``'s characters spread evenly over samples ``first``..``last``, as times in seconds."""
    step = (last - first) / max(1, len(text))
    for i, ch in enumerate(text):
        chars.append(ch)
        starts.append(round((first + i * step) / rate, 4))
        ends.append(round((first + (i + 1) * step) / rate, 4))
