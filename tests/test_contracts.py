"""Contract tests: our clients AND our doubles against wire data recorded from the services' own references.

Every file in tests/contracts/ is one exchange (request + response) as the ElevenLabs, Runway, Pexels or Pixabay
reference shows it; its ``source`` says where it was read, when, and which parts are verbatim or filled from the schema. Each
fixture is checked from both sides, so the client and the double cannot drift together:

* client side: the real client (``ElevenLabsVoice.synthesize`` / ``RunwayVisual.render``) talks to a tiny
  recording server on 127.0.0.1 that answers with the fixture's response. The request it sent must match the
  fixture's (method, path, required query parameters, headers, JSON keys and value types, the documented body
  schema, exact values where the client's config decides them), and the client must read the response as the
  reference means it (alignment reaches the AudioClip, FAILED + failureCode becomes that error, the SUCCEEDED
  output URL is downloaded, ...).
* double side: the fixture's request goes to ``renderer.devtools.fakes.FakeAPI``; its answer must have the fixture's
  status and the same JSON shape (same keys, same value types, recursively; array elements by shape).

A failure names the fixture file and the field that drifted.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time
import wave
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from renderer.config import ElevenLabsVoiceConfig, RunwayVisualConfig, StockVisualConfig
from renderer.devtools.fakes import FakeAPI
from renderer.devtools.stock_fakes import FakeStock
from renderer.media import ffmpeg
from renderer.ops.reliability import Cancelled, ServiceError, build_guard
from renderer.providers.chain import make
from renderer.providers.elevenlabs import ElevenLabsVoice
from renderer.providers.runway import RunwayVisual
from renderer.providers.stock import rendition_for
from renderer.providers.stock_api import SERVICES

CONTRACTS = Path(__file__).resolve().parent / "contracts"
FIXTURES = sorted(p.stem for p in CONTRACTS.glob("*.json"))
EL_KEY = "el-contract-test-key"
RW_KEY = "rw-contract-test-key"
STOCK_KEYS = {"pexels": "px-contract-test-key", "pixabay": "pb-contract-test-key"}
PLACEHOLDER_KEY = re.compile(r"<[^>]*key>")  # "<api key>", "<not a valid key>": the key the client was given
AUTH_HEADERS = {"xi-api-key", "authorization"}
NO_RETRY = {"attempts": 1, "wait_s": 0.01, "max_wait_s": 0.1, "exponential": False, "jitter_s": 0}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def load(name: str) -> dict[str, Any]:
    return json.loads((CONTRACTS / f"{name}.json").read_text(encoding="utf-8"))


def fail_on(problems: list[str]) -> None:
    assert not problems, "contract drift:\n  " + "\n  ".join(problems)


# ============================================================================================ shapes & schemas
def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def brief(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def signature(value: Any) -> str:
    """The shape of a JSON value (keys and leaf kinds), to compare array elements by shape."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{signature(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + "|".join(sorted({signature(v) for v in value})) + "]"
    return kind(value)


def shape_drift(expected: Any, actual: Any, where: str, *, may_add: tuple[str, ...] = ()) -> list[str]:
    """Where ``actual`` differs in shape from ``expected``: kinds, keys (both ways), array elements by shape."""
    want, got = kind(expected), kind(actual)
    if want != got:
        return [f"{where}: expected {want}, got {got} ({brief(actual)})"]
    problems: list[str] = []
    if want == "object":
        for key in expected:
            if key not in actual:
                problems.append(f"{where}.{key}: missing (the reference has it)")
            else:
                problems += shape_drift(expected[key], actual[key], f"{where}.{key}")
        problems += [f"{where}.{key}: not in the reference ({brief(actual[key])})"
                     for key in actual if key not in expected and key not in may_add]
    elif want == "array" and expected:
        examples = {signature(item): item for item in expected}.values()
        for i, item in enumerate(actual):
            diffs = [shape_drift(example, item, f"{where}[{i}]") for example in examples]
            if all(diffs):
                problems += min(diffs, key=len)
                break  # one element is enough to name the drift
    return problems


SCHEMA_KINDS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


