"""Local doubles of the ElevenLabs and Runway APIs on 127.0.0.1: same wire protocol, real media, injected faults.

One server speaks both protocols, so one ``base_url`` serves ``voice=elevenlabs`` and ``visual=runway``:
  POST /v1/text-to-speech/{voice_id}[/with-timestamps]?output_format=pcm_22050|mp3_44100_128   (xi-api-key)
       → audio spoken by espeak-ng (or JSON {audio_base64, alignment})
  POST /v1/text_to_video | /v1/image_to_video  (Authorization: Bearer, X-Runway-Version) → {"id"}
  GET  /v1/tasks/{id}   → PENDING → RUNNING → SUCCEEDED {output: [url]} over ``task_seconds``
  DELETE /v1/tasks/{id} → 204, the task is CANCELLED
  GET  /files/{id}.mp4  → the task's video (rendered by ffmpeg on first download; no key, like a signed URL)
  GET  /_stats          → requests per endpoint, tasks, deleted tasks
A wrong key gets the service's real 401 error shape. Faults come at random (``fault_rate`` over ``faults``) or
scripted per endpoint (``script("tts", "429", "ok")``, consumed in order):
  500, 503 / 429 (with Retry-After), hang (no answer for ``hang_s``), malformed (broken JSON / non-audio body),
  truncated (body cut short of its Content-Length), quota (quota_exceeded / no credits),
  safety / internal / throttled (Runway task ends in SAFETY.INPUT.TEXT / INTERNAL.BAD_OUTPUT, or waits THROTTLED).

    python -m renderer.fakes --port 8765 [--latency 1.0 | --latency tts=1] [--task-seconds 3]
                             [--fault-rate 0.3] [--faults 500,429,hang] [--script tts=429,ok] [--seed 7]
In tests: ``with FakeAPI(elevenlabs_key=..., runway_key=...) as api: ... api.url ... api.count("tts")``.
The same command serves the Pexels and Pixabay doubles (renderer/devtools/stock_fakes.py) on ``--stock-port``
(default: the next port), over ``--catalogue FILE``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from renderer.devtools.double import LocalDouble, send
from renderer.devtools.stock_fakes import FakeStock
from renderer.media import ffmpeg
from renderer.ops.exits import Exit

ENDPOINTS = ("tts", "tts_timestamps", "create", "task", "delete", "download")
FAULTS_BY_ENDPOINT = {
    "tts": {"500", "503", "429", "hang", "malformed", "truncated", "quota"},
    "tts_timestamps": {"500", "503", "429", "hang", "malformed", "truncated", "quota"},
    "create": {"500", "503", "429", "hang", "malformed", "quota", "safety", "internal", "throttled"},
    "task": {"500", "503", "429", "hang", "malformed"},
    "delete": {"500"},
    "download": {"500", "hang", "truncated"},
}
ALL_FAULTS = sorted(set().union(*FAULTS_BY_ENDPOINT.values()))
DEFAULT_FAULTS = ("500", "429", "hang", "malformed", "truncated")
RUNWAY_VERSION = "2024-11-06"
# what the Runway reference documents, kept here on its own (not imported from the client, so the two cannot
# drift together): text_to_video ratios per model; image_to_video may leave duration out
TEXT_TO_VIDEO_RATIOS = {"gen4.5": ("1280:720", "720:1280")}
DEFAULT_VIDEO_SECONDS = 5  # an image_to_video task without duration (the reference gives no default)
VIDEO_FPS = 12


@dataclass
class Task:
    id: str
    ratio: str
    duration: int
    created: float
    outcome: str = "ok"  # ok | safety | internal
    throttled: bool = False
    cancelled: bool = False


class FakeAPI(LocalDouble):
    """The ElevenLabs and Runway doubles on one server; start/stop it, or use it as a context manager."""

    endpoints = ENDPOINTS

    def __init__(self, *, port: int = 0, elevenlabs_key: str | None = None, runway_key: str | None = None,
                 latency: float | dict[str, float] = 0.0, task_seconds: float = 1.0, fault_rate: float = 0.0,
                 faults: list[str] | tuple[str, ...] = DEFAULT_FAULTS, retry_after_s: float = 1.0,
                 hang_s: float = 30.0, max_chars: int = 5000, video_width: int = 160, seed: int | None = None):
        unknown = set(faults) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}: choose from {ALL_FAULTS}")
        super().__init__(port=port, fault_rate=fault_rate, faults=faults, seed=seed)
        self.keys = {"elevenlabs": elevenlabs_key, "runway": runway_key}  # None: any non-empty key passes
        self.latency = dict(latency) if isinstance(latency, dict) else {"*": float(latency)}
        self.task_seconds = task_seconds
        self.retry_after_s = retry_after_s
        self.hang_s = hang_s
        self.max_chars = max_chars
        self.video_width = video_width
        self.received: list[dict[str, Any]] = []  # JSON bodies of tts/create requests, for assertions
        self.tasks: dict[str, Task] = {}
        self.deleted: list[str] = []

    # --- test controls ---------------------------------------------------------------------------------
    def count(self, endpoint: str) -> int:
        with self._lock:
            return self.counts[endpoint]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": dict(self.counts), "deleted": list(self.deleted),
                    "tasks": {t.id: self._status(t)[0] for t in self.tasks.values()}}

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.received.clear()
            self.deleted.clear()
            self._scripts.clear()

    # --- dispatch --------------------------------------------------------------------------------------
    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(req.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        if parts.path == "/_stats" and method == "GET":
            return _send_json(req, 200, self.stats())
        route = _route(method, parts.path)
        if route is None:
            return _send_json(req, 404, {"detail": "Not Found"})
        endpoint, service, arg = route
        with self._lock:
            self.counts[endpoint] += 1
        self._sleep(self.latency.get(endpoint, self.latency.get("*", 0.0)))
        signed = endpoint == "download"  # output URLs are pre-signed: no key, no version header
        if not signed and not self._authorized(service, req):
            return _send_error(req, service, 401, "invalid_api_key", "Invalid API key")
        if service == "runway" and not signed and req.headers.get("X-Runway-Version") != RUNWAY_VERSION:
            return _send_json(req, 400, {"error": f"Invalid API Version: use X-Runway-Version: {RUNWAY_VERSION}"})
        fault = self._next_fault(endpoint)
        if fault == "hang":
            self._sleep(self.hang_s)
            fault = None
        if fault in ("500", "503", "429", "quota"):
            return self._send_fault(req, service, fault)
        try:
            getattr(self, f"_{endpoint}")(req, arg, body, query, fault)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to answer
            pass

    def _authorized(self, service: str, req: BaseHTTPRequestHandler) -> bool:
        if service == "elevenlabs":
            given = req.headers.get("xi-api-key", "")
        else:
            scheme, _, given = req.headers.get("Authorization", "").partition(" ")
            given = given if scheme == "Bearer" else ""
        expected = self.keys[service]
        return bool(given) and (expected is None or given == expected)

    def fault_kinds(self, endpoint: str) -> list[str]:
        return sorted(set(self.faults) & FAULTS_BY_ENDPOINT[endpoint])

    def _send_fault(self, req: BaseHTTPRequestHandler, service: str, fault: str) -> None:
        retry_after = {"Retry-After": f"{self.retry_after_s:g}"}
        if fault == "500":
            return _send_error(req, service, 500, "internal_server_error", "Internal server error (injected)")
        if fault == "503":
            return _send_error(req, service, 503, "system_busy", "The system is busy (injected)", retry_after)
        if fault == "429":
            return _send_error(req, service, 429, "too_many_concurrent_requests",
                               "Too many concurrent requests (injected)", retry_after)
        if service == "elevenlabs":  # quota
            return _send_error(req, service, 401, "quota_exceeded",
                               "This request exceeds your quota of 10000 characters (injected)")
        return _send_json(req, 400, {"error": "You do not have enough credits to run this task (injected)"})

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    # --- ElevenLabs --------------------------------------------------------------------------------------
    def _tts(self, req: BaseHTTPRequestHandler, voice_id: str, body: bytes, query: dict[str, str],
             fault: str | None, *, timestamps: bool = False) -> None:
        try:
            data = json.loads(body or b"null")
        except ValueError:
            data = None
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text.strip():
            return _send_json(req, 422, {"detail": [{"loc": ["body", "text"], "msg": "field required",
                                                     "type": "value_error.missing"}]})
        if len(text) > self.max_chars:
            return _send_error(req, "elevenlabs", 400, "max_character_limit_exceeded",
                               f"Text is {len(text)} characters; the limit is {self.max_chars}")
        output_format = query.get("output_format", "mp3_44100_128")
        codec, _, rest = output_format.partition("_")
        rate = rest.split("_")[0]
        if codec not in ("pcm", "mp3") or not rate.isdigit():
            return _send_error(req, "elevenlabs", 422, "invalid_output_format",
                               f"output_format {output_format!r} is not supported by this double")
        with self._lock:
            self.received.append({"endpoint": "tts_timestamps" if timestamps else "tts", "voice_id": voice_id,
                                  "query": query, "json": data})
        audio, seconds = self._speech(text, codec, int(rate), rest)
        if fault == "malformed":
            if timestamps:
                return send(req, 200, b'{"audio_base64": "AAA', "application/json")
            return send(req, 200, b"\x01\x02\x03", "application/octet-stream")
        if not timestamps:
            kind = "audio/mpeg" if codec == "mp3" else "application/octet-stream"
            return send(req, 200, audio, kind, truncate=fault == "truncated")
        step = seconds / max(1, len(text))
        alignment = {"characters": list(text),
                     "character_start_times_seconds": [round(i * step, 4) for i in range(len(text))],
                     "character_end_times_seconds": [round((i + 1) * step, 4) for i in range(len(text))]}
        payload = {"audio_base64": base64.b64encode(audio).decode(), "alignment": alignment,
                   "normalized_alignment": alignment}
        send(req, 200, json.dumps(payload).encode(), "application/json", truncate=fault == "truncated")

    def _tts_timestamps(self, req, voice_id, body, query, fault) -> None:  # type: ignore[no-untyped-def]
        self._tts(req, voice_id, body, query, fault, timestamps=True)

    def _speech(self, text: str, codec: str, rate: int, spec: str) -> tuple[bytes, float]:
        """``text`` spoken by espeak-ng, as raw 16-bit mono PCM or mp3 at ``rate``; and its length in seconds."""
        assert self._dir is not None
        stem = self._dir / uuid.uuid4().hex
        wav, txt = stem.with_suffix(".wav"), stem.with_suffix(".txt")
        txt.write_text(text, encoding="utf-8")
        espeak = shutil.which("espeak-ng") or shutil.which("espeak") or "espeak-ng"
        try:
            ffmpeg.run_tool([espeak, "-v", "en-us", "-s", "175", "-w", str(wav), "-f", str(txt)], timeout=60)
            with wave.open(str(wav)) as w:
                seconds = w.getnframes() / w.getframerate()
            if codec == "pcm":
                out = stem.with_suffix(".raw")
                ffmpeg.run(["-i", str(wav), "-ac", "1", "-ar", str(rate), "-f", "s16le", str(out)], timeout=60)
            else:
                kbps = (spec.split("_") + ["128"])[1]
                out = stem.with_suffix(".mp3")
                ffmpeg.run(["-i", str(wav), "-ac", "1", "-ar", str(rate), "-c:a", "libmp3lame", "-b:a", f"{kbps}k",
                            "-f", "mp3", str(out)], timeout=60)
            return out.read_bytes(), seconds
        finally:
            for path in stem.parent.glob(f"{stem.name}.*"):
                path.unlink(missing_ok=True)

    # --- Runway ------------------------------------------------------------------------------------------
    def _create(self, req: BaseHTTPRequestHandler, endpoint: str, body: bytes, query: dict[str, str],
                fault: str | None) -> None:
        if fault == "malformed":
            return send(req, 200, b'{"id": ', "application/json")
        try:
            data = json.loads(body or b"null")
        except ValueError:
            data = None
        issues = _runway_issues(data, image=endpoint == "image_to_video")
        if issues:
            return _send_json(req, 400, {"error": "Validation of body failed", "issues": issues})
        with self._lock:
            self.received.append({"endpoint": "create", "path": endpoint, "query": query, "json": data})
        seconds = int(data.get("duration") or DEFAULT_VIDEO_SECONDS)
        task = Task(uuid.uuid4().hex, data["ratio"], seconds, time.monotonic(),
                    outcome=fault if fault in ("safety", "internal") else "ok", throttled=fault == "throttled")
        with self._lock:
            self.tasks[task.id] = task
        _send_json(req, 200, {"id": task.id})

    def _task(self, req: BaseHTTPRequestHandler, task_id: str, body: bytes, query: dict[str, str],
              fault: str | None) -> None:
        if fault == "malformed":
            return send(req, 200, b'{"status": "RUNN', "application/json")
        task = self.tasks.get(task_id)
        if task is None:
            return _send_json(req, 404, {"error": "Task not found"})
        status, extra = self._status(task)
        created = datetime.fromtimestamp(time.time() - (time.monotonic() - task.created), UTC)
        _send_json(req, 200, {"id": task.id, "status": status, "createdAt": created.isoformat(), **extra})

    def _status(self, task: Task) -> tuple[str, dict[str, Any]]:
        if task.cancelled:
            return "CANCELLED", {}
        elapsed = time.monotonic() - task.created
        pending = self.task_seconds * 0.2
        if elapsed < pending:
            return ("THROTTLED" if task.throttled else "PENDING"), {}
        if elapsed < self.task_seconds:
            return "RUNNING", {"progress": round((elapsed - pending) / (self.task_seconds - pending), 2)}
        if task.outcome == "safety":
            return "FAILED", {"failure": "The prompt was rejected by content moderation (injected).",
                              "failureCode": "SAFETY.INPUT.TEXT"}
        if task.outcome == "internal":
            return "FAILED", {"failure": "The generation failed quality checks (injected).",
                              "failureCode": "INTERNAL.BAD_OUTPUT.CODE01"}
        return "SUCCEEDED", {"output": [f"{self.url}/files/{task.id}.mp4"]}

    def _delete(self, req: BaseHTTPRequestHandler, task_id: str, body: bytes, query: dict[str, str],
                fault: str | None) -> None:
        task = self.tasks.get(task_id)
        if task is None:
            return _send_json(req, 404, {"error": "Task not found"})
        with self._lock:
            task.cancelled = True
            self.deleted.append(task_id)
        send(req, 204, b"", "application/json")

    def _download(self, req: BaseHTTPRequestHandler, task_id: str, body: bytes, query: dict[str, str],
                  fault: str | None) -> None:
        task = self.tasks.get(task_id)
        if task is None or self._status(task)[0] != "SUCCEEDED":
            return send(req, 404, b"Not Found", "text/plain")
        send(req, 200, self._video(task).read_bytes(), "video/mp4", truncate=fault == "truncated")

    def _video(self, task: Task) -> Path:
        """The task's clip: a test pattern at the task's ratio (small) and duration; one render per shape."""
        assert self._dir is not None
        w, h = (int(x) for x in task.ratio.split(":"))
        width = self.video_width // 2 * 2
        height = max(2, round(width * h / w / 2) * 2)
        path = self._dir / f"clip-{width}x{height}-{task.duration}s.mp4"
        with self._render_lock:
            if not path.exists():
                tmp = path.with_suffix(".tmp.mp4")
                ffmpeg.run(["-f", "lavfi", "-i", f"testsrc2=s={width}x{height}:r={VIDEO_FPS}:d={task.duration}",
                            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-f", "mp4", str(tmp)],
                           timeout=60)
                tmp.rename(path)
        return path


# --- wire helpers ------------------------------------------------------------------------------------------
def _route(method: str, path: str) -> tuple[str, str, str] | None:
    """(endpoint, service, argument) of a request, or None."""
    parts = [p for p in path.split("/") if p]
    if method == "POST" and parts[:2] == ["v1", "text-to-speech"] and len(parts) in (3, 4):
        if len(parts) == 3:
            return "tts", "elevenlabs", parts[2]
        if parts[3] == "with-timestamps":
            return "tts_timestamps", "elevenlabs", parts[2]
    if method == "POST" and parts in (["v1", "text_to_video"], ["v1", "image_to_video"]):
        return "create", "runway", parts[1]
    if parts[:2] == ["v1", "tasks"] and len(parts) == 3:
        if method == "GET":
            return "task", "runway", parts[2]
        if method == "DELETE":
            return "delete", "runway", parts[2]
    if method == "GET" and parts[:1] == ["files"] and len(parts) == 2 and parts[1].endswith(".mp4"):
        return "download", "runway", parts[1][:-4]
    return None


def _runway_issues(data: Any, *, image: bool) -> list[dict[str, str]]:
    if not isinstance(data, dict):
        return [{"path": "", "message": "body must be a JSON object"}]
    issues = []
    prompt = data.get("promptText")
    if (prompt is not None or not image) and (not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 1000):
        issues.append({"path": "promptText", "message": "a string of 1 to 1000 characters"})
    ratio = data.get("ratio")
    if not isinstance(ratio, str) or len(ratio.split(":")) != 2 or not all(x.isdigit() for x in ratio.split(":")):
        issues.append({"path": "ratio", "message": "W:H, e.g. 1280:720"})
    elif not image and ratio not in TEXT_TO_VIDEO_RATIOS.get(str(data.get("model")), (ratio,)):
        model = data["model"]
        issues.append({"path": "ratio", "message": f"one of {', '.join(TEXT_TO_VIDEO_RATIOS[model])} for {model} "
                                                   "text_to_video"})
    duration = data.get("duration")
    if (duration is not None or not image) and (not isinstance(duration, int) or not 2 <= duration <= 10):
        issues.append({"path": "duration", "message": "an integer from 2 to 10"})
    if not isinstance(data.get("model"), str):
        issues.append({"path": "model", "message": "required"})
    if image and not isinstance(data.get("promptImage"), str):
        issues.append({"path": "promptImage", "message": "required"})
    return issues


def _send_error(req: BaseHTTPRequestHandler, service: str, status: int, code: str, message: str,
                headers: dict[str, str] | None = None) -> None:
    """An error in the service's own shape."""
    body = ({"detail": {"status": code, "message": message}} if service == "elevenlabs"
            else {"error": message})
    _send_json(req, status, body, headers)


