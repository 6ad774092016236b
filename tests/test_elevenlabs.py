"""renderer.providers.elevenlabs against the local ElevenLabs double (real HTTP, espeak-ng audio, ffmpeg)."""

from __future__ import annotations

import wave
from pathlib import Path

import pybreaker
import pytest
from hydra.utils import instantiate
from loguru import logger

from renderer.config import ElevenLabsVoiceConfig
from renderer.devtools.fakes import FakeAPI
from renderer.media import ffmpeg
from renderer.ops.reliability import ServiceError, build_guard
from renderer.providers.chain import make
from renderer.providers.elevenlabs import ElevenLabsVoice, parse_output_format
from renderer.providers.http import MissingAPIKey

KEY = "el-SECRET-test-key-0001"
FAST_RETRY = {"attempts": 3, "wait_s": 0.01, "max_wait_s": 1, "exponential": True, "jitter_s": 0}
LINES = [("The first red flag was a loop.", None), ("We didn't build gods.", "Winston")]


@pytest.fixture
def api():
    with FakeAPI(elevenlabs_key=KEY, retry_after_s=0.05, hang_s=5) as server:
        yield server


@pytest.fixture
def voice(api: FakeAPI, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    provider = make(ElevenLabsVoiceConfig, base_url=api.url, speakers={"Winston": "winston-voice"})
    provider.guard = build_guard("elevenlabs", {"fail_max": 5, "reset_timeout_s": 60}, FAST_RETRY,
                                 state_dir=tmp_path / "state", timeout_s=2)
    return provider


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


# --------------------------------------------------------------------------- happy path


def test_synthesizes_a_wav_with_a_voice_per_speaker(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path):
    clip = voice.synthesize(LINES, tmp_path / "n.wav")
    assert clip.provider == "elevenlabs" and clip.path == tmp_path / "n.wav"
    assert clip.duration == pytest.approx(wav_seconds(clip.path), abs=1e-3) and clip.duration > 1.0
    info = ffmpeg.probe(clip.path)
    assert info.first("audio").sample_rate == 22050
    sent = api.received
    assert [r["voice_id"] for r in sent] == ["JBFqnCBsd6RMkjVDRZzb", "winston-voice"]
    assert sent[0]["query"] == {"output_format": "pcm_22050"}
    body = sent[0]["json"]
    assert body["text"] == "The first red flag was a loop." and body["model_id"] == "eleven_multilingual_v2"
    assert set(body["voice_settings"]) == {"stability", "similarity_boost", "style", "use_speaker_boost", "speed"}
    stats = voice.stats
    assert stats["characters"] == sum(len(t) for t, _ in LINES) and stats["requests"] == 2
    assert stats["retries"] == 0 and stats["latency_p50_s"] > 0


def test_empty_text_is_silence_without_a_request(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path):
    clip = voice.synthesize([("  ", None)], tmp_path / "n.wav")
    assert (clip.path, clip.duration, clip.provider) == (None, 0.0, "elevenlabs")
    assert api.count("tts") == 0


def test_long_text_is_split_at_sentences_with_context(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path):
    voice.char_limit = 40
    text = "The first red flag was a loop. Nobody could explain it. It came back every night at three."
    clip = voice.synthesize([(text, None)], tmp_path / "n.wav")
    bodies = [r["json"] for r in api.received]
    assert [b["text"] for b in bodies] == ["The first red flag was a loop.", "Nobody could explain it.",
                                           "It came back every night at three."]
    assert "previous_text" not in bodies[0] and bodies[0]["next_text"] == "Nobody could explain it."
    assert bodies[1]["previous_text"] == "The first red flag was a loop."
    assert "next_text" not in bodies[2]
    assert clip.duration == pytest.approx(wav_seconds(clip.path), abs=1e-3)


def test_timestamps_give_an_alignment_across_chunks(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path):
    voice.with_timestamps, voice.char_limit = True, 20
    clip = voice.synthesize([("One line here. Two lines there.", None)], tmp_path / "n.wav")
    assert api.count("tts_timestamps") == 2 and api.count("tts") == 0
    starts = clip.alignment["character_start_times_seconds"]
    assert "".join(clip.alignment["characters"]) == "One line here.Two lines there."
    assert starts == sorted(starts) and starts[-1] < clip.duration
    assert starts[len("One line here.")] > 0.5  # the second chunk is offset by the first one's audio


def test_mp3_output_is_decoded_to_wav(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path):
    voice.output_format = "mp3_44100_128"
    voice.codec, voice.sample_rate = parse_output_format("mp3_44100_128")
    clip = voice.synthesize(LINES[:1], tmp_path / "n.wav")
    assert api.received[0]["query"] == {"output_format": "mp3_44100_128"}
    assert ffmpeg.probe(clip.path).first("audio").sample_rate == 44100 and clip.duration > 1.0


def test_built_from_the_hydra_config(api: FakeAPI, monkeypatch, tmp_path: Path):
    from tests.conftest import compose_cfg

    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    cfg = compose_cfg("voice=elevenlabs", f"voice.base_url={api.url}", "+voice.speakers.Anya=anya-voice")
    provider = instantiate(cfg.voice)
    assert isinstance(provider, ElevenLabsVoice) and provider.fallback is True and provider.guard is None
    clip = provider.synthesize([("Hello.", "Anya")], tmp_path / "n.wav")  # works with its default local guard
    assert clip.duration > 0 and api.received[0]["voice_id"] == "anya-voice"
    assert api.received[0]["json"]["voice_settings"]["speed"] == 1.0


# --------------------------------------------------------------------------- failures


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="set ELEVENLABS_API_KEY in the environment"):
        make(ElevenLabsVoiceConfig, base_url="http://127.0.0.1:9")