def schema_drift(schema: dict[str, Any], value: Any, where: str) -> list[str]:
    """Where ``value`` breaks the documented schema (the subset the fixtures use: type, enum, minimum, maximum,
    minLength, maxLength, required, properties, items). Properties are closed: a key the reference does not
    document is a drift."""
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types
    if types and not any(SCHEMA_KINDS[t](value) for t in types):
        return [f"{where}: expected {' or '.join(types)}, got {kind(value)} ({brief(value)})"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {brief(value)} is not one of the documented values {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: {value} is below the documented minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: {value} is above the documented maximum {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{where}: {len(value)} characters, the documented minimum is {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"{where}: {len(value)} characters, the documented maximum is {schema['maxLength']}")
    if isinstance(value, dict):
        problems += [f"{where}.{key}: required, not sent" for key in schema.get("required", []) if key not in value]
        properties = schema.get("properties")
        if properties is not None:
            for key, item in value.items():
                if key not in properties:
                    problems.append(f"{where}.{key}: not a documented property ({brief(item)})")
                else:
                    problems += schema_drift(properties[key], item, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += schema_drift(schema["items"], item, f"{where}[{i}]")
    return problems


def media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


# ============================================================================================ recording server
@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Recorder:
    """An HTTP server on 127.0.0.1 that records every request and answers from a script per (method, path):
    replies are used in order, the last one repeats."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: dict[tuple[str, str], deque[Reply]] = {}
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                recorder._handle(self)

            do_GET = do_POST = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reply(self, method: str, path: str, *replies: Reply) -> None:
        with self._lock:
            self._replies[(method, path)] = deque(replies)

    def to(self, method: str, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        record = Recorded(req.command, parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()},
                          {k.lower(): v for k, v in req.headers.items()}, body)
        with self._lock:
            self.requests.append(record)
            queue = self._replies.get((req.command, parts.path))
            reply = (queue.popleft() if len(queue) > 1 else queue[0]) if queue else Reply(
                404, {"Content-Type": "application/json"}, b'{"error": "not scripted by the test"}')
        req.send_response(reply.status)
        for name, value in reply.headers.items():
            req.send_header(name, value)
        req.send_header("Content-Length", str(len(reply.body)))
        req.end_headers()
        if reply.body:
            req.wfile.write(reply.body)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def reply_from(response: dict[str, Any], *, json_body: Any = None, body: bytes | None = None) -> Reply:
    """The fixture's recorded response as the server's answer (``json_body``/``body`` replace a placeholder)."""
    if body is None:
        data = json_body if json_body is not None else response.get("json")
        body = json.dumps(data).encode() if data is not None else b""
    return Reply(response["status"], dict(response.get("headers", {})), body)


# ============================================================================================ request checks
def request_drift(name: str, want: dict[str, Any], got: Recorded | None, *, key: str,
                  schema: dict[str, Any] | None = None, exact: dict[str, Any] | None = None) -> list[str]:
    """Where the request our client sent differs from the fixture's request."""
    where = f"{name}.json: client request"
    if got is None:
        return [f"{where}: never sent ({want['method']} {want['path']})"]
    problems: list[str] = []
    if got.method != want["method"]:
        problems.append(f"{where}.method: expected {want['method']}, got {got.method}")
    if got.path != want["path"]:
        problems.append(f"{where}.path: expected {want['path']}, got {got.path}")
    for param, value in want.get("query", {}).items():
        value = PLACEHOLDER_KEY.sub(key, value)
        if param not in got.query:
            problems.append(f"{where}.query.{param}: missing (expected {value!r})")
        elif got.query[param] != value:
            problems.append(f"{where}.query.{param}: expected {value!r}, got {got.query[param]!r}")
    for param, param_schema in want.get("query_schema", {}).items():
        if param in got.query:
            problems += schema_drift(param_schema, got.query[param], f"{where}.query.{param}")
    for header, value in want.get("headers", {}).items():
        sent = got.headers.get(header.lower())
        if sent is None:
            problems.append(f"{where}.headers.{header}: missing")
        elif header.lower() == "xi-api-key" and sent != key:
            problems.append(f"{where}.headers.{header}: not the key from the environment")
        elif header.lower() == "authorization" and sent != PLACEHOLDER_KEY.sub(key, value):
            problems.append(f"{where}.headers.{header}: not {value!r} with the key from the environment")
        elif header.lower() == "content-type" and media_type(sent) != media_type(value):
            problems.append(f"{where}.headers.{header}: expected {value}, got {sent}")
        elif header.lower() not in AUTH_HEADERS | {"content-type"} and sent != value:
            problems.append(f"{where}.headers.{header}: expected {value!r}, got {sent!r}")
    if "json" in want:
        try:
            body = got.json
        except ValueError:
            return problems + [f"{where}.json: the body is not JSON ({got.body[:60]!r})"]
        if not isinstance(body, dict):
            return problems + [f"{where}.json: expected an object, got {kind(body)}"]
        for prop, value in want["json"].items():
            if prop not in body:
                problems.append(f"{where}.json.{prop}: missing (the reference's example sends it)")
            else:
                problems += shape_drift(value, body[prop], f"{where}.json.{prop}")
        schema = schema or want.get("json_schema")
        if schema:
            problems += schema_drift(schema, body, f"{where}.json")
        for prop, value in (exact or {}).items():
            if body.get(prop) != value:
                problems.append(f"{where}.json.{prop}: the client's config says {brief(value)}, "
                                f"it sent {brief(body.get(prop))}")
    elif got.body:
        problems.append(f"{where}: the reference's request has no body, the client sent {len(got.body)} bytes")
    return problems


def error_drift(name: str, fx: dict[str, Any], err: BaseException | None) -> list[str]:
    """Where the error our client raised differs from what the fixture's response means."""
    where = f"{name}.json: client reading of the response"
    if not isinstance(err, ServiceError):
        return [f"{where}: expected a ServiceError, got {err!r}"]
    want = fx.get("expect", {})
    problems = []
    status = fx["response"]["status"]
    if status >= 400 and err.status != status:
        problems.append(f"{where}.status: expected {status}, got {err.status}")
    if "code" in want and err.code != want["code"]:
        problems.append(f"{where}.code: expected {want['code']!r}, got {err.code!r}")
    if "retryable" in want and err.retryable != want["retryable"]:
        problems.append(f"{where}.retryable: expected {want['retryable']}, got {err.retryable}")
    if "message_contains" in want and want["message_contains"] not in err.message:
        problems.append(f"{where}.message: expected to mention {want['message_contains']!r}, got {err.message!r}")
    detail = (fx["response"].get("json") or {}).get("detail")
    if isinstance(detail, dict) and detail.get("message") and detail["message"] not in err.message:
        problems.append(f"{where}.message: the service's message {detail['message']!r} is lost ({err.message!r})")
    return problems


# ============================================================================================ media for replies
@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    """A short real mp3 (what Create speech answers) and mp4 (what a task output URL returns)."""
    folder = tmp_path_factory.mktemp("contract-media")
    mp3, mp4 = folder / "a.mp3", folder / "v.mp4"
    ffmpeg.run(["-f", "lavfi", "-i", "sine=frequency=440:duration=0.4", "-ar", "44100", "-ac", "1",
                "-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3", str(mp3)], timeout=60)
    ffmpeg.run(["-f", "lavfi", "-i", "testsrc2=s=160x90:r=12:d=2", "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", "-f", "mp4", str(mp4)], timeout=60)
    return {"mp3": mp3.read_bytes(), "mp4": mp4.read_bytes()}


@pytest.fixture
def server():
    with Recorder() as recorder:
        yield recorder


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


# ============================================================================================ ElevenLabs: client
def el_voice(url: str, fx: dict[str, Any], monkeypatch, tmp_path: Path) -> ElevenLabsVoice:
    """Our ElevenLabs client configured as the fixture's request says (voice, output format, endpoint)."""
    monkeypatch.setenv("ELEVENLABS_API_KEY", EL_KEY)
    path = fx["request"]["path"]
    voice = make(ElevenLabsVoiceConfig, base_url=url, voice_id=path.split("/")[3],
                            output_format=fx["request"]["query"]["output_format"],
                            with_timestamps=path.endswith("/with-timestamps"))
    voice.guard = build_guard("elevenlabs", {"fail_max": 100, "reset_timeout_s": 60}, NO_RETRY,
                              state_dir=tmp_path / "state", timeout_s=10)
    return voice


def el_exact(voice: ElevenLabsVoice, text: str) -> dict[str, Any]:
    return {"text": text, "model_id": voice.model_id, "voice_settings": voice.voice_settings}


def client_elevenlabs_tts(name, fx, server, media, monkeypatch, tmp_path):
    voice = el_voice(server.url, fx, monkeypatch, tmp_path)
    server.reply("POST", fx["request"]["path"], reply_from(fx["response"], body=media["mp3"]))
    text = fx["request"]["json"]["text"]
    clip = voice.synthesize([(text, None)], tmp_path / "n.wav", timeout=30)
    problems = request_drift(name, fx["request"], (server.requests or [None])[0], key=EL_KEY,
                             exact=el_exact(voice, text))
    if len(server.requests) != 1:
        problems.append(f"{name}.json: client sent {len(server.requests)} requests for one short line")
    if clip.path is None or not clip.path.exists() or clip.duration <= 0.3:
        problems.append(f"{name}.json: client reading of the audio/mpeg body: no audio in the clip ({clip})")
    elif abs(clip.duration - wav_seconds(clip.path)) > 1e-3:
        problems.append(f"{name}.json: clip.duration {clip.duration} is not the WAV's length")
    fail_on(problems)


def client_elevenlabs_tts_with_timestamps(name, fx, server, media, monkeypatch, tmp_path):
    voice = el_voice(server.url, fx, monkeypatch, tmp_path)
    pcm = b"\0\0" * (voice.sample_rate // 2)  # 0.5 s of 16-bit silence at the requested rate
    answer = copy.deepcopy(fx["response"]["json"])
    answer["audio_base64"] = base64.b64encode(pcm).decode()  # the reference's value is a placeholder
    server.reply("POST", fx["request"]["path"], reply_from(fx["response"], json_body=answer))
    text = fx["request"]["json"]["text"]
    clip = voice.synthesize([(text, None)], tmp_path / "n.wav", timeout=30)
    problems = request_drift(name, fx["request"], (server.requests or [None])[0], key=EL_KEY,
                             exact=el_exact(voice, text))
    where = f"{name}.json: client reading of response.json"
    if abs(clip.duration - 0.5) > 1e-6:
        problems.append(f"{where}.audio_base64: the clip lasts {clip.duration} s, the audio 0.5 s")
    alignment = fx["response"]["json"]["alignment"]
    if clip.alignment is None:
        problems.append(f"{where}.alignment: did not reach the AudioClip")
    else:
        for prop, value in alignment.items():
            if clip.alignment.get(prop) != value:
                problems.append(f"{where}.alignment.{prop}: expected {brief(value)}, the clip has "
                                f"{brief(clip.alignment.get(prop))}")
    fail_on(problems)


def client_elevenlabs_error(name, fx, server, media, monkeypatch, tmp_path):
    voice = el_voice(server.url, fx, monkeypatch, tmp_path)
    server.reply("POST", fx["request"]["path"], reply_from(fx["response"]))
    text = "The first move is what sets everything in motion."
    err = None
    try:
        voice.synthesize([(text, None)], tmp_path / "n.wav", timeout=30)
    except ServiceError as exc:
        err = exc
    problems = request_drift(name, fx["request"], (server.requests or [None])[0], key=EL_KEY,
                             schema=load("elevenlabs_tts")["request"]["json_schema"], exact=el_exact(voice, text))
    fail_on(problems + error_drift(name, fx, err))


# ============================================================================================ Runway: client
RW_FORMATS = [(1280, 720), (1920, 1080), (1080, 1920), (720, 1280), (1080, 1080), (2560, 1080), (1000, 800)]


def rw_visual(url: str, monkeypatch, tmp_path: Path) -> RunwayVisual:
    monkeypatch.setenv("RUNWAY_API_KEY", RW_KEY)
    monkeypatch.delenv("RUNWAY_CINEMATIC_MODE", raising=False)
    visual = make(RunwayVisualConfig, base_url=url, poll_interval_s=0.01, poll_jitter_s=0)
    visual.guard = build_guard("runway", {"fail_max": 100, "reset_timeout_s": 60}, NO_RETRY,
                               state_dir=tmp_path / "state", timeout_s=10)
    return visual


def task_reply(fx_task: dict[str, Any], task_id: str, **changes: Any) -> Reply:
    return reply_from(fx_task["response"], json_body={**fx_task["response"]["json"], "id": task_id, **changes})


def script_task(server: Recorder, create: dict[str, Any], tasks: list[Reply], media) -> str:
    """Answer the create request with ``create``'s response and the task's polls with ``tasks``; serve the mp4."""
    task_id = create["response"]["json"]["id"]
    server.reply("POST", create["request"]["path"], reply_from(create["response"]))
    server.reply("GET", f"/v1/tasks/{task_id}", *tasks)
    server.reply("DELETE", f"/v1/tasks/{task_id}", reply_from(load("runway_task_delete")["response"]))
    server.reply("GET", "/files/output.mp4", Reply(200, {"Content-Type": "video/mp4"}, media["mp4"]))
    return task_id


def succeeded(server: Recorder, task_id: str) -> Reply:
    return task_reply(load("runway_task_succeeded"), task_id, output=[f"{server.url}/files/output.mp4"])


def render(visual: RunwayVisual, tmp_path: Path, prompt: str = "x", **kwargs: Any):
    size = {"width": 1280, "height": 720, "duration": 2, "timeout": 60, **kwargs}
    return visual.render(prompt, tmp_path / "v.mp4", **size)


def poll_drift(name: str, want: dict[str, Any], server: Recorder, task_id: str) -> list[str]:
    polls = server.to("GET", f"/v1/tasks/{task_id}")
    return request_drift(name, {**want, "path": f"/v1/tasks/{task_id}"}, polls[0] if polls else None, key=RW_KEY)


def download_drift(name: str, server: Recorder, clip) -> list[str]:
    where = f"{name}.json: client reading of response.json.output"
    downloads = server.to("GET", "/files/output.mp4")
    if not downloads:
        return [f"{where}[0]: the output URL was never downloaded"]
    problems = []
    if "authorization" in downloads[0].headers:
        problems.append(f"{where}[0]: the key was sent to the output URL (it is pre-signed)")
    if abs(ffmpeg.probe(clip.path).duration - 2) > 0.15:
        problems.append(f"{where}[0]: the downloaded video did not become the 2 s clip")
    return problems


def client_runway_create(name, fx, server, media, monkeypatch, tmp_path):
    """text_to_video / image_to_video: the create request, its task id polled, the output downloaded."""
    visual = rw_visual(server.url, monkeypatch, tmp_path)
    task_id = fx["response"]["json"]["id"]
    script_task(server, fx, [succeeded(server, task_id)], media)
    body = fx["request"]["json"]
    image = body.get("promptImage")
    clip = render(visual, tmp_path, body.get("promptText", "x"), image_url=image)
    exact = {"model": visual.image_model if image else visual.model, "promptText": body.get("promptText", "x"),
             "ratio": "1280:720", "duration": 2, **({"promptImage": image} if image else {})}
    creates = server.to("POST", fx["request"]["path"])
    problems = request_drift(name, fx["request"], creates[0] if creates else None, key=RW_KEY, exact=exact)
    problems += poll_drift(name, load("runway_task_pending")["request"], server, task_id)
    problems += download_drift(name, server, clip)
    # every output format, scene length and prompt length must give a body the reference accepts
    schema = fx["request"]["json_schema"]
    visual.cinematic = True
    for width, height in RW_FORMATS:
        for duration in (0.4, 2, 7.5, 30):
            endpoint, sent = visual.request_body("word " * 300, width=width, height=height, duration=duration,
                                                 image_url=image)
            problems += schema_drift(schema, sent, f"{name}.json: client request.json ({width}x{height}, "
                                                   f"{duration} s scene)")
    fail_on(sorted(set(problems), key=problems.index))


def client_runway_nonterminal(name, fx, server, media, monkeypatch, tmp_path):
    """PENDING / THROTTLED / RUNNING: keep polling, then finish with the SUCCEEDED task."""
    visual = rw_visual(server.url, monkeypatch, tmp_path)
    task_id = fx["response"]["json"]["id"]
    script_task(server, load("runway_text_to_video"), [task_reply(fx, task_id), succeeded(server, task_id)], media)
    seen: list[dict] = []
    visual.on_poll = seen.append
    clip = render(visual, tmp_path)
    problems = poll_drift(name, fx["request"], server, task_id)
    want = fx["response"]["json"]["status"]
    statuses = [t.get("status") for t in seen]
    if statuses[:1] != [want] or statuses[-1:] != ["SUCCEEDED"]:
        problems.append(f"{name}.json: client reading of response.json.status: {want} should keep it polling "
                        f"until SUCCEEDED, it saw {statuses}")
    if server.to("DELETE", f"/v1/tasks/{task_id}"):
        problems.append(f"{name}.json: client DELETEd a task that finished")
    fail_on(problems + download_drift(name, server, clip))


def client_runway_succeeded(name, fx, server, media, monkeypatch, tmp_path):
    visual = rw_visual(server.url, monkeypatch, tmp_path)
    task_id = fx["response"]["json"]["id"]
    script_task(server, load("runway_text_to_video"), [succeeded(server, task_id)], media)
    clip = render(visual, tmp_path)
    problems = poll_drift(name, fx["request"], server, task_id) + download_drift(name, server, clip)
    if visual.stats["tasks"] != {"created": 1, "succeeded": 1, "failed": 0, "cancelled": 0}:
        problems.append(f"{name}.json: client task counts {visual.stats['tasks']}")
    fail_on(problems)


def client_runway_ended_badly(name, fx, server, media, monkeypatch, tmp_path):
    """FAILED (with failureCode) / CANCELLED: the task's own error, no retry, no DELETE of an ended task."""
    visual = rw_visual(server.url, monkeypatch, tmp_path)
    task_id = fx["response"]["json"]["id"]
    script_task(server, load("runway_text_to_video"), [task_reply(fx, task_id)], media)
    err = None
    try:
        render(visual, tmp_path)
    except ServiceError as exc:
        err = exc
    problems = poll_drift(name, fx["request"], server, task_id) + error_drift(name, fx, err)
    failure = fx["response"]["json"].get("failure")
    if failure and isinstance(err, ServiceError) and err.message != failure:
        problems.append(f"{name}.json: client reading of response.json.failure: got {err.message!r}")
    if server.to("DELETE", f"/v1/tasks/{task_id}"):
        problems.append(f"{name}.json: client DELETEd a task that had ended")
    fail_on(problems)


def client_runway_delete(name, fx, server, media, monkeypatch, tmp_path):
    """An interrupted task is cancelled with DELETE /v1/tasks/{id}; its 204 counts as cancelled."""
    visual = rw_visual(server.url, monkeypatch, tmp_path)
    task_id = fx["request"]["path"].rsplit("/", 1)[1]
    script_task(server, load("runway_text_to_video"), [task_reply(load("runway_task_pending"), task_id)], media)
    visual.on_poll = lambda task: visual.cancel()
    with pytest.raises(Cancelled):
        render(visual, tmp_path)
    deletes = server.to("DELETE", fx["request"]["path"])
    problems = request_drift(name, fx["request"], deletes[0] if deletes else None, key=RW_KEY)
    if visual.stats["tasks"]["cancelled"] != 1:
        problems.append(f"{name}.json: client reading of the {fx['response']['status']} answer: task not counted "
                        f"as cancelled ({visual.stats['tasks']})")
    fail_on(problems)


def client_runway_error(name, fx, server, media, monkeypatch, tmp_path):
    """An error answer to the create request: the right ServiceError, nothing polled."""
    visual = rw_visual(server.url, monkeypatch, tmp_path)
    server.reply("POST", fx["request"]["path"], reply_from(fx["response"]))
    err = None
    try:
        render(visual, tmp_path)
    except ServiceError as exc:
        err = exc
    creates = server.to("POST", fx["request"]["path"])
    problems = request_drift(name, fx["request"], creates[0] if creates else None, key=RW_KEY,
                             schema=load("runway_text_to_video")["request"]["json_schema"])
    # the fixture's request may be deliberately invalid (runway_error_400): compare keys and kinds, not values
    problems += error_drift(name, fx, err)
    if len(server.requests) != len(creates):
        problems.append(f"{name}.json: client went on after the error ({[r.path for r in server.requests]})")
    fail_on(problems)


# ============================================================================================ Pexels, Pixabay: client
def stock_client(name: str, fx: dict[str, Any], url: str, tmp_path: Path):
    """Our client of the fixture's service, asking for as many results per page as the fixture does."""
    service = name.split("_")[0]
    per_page = int(fx["request"]["query"].get("per_page", 20))
    schema = StockVisualConfig()  # the waits a configured stock provider gives its clients
    client = SERVICES[service](url, STOCK_KEYS[service], per_page=per_page, rate_wait_s=schema.rate_wait_s,
                               rate_cooldown_s=schema.rate_cooldown_s)
    client.guard = build_guard(service, {"fail_max": 100, "reset_timeout_s": 60}, NO_RETRY,
                               state_dir=tmp_path / "state", timeout_s=10)
    return service, client


def stock_search(client, fx: dict[str, Any]):
    kind = "video" if "/videos/" in fx["request"]["path"] + "/" else "photo"
    query = fx["request"]["query"].get("query") or fx["request"]["query"].get("q")
    return client.search(kind, query, width=1280, height=720, deadline=time.monotonic() + 30)


def client_stock_search(name, fx, server, media, monkeypatch, tmp_path):
    """A search: the request as documented, and the answer read into candidates as the reference means it."""
    service, client = stock_client(name, fx, server.url, tmp_path)
    server.reply("GET", fx["request"]["path"], reply_from(fx["response"]))
    candidates = stock_search(client, fx)
    problems = request_drift(name, fx["request"], (server.requests or [None])[0], key=STOCK_KEYS[service])
    where, want = f"{name}.json: client reading of response.json", fx["expect"]
    if len(candidates) != 1:
        fail_on(problems + [f"{where}: expected one candidate, got {len(candidates)}"])
    c = candidates[0]
    for attr in ("id", "creator", "creator_url", "page_url", "duration"):
        if getattr(c, attr) != want[attr]:
            problems.append(f"{where}: {attr} is {getattr(c, attr)!r}, the reference means {want[attr]!r}")
    if not set(want["words"]) <= c.words:
        problems.append(f"{where}: the words {sorted(set(want['words']) - c.words)} are lost ({sorted(c.words)})")
    if [[r.width, r.height] for r in c.renditions] != want["renditions"]:
        problems.append(f"{where}: renditions {[(r.width, r.height) for r in c.renditions]}, expected "
                        f"{want['renditions']} (an hls stream has no size and is not a file)")
    picked = rendition_for(c, 1280, 720, 10**10)
    if [picked.width, picked.height] != want["picked_for_1280x720"]:
        problems.append(f"{where}: for a 1280x720 frame {picked.width}x{picked.height} would be downloaded, "
                        f"expected {want['picked_for_1280x720']}")
    if client.budget.snapshot()["remaining"] is None and any(h.lower().startswith("x-ratelimit")
                                                            for h in fx["response"]["headers"]):
        problems.append(f"{name}.json: client reading of the rate-limit headers: the budget did not learn them")
    fail_on(problems)


def client_stock_error(name, fx, server, media, monkeypatch, tmp_path):
    service, client = stock_client(name, fx, server.url, tmp_path)
    server.reply("GET", fx["request"]["path"], reply_from(fx["response"], body=fx["response"].get("text", "").encode()))
    err = None
    try:
        stock_search(client, fx)
    except ServiceError as exc:
        err = exc
    problems = request_drift(name, fx["request"], (server.requests or [None])[0], key=STOCK_KEYS[service])
    if fx["response"]["status"] == 429 and client.budget.snapshot()["remaining"] != 0:
        problems.append(f"{name}.json: client reading of the 429: the rate budget is not spent")
    fail_on(problems + error_drift(name, fx, err))


CLIENT_CHECKS = {
    "elevenlabs_tts": client_elevenlabs_tts,
    "elevenlabs_tts_with_timestamps": client_elevenlabs_tts_with_timestamps,
    "elevenlabs_error_400_max_character_limit_exceeded": client_elevenlabs_error,
    "elevenlabs_error_401_invalid_api_key": client_elevenlabs_error,
    "elevenlabs_error_401_quota_exceeded": client_elevenlabs_error,
    "elevenlabs_error_422_validation": client_elevenlabs_error,
    "elevenlabs_error_429_too_many_concurrent_requests": client_elevenlabs_error,
    "runway_text_to_video": client_runway_create,
    "runway_image_to_video": client_runway_create,
    "runway_task_pending": client_runway_nonterminal,
    "runway_task_throttled": client_runway_nonterminal,
    "runway_task_running": client_runway_nonterminal,
    "runway_task_succeeded": client_runway_succeeded,
    "runway_task_failed": client_runway_ended_badly,
    "runway_task_cancelled": client_runway_ended_badly,
    "runway_task_delete": client_runway_delete,
    "runway_error_400": client_runway_error,
    "runway_error_401": client_runway_error,
    "runway_error_429": client_runway_error,
    "pexels_videos_search": client_stock_search,
    "pexels_photos_search": client_stock_search,
    "pexels_error_429": client_stock_error,
    "pixabay_videos_search": client_stock_search,
    "pixabay_images_search": client_stock_search,
    "pixabay_error_429": client_stock_error,
    "pixabay_error_400_invalid_key": client_stock_error,
}


# ============================================================================================ the doubles
def send(api: FakeAPI | FakeStock, want: dict[str, Any], *, path: str | None = None, key: str | None = None
         ) -> requests.Response:
    """The fixture's request, sent to the double (a valid key unless the fixture's key is marked not valid);
    ``key``: the one its placeholders stand for (in headers and query), for services other than ElevenLabs and
    Runway."""
    def keyed(value: str) -> str:
        return PLACEHOLDER_KEY.sub(lambda m: "not-a-valid-key" if "not a valid" in m.group(0) else key, value)

    headers = {}
    for header, value in want.get("headers", {}).items():
        if key is not None:
            value = keyed(value)
        elif header.lower() in AUTH_HEADERS:
            known = EL_KEY if header.lower() == "xi-api-key" else RW_KEY
            known = "not-a-valid-key" if "not a valid" in value else known
            value = known if header.lower() == "xi-api-key" else f"Bearer {known}"
        headers[header] = value
    params = {k: keyed(v) if key is not None else v for k, v in (want.get("query") or {}).items()}
    data = json.dumps(want["json"]).encode() if "json" in want else None
    return requests.request(want["method"], f"{api.url}{path or want['path']}", params=params or None,
                            headers=headers, data=data, timeout=60)


def response_drift(name: str, want: dict[str, Any], resp: requests.Response) -> list[str]:
    """Where the double's answer differs from the fixture's response: status, content type, JSON shape."""
    where = f"{name}.json: double response"
    problems = []
    if resp.status_code != want["status"]:
        problems.append(f"{where}.status: expected {want['status']}, got {resp.status_code} "
                        f"({resp.content[:100]!r})")
    for header, value in want.get("headers", {}).items():
        got = resp.headers.get(header)
        if header.lower().startswith("x-ratelimit"):  # the figures are the double's own: a number must be there
            if got is None or not got.strip().isdigit():
                problems.append(f"{where}.headers.{header}: expected a number, got {got!r}")
            continue
        same = media_type(got) == media_type(value) if header.lower() == "content-type" else got == value
        if not same:
            problems.append(f"{where}.headers.{header}: expected {value!r}, got {got!r}")
    problems += [f"{where}.headers.{header}: the reference says it is not sent, got {resp.headers[header]!r}"
                 for header in want.get("absent_headers", []) if header in resp.headers]
    if "text" in want and want["text"] not in resp.text:
        problems.append(f"{where}.text: expected it to say {want['text']!r}, got {resp.text[:100]!r}")
    if "json" in want:
        try:
            body = resp.json()
        except ValueError:
            return problems + [f"{where}.json: not JSON ({resp.content[:60]!r})"]
        problems += shape_drift(want["json"], body, f"{where}.json", may_add=tuple(want.get("double_may_add", ())))
    elif want.get("body") == "empty" and resp.content:
        problems.append(f"{where}.body: expected none, got {len(resp.content)} bytes")
    elif want.get("body") == "binary" and not resp.content:
        problems.append(f"{where}.body: expected audio, got nothing")
    return problems


def double_elevenlabs(name, fx, tmp_path):
    endpoint = "tts_timestamps" if fx["request"]["path"].endswith("/with-timestamps") else "tts"
    max_chars = 333 if name.endswith("max_character_limit_exceeded") else 5000  # the limit of the example message
    with FakeAPI(elevenlabs_key=EL_KEY, max_chars=max_chars, retry_after_s=0.05, hang_s=1) as api:
        fault = {"elevenlabs_error_401_quota_exceeded": "quota",
                 "elevenlabs_error_429_too_many_concurrent_requests": "429"}.get(name)
        if fault:
            api.script(endpoint, fault)
        fail_on(response_drift(name, fx["response"], send(api, fx["request"])))


def wait_for_status(api: FakeAPI, name: str, task_id: str, status: str, seconds: float = 20) -> requests.Response:
    want = load(name)["request"]
    stop = time.monotonic() + seconds
    while True:
        resp = send(api, want, path=f"/v1/tasks/{task_id}")
        if resp.status_code != 200 or resp.json().get("status") == status or time.monotonic() > stop:
            return resp
        time.sleep(0.02)


def double_runway_task(name, fx, tmp_path):
    """Create a task on the double (with the fault that leads to the fixture's state), then GET it."""
    status = fx["response"]["json"]["status"]
    task_seconds = {"PENDING": 60, "THROTTLED": 60, "CANCELLED": 60, "RUNNING": 4}.get(status, 0.3)
    with FakeAPI(runway_key=RW_KEY, task_seconds=task_seconds) as api:
        fault = {"THROTTLED": "throttled", "FAILED": "safety"}.get(status)
        if fault:
            api.script("create", fault)
        created = send(api, load("runway_text_to_video")["request"])
        assert created.status_code == 200, f"{name}.json: the double refused the task ({created.text})"
        task_id = created.json()["id"]
        if status == "CANCELLED":
            send(api, load("runway_task_delete")["request"], path=f"/v1/tasks/{task_id}")
        resp = wait_for_status(api, name, task_id, status)
        fail_on(response_drift(name, fx["response"], resp))


def double_runway_delete(name, fx, tmp_path):
    with FakeAPI(runway_key=RW_KEY, task_seconds=60) as api:
        task_id = send(api, load("runway_text_to_video")["request"]).json()["id"]
        fail_on(response_drift(name, fx["response"], send(api, fx["request"], path=f"/v1/tasks/{task_id}")))


def double_runway_request(name, fx, tmp_path):
    """A request answered at once: create (200 {id}) or an error answer to it."""
    with FakeAPI(runway_key=RW_KEY, task_seconds=60, retry_after_s=0.05) as api:
        if name == "runway_error_429":
            api.script("create", "429")
        fail_on(response_drift(name, fx["response"], send(api, fx["request"])))


STOCK_CATALOGUE = [  # what the doubles hold for the fixtures' queries ("nature", "yellow flowers")
    {"service": "pexels", "id": 1448735, "kind": "video", "title": "video of forest", "tags": ["nature", "forest"],
     "duration": 32, "width": 4096, "height": 2160, "creator": "Ruvim Miksanskiy"},
    *({"service": "pexels", "id": n, "kind": "photo", "title": "trees during day", "tags": ["nature", "trees"],
       "duration": 0, "width": 3066, "height": 3968, "creator": "Lukas Rodriguez"} for n in (3573351, 3573352)),
    {"service": "pixabay", "id": 125, "kind": "video", "title": "flowers", "tags": ["flowers", "yellow", "blossom"],
     "duration": 12, "width": 1920, "height": 1080, "creator": "Coverr-Free-Footage"},
    {"service": "pixabay", "id": 195893, "kind": "photo", "title": "flower", "tags": ["blossom", "yellow", "flower"],
     "duration": 0, "width": 4000, "height": 2250, "creator": "Josch13"},
]


def double_stock(name, fx, tmp_path):
    service = name.split("_")[0]
    endpoint = {"/videos/search": "pexels_videos", "/v1/search": "pexels_photos", "/api/videos/": "pixabay_videos",
                "/api/": "pixabay_images"}[fx["request"]["path"]]
    with FakeStock(catalogue=STOCK_CATALOGUE, **{f"{s}_key": k for s, k in STOCK_KEYS.items()}) as api:
        if fx["response"]["status"] == 429:
            api.script(endpoint, "429")
        resp = send(api, fx["request"], key=STOCK_KEYS[service])
        fail_on(response_drift(name, fx["response"], resp))


DOUBLE_CHECKS = {
    **{name: double_elevenlabs for name in CLIENT_CHECKS if name.startswith("elevenlabs_")},
    **{f"runway_task_{s}": double_runway_task
       for s in ("pending", "throttled", "running", "succeeded", "failed", "cancelled")},
    "runway_task_delete": double_runway_delete,
    "runway_text_to_video": double_runway_request,
    "runway_image_to_video": double_runway_request,
    "runway_error_400": double_runway_request,
    "runway_error_401": double_runway_request,
    "runway_error_429": double_runway_request,
    **{name: double_stock for name in CLIENT_CHECKS if name.startswith(("pexels_", "pixabay_"))},
}


# ============================================================================================ the tests
def test_fixtures_say_where_they_come_from():
    assert FIXTURES, f"no contract fixtures in {CONTRACTS}"
    problems = []
    for name in FIXTURES:
        fx = load(name)
        source = fx.get("source") or {}
        if not str(source.get("reference", "")).startswith("https://"):
            problems.append(f"{name}.json: source.reference is not the reference's URL")
        if not DATE.match(str(source.get("read_on", ""))):
            problems.append(f"{name}.json: source.read_on is not the date it was read (YYYY-MM-DD)")
        if not source.get("verbatim") or "filled" not in source:
            problems.append(f"{name}.json: source must say what is verbatim and what was filled")
        if not {"method", "path", "headers"} <= set(fx.get("request", {})):
            problems.append(f"{name}.json: request needs method, path and headers")
        if "status" not in fx.get("response", {}):
            problems.append(f"{name}.json: response needs its status")
        for side, checks in (("client", CLIENT_CHECKS), ("double", DOUBLE_CHECKS)):
            if name not in checks:
                problems.append(f"{name}.json: no {side} check (add one to {side.upper()}_CHECKS)")
    problems += [f"{name}: a check without its fixture file" for name in {*CLIENT_CHECKS, *DOUBLE_CHECKS}
                 if name not in FIXTURES]
    fail_on(problems)


def test_shape_comparison_names_the_drift():
    want = {"id": "a", "output": ["u"], "progress": 0.5, "alignment": {"characters": ["H"]}}
    assert shape_drift(want, {"id": "b", "output": ["v", "w"], "progress": 1, "alignment": {"characters": []}},
                       "r") == []
    assert shape_drift(want, {"id": 1, "output": [2], "alignment": {"characters": ["H"]}, "extra": None}, "r") == [
        "r.id: expected string, got number (1)", "r.output[0]: expected string, got number (2)",
        "r.progress: missing (the reference has it)", "r.extra: not in the reference (null)"]
    schema = {"type": "object", "required": ["ratio"], "properties": {"ratio": {"type": "string", "enum": ["1:1"]},
                                                                       "n": {"type": "integer", "maximum": 3}}}
    assert schema_drift(schema, {"ratio": "2:1", "n": 4, "x": 1}, "b") == [
        "b.ratio: \"2:1\" is not one of the documented values ['1:1']", "b.n: 4 is above the documented maximum 3",
        "b.x: not a documented property (1)"]


@pytest.mark.parametrize("name", FIXTURES)
def test_client_matches_the_contract(name, server, media, monkeypatch, tmp_path):
    check = CLIENT_CHECKS.get(name)
    assert check, f"{name}.json: no client check"
    check(name, load(name), server, media, monkeypatch, tmp_path)


@pytest.mark.parametrize("name", FIXTURES)
def test_double_matches_the_contract(name, tmp_path):
    check = DOUBLE_CHECKS.get(name)
    assert check, f"{name}.json: no double check"
    check(name, load(name), tmp_path)