def _send_json(req: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    send(req, status, json.dumps(body).encode(), "application/json", headers=headers)


# --- command line ------------------------------------------------------------------------------------------
def _latency(values: list[str]) -> dict[str, float]:
    latency: dict[str, float] = {}
    for value in values:
        endpoint, _, seconds = value.rpartition("=")
        latency[endpoint or "*"] = float(seconds)
    return latency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m renderer.fakes",
                                     description="Local ElevenLabs + Runway API doubles on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", action="append", default=[], metavar="[ENDPOINT=]SECONDS",
                        help=f"delay per request, for all or one endpoint ({', '.join(ENDPOINTS)}); repeatable")
    parser.add_argument("--task-seconds", type=float, default=3.0, help="Runway task time to SUCCEEDED")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests answered with a fault")
    parser.add_argument("--faults", default=",".join(DEFAULT_FAULTS), help=f"random faults among {ALL_FAULTS}")
    parser.add_argument("--script", action="append", default=[], metavar="ENDPOINT=F1,F2",
                        help="scripted answers for the next requests to ENDPOINT ('ok' = normal); repeatable")
    parser.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429/503")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long a 'hang' fault stalls")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stock-port", type=int, default=None, help="the Pexels + Pixabay doubles (default: port+1)")
    parser.add_argument("--catalogue", default=None, help="the stock doubles' clips (a JSON list; see stock_fakes.py)")
    parser.add_argument("--stock-429-rate", type=float, default=0.0, help="share of stock searches answered 429")
    args = parser.parse_args(argv)
    api = FakeAPI(port=args.port, latency=_latency(args.latency), task_seconds=args.task_seconds,
                  fault_rate=args.fault_rate, faults=[f for f in args.faults.split(",") if f],
                  retry_after_s=args.retry_after, hang_s=args.hang_seconds, seed=args.seed,
                  elevenlabs_key=os.environ.get("ELEVENLABS_API_KEY") or None,
                  runway_key=os.environ.get("RUNWAY_API_KEY") or None)
    for item in args.script:
        endpoint, _, faults = item.partition("=")
        api.script(endpoint, *faults.split(","))
    stock = FakeStock(port=args.port + 1 if args.stock_port is None else args.stock_port, catalogue=args.catalogue,
                      pexels_key=os.environ.get("PEXELS_API_KEY") or None, fault_rate=args.stock_429_rate,
                      pixabay_key=os.environ.get("PIXABAY_API_KEY") or None, seed=args.seed)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(Exit.OK))
    with api, stock:
        print(f"fake ElevenLabs + Runway APIs on {api.url} (Ctrl-C to stop); "
              f"use voice.base_url={api.url} visual.base_url={api.url}", flush=True)
        print(f"fake Pexels + Pixabay APIs on {stock.url}; use visual=stock visual.pexels_url={stock.url} "
              f"visual.pixabay_url={stock.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return Exit.OK