def test_retry_after_is_honoured_then_succeeds(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path):
    api.script("tts", "429", "ok")
    clip = voice.synthesize(LINES[:1], tmp_path / "n.wav")
    assert clip.duration > 0
    assert api.count("tts") == 2
    assert voice.guard.last_call["waits_s"] == [0.05] and voice.stats["retries"] == 1


@pytest.mark.parametrize("fault", ["500", "503", "truncated", "malformed", "hang"])
def test_transient_faults_are_retried(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path, fault: str):
    if fault == "hang":  # the double answers in 5 s: given up on in 2, and the retry answered (a loaded machine too)
        voice.guard.timeout_s = 2.0
    api.script("tts", fault)
    clip = voice.synthesize(LINES[:1], tmp_path / "n.wav")
    assert clip.duration == pytest.approx(wav_seconds(clip.path), abs=1e-3) and clip.duration > 1.0
    assert api.count("tts") == 2


def test_malformed_timestamps_json_is_retried(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path):
    voice.with_timestamps = True
    api.script("tts_timestamps", "malformed", "truncated")
    clip = voice.synthesize(LINES[:1], tmp_path / "n.wav")
    assert clip.alignment["characters"] and api.count("tts_timestamps") == 3


@pytest.mark.parametrize("fault, code", [("quota", "quota_exceeded")])
def test_account_errors_are_not_retried(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path, fault, code):
    api.script("tts", fault)
    with pytest.raises(ServiceError) as err:
        voice.synthesize(LINES[:1], tmp_path / "n.wav")
    assert err.value.code == code and not err.value.retryable
    assert "exceeds your quota" in str(err.value)
    assert api.count("tts") == 1


def test_wrong_key_is_not_retried_and_never_shown(api: FakeAPI, monkeypatch, tmp_path: Path):
    wrong = "el-WRONG-secret-key-9999"
    monkeypatch.setenv("ELEVENLABS_API_KEY", wrong)
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="DEBUG", format="{message}")
    try:
        voice = make(ElevenLabsVoiceConfig, base_url=api.url)
        voice.guard = build_guard("elevenlabs", None, FAST_RETRY)
        with pytest.raises(ServiceError) as err:
            voice.synthesize(LINES[:1], tmp_path / "n.wav")
    finally:
        logger.remove(sink)
    assert err.value.status == 401 and err.value.code == "invalid_api_key"
    assert "Invalid API key" in str(err.value)
    assert api.count("tts") == 1
    assert messages, "the failure should have been logged"
    for text in [str(err.value), repr(err.value), repr(voice), repr(voice.client), repr(voice.guard),
                 str(voice.guard.last_call), str(voice.stats), *messages]:
        assert wrong not in text and KEY not in text


def test_breaker_opens_and_stops_calling_the_service(voice: ElevenLabsVoice, api: FakeAPI, tmp_path: Path):
    voice.guard = build_guard("elevenlabs", {"fail_max": 2, "reset_timeout_s": 60},
                              {**FAST_RETRY, "attempts": 1})
    api.fault_rate, api.faults = 1.0, ("500",)
    for _ in range(2):
        with pytest.raises(ServiceError):
            voice.synthesize(LINES[:1], tmp_path / "n.wav")
    for _ in range(3):
        with pytest.raises(pybreaker.CircuitBreakerError):
            voice.synthesize(LINES[:1], tmp_path / "n.wav")
    assert api.count("tts") == 2
    assert voice.guard.last_call["breaker_state"] == "open"




def test_unknown_output_format_is_refused(monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    with pytest.raises(ValueError, match="pcm_<rate>"):
        make(ElevenLabsVoiceConfig, output_format="ulaw_8000")
