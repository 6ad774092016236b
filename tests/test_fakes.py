"""renderer.devtools.fakes: the local ElevenLabs/Runway doubles speak the wire protocol, with real media and faults."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from renderer.devtools.fakes import RUNWAY_VERSION, FakeAPI
from renderer.media import ffmpeg

ROOT = Path(__file__).resolve().parent.parent
EL_KEY, RW_KEY = "el-key-0001", "rw-key-0001"
EL = {"xi-api-key": EL_KEY}
RW = {"Authorization": f"Bearer {RW_KEY}", "X-Runway-Version": RUNWAY_VERSION}
TTS = {"text": "Hello there.", "model_id": "eleven_multilingual_v2"}
T2V = {"model": "gen4.5", "promptText": "A red sky.", "ratio": "1280:720", "duration": 2}


@pytest.fixture
def api():
    with FakeAPI(elevenlabs_key=EL_KEY, runway_key=RW_KEY, task_seconds=0.3, retry_after_s=2, hang_s=5) as server:
        yield server


def wait_for(api: FakeAPI, task_id: str, status: str) -> dict:
    for _ in range(200):
        task = requests.get(f"{api.url}/v1/tasks/{task_id}", headers=RW, timeout=5).json()
        if task["status"] == status:
            return task
        time.sleep(0.02)
    raise AssertionError(f"task never reached {status}")


def test_text_to_speech_returns_real_audio(api: FakeAPI, tmp_path: Path):
    pcm = requests.post(f"{api.url}/v1/text-to-speech/v1?output_format=pcm_16000", json=TTS, headers=EL, timeout=30)
    assert pcm.status_code == 200 and len(pcm.content) % 2 == 0 and len(pcm.content) > 16000  # > 0.5 s
    mp3 = requests.post(f"{api.url}/v1/text-to-speech/v1?output_format=mp3_44100_128", json=TTS, headers=EL,
                        timeout=30)
    assert mp3.headers["Content-Type"] == "audio/mpeg"
    (tmp_path / "a.mp3").write_bytes(mp3.content)
    info = ffmpeg.probe(tmp_path / "a.mp3")
    assert info.first("audio").codec_name == "mp3" and info.duration > 0.5
    timed = requests.post(f"{api.url}/v1/text-to-speech/v1/with-timestamps?output_format=pcm_22050", json=TTS,
                          headers=EL, timeout=30).json()
    assert base64.b64decode(timed["audio_base64"])
    assert timed["alignment"]["characters"] == list(TTS["text"])
    assert api.stats()["counts"] == {"tts": 2, "tts_timestamps": 1}


def test_wrong_or_missing_keys_get_the_services_401(api: FakeAPI):
    el = requests.post(f"{api.url}/v1/text-to-speech/v1", json=TTS, headers={"xi-api-key": "nope"}, timeout=5)
    assert el.status_code == 401 and el.json() == {"detail": {"status": "invalid_api_key",
                                                              "message": "Invalid API key"}}
    rw = requests.post(f"{api.url}/v1/text_to_video", json=T2V, headers={"X-Runway-Version": RUNWAY_VERSION},
                       timeout=5)
    assert rw.status_code == 401 and "error" in rw.json()
    no_version = requests.post(f"{api.url}/v1/text_to_video", json=T2V, headers={"Authorization": RW["Authorization"]},
                               timeout=5)
    assert no_version.status_code == 400 and "X-Runway-Version" in no_version.json()["error"]


def test_requests_are_validated(api: FakeAPI):
    empty = requests.post(f"{api.url}/v1/text-to-speech/v1", json={"text": ""}, headers=EL, timeout=5)
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "text"]
    too_long = requests.post(f"{api.url}/v1/text-to-speech/v1", json={"text": "a" * 5001}, headers=EL, timeout=5)
    assert too_long.json()["detail"]["status"] == "max_character_limit_exceeded"
    bad = requests.post(f"{api.url}/v1/text_to_video", json={**T2V, "duration": 30, "promptText": "x" * 1001},
                        headers=RW, timeout=5)
    assert bad.status_code == 400 and {i["path"] for i in bad.json()["issues"]} == {"duration", "promptText"}


def test_runway_task_runs_to_a_real_video_and_can_be_deleted(api: FakeAPI, tmp_path: Path):
    task_id = requests.post(f"{api.url}/v1/text_to_video", json=T2V, headers=RW, timeout=5).json()["id"]
    first = requests.get(f"{api.url}/v1/tasks/{task_id}", headers=RW, timeout=5).json()
    assert first["status"] in ("PENDING", "RUNNING")
    done = wait_for(api, task_id, "SUCCEEDED")
    url = done["output"][0]
    assert url.startswith("http://127.0.0.1:")
    (tmp_path / "v.mp4").write_bytes(requests.get(url, timeout=30).content)  # signed URL: no key needed
    info = ffmpeg.probe(tmp_path / "v.mp4")
    assert info.resolution == (160, 90) and info.duration == pytest.approx(2, abs=0.1)
    other = requests.post(f"{api.url}/v1/text_to_video", json=T2V, headers=RW, timeout=5).json()["id"]
    assert requests.delete(f"{api.url}/v1/tasks/{other}", headers=RW, timeout=5).status_code == 204
    assert wait_for(api, other, "CANCELLED")
    stats = requests.get(f"{api.url}/_stats", timeout=5).json()
    assert stats["deleted"] == [other] and stats["counts"]["create"] == 2 and stats["counts"]["delete"] == 1


def test_scripted_faults_come_in_order(api: FakeAPI):
    api.script("task", "500", "429", "503", "malformed", "ok")
    url = f"{api.url}/v1/tasks/missing"
    answers = [requests.get(url, headers=RW, timeout=5) for _ in range(5)]
    assert [a.status_code for a in answers] == [500, 429, 503, 200, 404]
    assert answers[1].headers["Retry-After"] == "2" and answers[2].headers["Retry-After"] == "2"
    with pytest.raises(ValueError):
        answers[3].json()


def test_safety_and_quota_faults(api: FakeAPI):
    api.script("create", "safety")
    task_id = requests.post(f"{api.url}/v1/text_to_video", json=T2V, headers=RW, timeout=5).json()["id"]
    failed = wait_for(api, task_id, "FAILED")
    assert failed["failureCode"] == "SAFETY.INPUT.TEXT"
    api.script("tts", "quota")
    quota = requests.post(f"{api.url}/v1/text-to-speech/v1", json=TTS, headers=EL, timeout=5)
    assert quota.status_code == 401 and quota.json()["detail"]["status"] == "quota_exceeded"


def test_truncated_and_hanging_answers(api: FakeAPI):
    api.script("tts", "truncated", "hang")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.post(f"{api.url}/v1/text-to-speech/v1", json=TTS, headers=EL, timeout=30)
    with pytest.raises(requests.Timeout):
        requests.post(f"{api.url}/v1/text-to-speech/v1", json=TTS, headers=EL, timeout=0.3)


def test_random_faults_follow_the_rate():
    with FakeAPI(runway_key=RW_KEY, fault_rate=0.5, faults=["500"], seed=3) as api:
        codes = [requests.get(f"{api.url}/v1/tasks/x", headers=RW, timeout=5).status_code for _ in range(40)]
    assert set(codes) == {500, 404} and 8 <= codes.count(500) <= 32
    with pytest.raises(ValueError, match="unknown fault"):
        FakeAPI(faults=["explode"])


def test_runs_from_the_command_line():
    env = {k: v for k, v in os.environ.items() if k not in ("ELEVENLABS_API_KEY", "RUNWAY_API_KEY")}
    proc = subprocess.Popen([sys.executable, "-m", "renderer.fakes", "--port", "0", "--latency", "tts=0.1",
                             "--script", "task=500"], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        banner = proc.stdout.readline()
        url = banner.split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        first = requests.get(f"{url}/v1/tasks/x", headers={"Authorization": "Bearer any",
                                                          "X-Runway-Version": RUNWAY_VERSION}, timeout=5)
        assert first.status_code == 500  # the scripted fault, with any key (no key in its environment)
        assert requests.get(f"{url}/_stats", timeout=5).json()["counts"] == {"task": 1}
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
