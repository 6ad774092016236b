"""Runway scene visuals over its HTTP API: a generation task per scene, polled, downloaded, fitted to the scene.

``POST {base_url}/v1/text_to_video`` (``image_to_video`` from an image URL: given, or written in the scene's Visual
line, e.g. ``Visual: https://example.com/harbour.jpg slow push in``, with ``image_model``) with
``Authorization: Bearer`` RUNWAY_API_KEY and ``X-Runway-Version``; the answer's task id is polled at
``GET /v1/tasks/{id}`` every ``poll_interval_s`` (+ jitter) until SUCCEEDED / FAILED / CANCELLED. A task that
is interrupted (Ctrl-C, ``cancel()``, timeout, repeated poll errors) is cancelled with ``DELETE /v1/tasks/{id}``;
``cancel()`` DELETEs every running task at once (side by side, ``CANCEL_TIMEOUT_S`` each, wherever the threads
waiting on them are) and no request starts after it.
The output (a pre-signed URL: downloaded without the key) is looped or held on its last frame to last the
scene; assembly scales it to the format.
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import quote

from renderer.media import ffmpeg
from renderer.ops.reliability import Cancelled, ServiceError, ServiceGuard
from renderer.providers.base import SCENE_TIMEOUT_S, VisualClip
from renderer.providers.fit import FITS, fit_clip
from renderer.providers.http import Client, Guarded, api_key, json_body

# text_to_video takes fewer ratios than image_to_video: gen4.5 only these two (API reference, text_to_video body)
TEXT_TO_VIDEO_RATIOS = {"gen4.5": ("1280:720", "720:1280")}
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
NOT_RETRYABLE_FAILURES = ("SAFETY", "INPUT_PREPROCESSING.SAFETY", "ASSET.INVALID")
# an image in a Visual line: an https URL (or a data URI) of a picture Runway takes as the first frame
IMAGE_IN_PROMPT = re.compile(r"(https://\S+?\.(?:png|jpe?g|webp)(?:\?\S*)?|data:image/[a-z]+;base64,[A-Za-z0-9+/=]+)"
                             r"(?=[\s,;)]|$)", re.IGNORECASE)
MAX_POLL_ERRORS = 3  # consecutive failed polls before the task is given up
CANCEL_TIMEOUT_S = 2.0  # one DELETE of a cancelled task: short, so an interrupted batch ends within its grace


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def truncate_at_word(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when there is one."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit + 1].rsplit(" ", 1)[0]
    return (cut if 0 < len(cut) <= limit else text[:limit]).rstrip(" ,;:")


def split_image(prompt: str) -> tuple[str, str | None]:
    """A Visual line's prompt text and the image URL written in it, if any (the first one)."""
    match = IMAGE_IN_PROMPT.search(prompt)
    if not match:
        return prompt, None
    text = (prompt[:match.start()] + " " + prompt[match.end():]).strip(" \t,;:-—")
    return " ".join(text.split()), match.group(1)


def nearest_ratio(width: int, height: int, ratios: list[str] | tuple[str, ...]) -> str:
    """The allowed ``W:H`` ratio closest in shape to width x height."""
    def distance(ratio: str) -> float:
        w, h = (int(x) for x in ratio.split(":"))
        return abs(math.log((w / h) / (width / height)))

    return min(ratios, key=distance)


def task_failure(service: str, task: dict[str, Any]) -> ServiceError:
    code = str(task.get("failureCode") or "FAILED")
    message = str(task.get("failure") or "the generation failed")
    return ServiceError(service, None, code, message, not code.upper().startswith(NOT_RETRYABLE_FAILURES))


class RunwayVisual(Guarded):
    """Built from RunwayVisualConfig (renderer/config.py), where its settings' defaults live. ``scale``, ``fps``
    and ``sources`` are its procedural stand-in's (renderer/providers/chain.py), not Runway's."""

    # how we wait and recover, and what the stand-in draws: not what Runway makes
    UNKEYED = ("poll_interval_s", "poll_jitter_s", "fallback", "scale", "fps", "sources", "shot_s", "max_download_mb")
    service = "runway"

    def __init__(self, *, name: str, base_url: str, api_version: str, model: str, image_model: str, ratio: str,
                 ratios: Sequence[str], min_duration_s: int, max_duration_s: int, prompt_limit: int, cinematic: bool,
                 cinematic_style: str, fit: str, shot_s: float, poll_interval_s: float, poll_jitter_s: float,
                 fallback: bool, max_download_mb: float, scale: float, fps: int, sources: Sequence[str]):
        del scale, fps, sources  # the procedural stand-in's, built from the same config (chain.py)
        if fit not in FITS:
            raise ValueError(f"unknown runway fit {fit!r}: use loop (repeat the clip) or extend (hold its last frame)")
        if not ratios:
            raise ValueError("visual.ratios is empty: list the W:H ratios Runway may be asked for")
        self.name = name
        self.model = model
        self.image_model = image_model
        self.ratio = ratio
        self.ratios = list(ratios)
        self.min_duration_s = int(min_duration_s)
        self.max_duration_s = int(max_duration_s)
        self.prompt_limit = int(prompt_limit)
        self.cinematic = bool(cinematic) or env_flag("RUNWAY_CINEMATIC_MODE")
        self.cinematic_style = cinematic_style
        self.fit = fit
        self.shot_s = float(shot_s)
        self.poll_interval_s = float(poll_interval_s)
        self.poll_jitter_s = float(poll_jitter_s)
        self.fallback = fallback
        self.max_bytes = int(max_download_mb * 1e6)
        # the environment can switch the style on: the version (part of the cache key) says so
        self.version = "2-cinematic" if self.cinematic else "2"  # 2: text_to_video ratios as documented
        headers = {"Authorization": f"Bearer {api_key('RUNWAY_API_KEY', 'Runway')}", "X-Runway-Version": api_version}
        self.client = Client(self.service, base_url, headers)
        self.guard: ServiceGuard | None = None  # set by the pipeline; see Guarded
        self.on_poll: Callable[[dict[str, Any]], None] | None = None  # sees every polled task (progress, tests)
        self._default_guard: ServiceGuard | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._tasks = {"created": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
        self._running: set[str] = set()  # created, not ended, not yet DELETEd (by whoever takes it out first)

    def __repr__(self) -> str:
        return f"RunwayVisual(name={self.name!r}, base_url={self.client.base_url!r}, model={self.model!r})"

    # --- public ----------------------------------------------------------------------------------------
    def render(self, prompt: str, out: Path, *, width: int, height: int, duration: float,
               timeout: float = SCENE_TIMEOUT_S, image_url: str | None = None, shot: int = 0) -> VisualClip:
        """A clip of ``duration`` seconds for ``prompt`` (from ``image_url`` when given), at ``out`` (mp4); a
        scene's later ``shot`` asks with a seed of its own, so each of its shots is a different clip."""
        deadline = time.monotonic() + timeout
        if image_url is None:
            prompt, image_url = split_image(prompt)
        endpoint, body = self.request_body(prompt, width=width, height=height, duration=duration,
                                           image_url=image_url, shot=shot)
        guard = self.active_guard()
        url = guard.call(lambda: self._run_task(endpoint, body, deadline), operation=endpoint, deadline=deadline)
        raw = out.with_name(f"{out.stem}.runway.mp4")
        try:
            self._stop_if_cancelled()
            guard.call(lambda: self._download(url, raw, deadline), operation="download", deadline=deadline)
            self._stop_if_cancelled()
            fit_clip(raw, out, duration, fit=self.fit, timeout=max(10.0, deadline - time.monotonic()))
        finally:
            raw.unlink(missing_ok=True)
        return VisualClip(out, duration, provider=self.name)

    def request_body(self, prompt: str, *, width: int, height: int, duration: float,
                     image_url: str | None = None, shot: int = 0) -> tuple[str, dict[str, Any]]:
        """The endpoint and JSON body of the generation request (a later shot's with its own seed)."""
        style = self.cinematic_style if self.cinematic else ""
        room = self.prompt_limit - (len(style) + 2 if style else 0)
        text = ", ".join(part for part in (truncate_at_word(prompt, room), style) if part)
        seconds = max(self.min_duration_s, min(self.max_duration_s, math.ceil(duration)))
        ratios = self.ratios if image_url else self._text_to_video_ratios()
        ratio = nearest_ratio(width, height, ratios) if self.ratio == "auto" else self.ratio
        body: dict[str, Any] = {"model": self.model, "promptText": text, "ratio": ratio, "duration": seconds}
        if shot:
            body["seed"] = zlib.crc32(f"{prompt}\0{shot}".encode())  # 0 .. 2**32 - 1, as the API takes it
        if image_url:
            if not text:
                del body["promptText"]  # optional with an image
            return "image_to_video", {**body, "model": self.image_model, "promptImage": image_url}
        return "text_to_video", body

    def _text_to_video_ratios(self) -> list[str]:
        """The configured ratios text_to_video takes with this model (all of them for a model not listed)."""
        documented = TEXT_TO_VIDEO_RATIOS.get(self.model)
        if documented is None:
            return self.ratios
        return [r for r in self.ratios if r in documented] or list(documented)

    def cancel(self) -> None:
        """Stop: every running task is DELETEd now, side by side (``CANCEL_TIMEOUT_S`` each), and no new task,
        poll or download starts; the threads waiting on the tasks give up. Called from another thread on abort
        (or from a polling thread); returns once the DELETEs are answered or timed out."""
        self._cancelled.set()  # first: a task created from now on is DELETEd by its own thread
        with self._lock:
            running, self._running = sorted(self._running), set()
        deleters = [threading.Thread(target=self._delete, args=(task_id, CANCEL_TIMEOUT_S), daemon=True,
                                     name=f"runway-delete-{n}") for n, task_id in enumerate(running)]
        for thread in deleters:
            thread.start()
        stop_at = time.monotonic() + CANCEL_TIMEOUT_S + 1.0  # a connect and a read timeout at most, in practice
        for thread in deleters:
            thread.join(max(0.0, stop_at - time.monotonic()))

    @property
    def stats(self) -> dict[str, Any]:
        with self._lock:
            tasks = dict(self._tasks)
        return {"service": self.service, "tasks": tasks, **self.client.stats(),
                "retries": self.retries()}

    # --- one task --------------------------------------------------------------------------------------

    def _count(self, what: str) -> None:
        with self._lock:
            self._tasks[what] += 1

    @staticmethod
    def _task_path(task_id: str) -> str:
        return f"/v1/tasks/{quote(task_id, safe='')}"

    def _timeout(self, deadline: float) -> float:
        return self.active_guard().request_timeout(deadline)

    def _stop_if_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise Cancelled(f"{self.name}: cancelled")

    def _take(self, task_id: str) -> bool:
        """Take ``task_id`` off the running tasks; True for the one caller that does (it may DELETE it)."""
        with self._lock:
            if task_id not in self._running:
                return False
            self._running.discard(task_id)
            return True

    def _run_task(self, endpoint: str, body: dict[str, Any], deadline: float) -> str:
        """Create a task and wait for its output URL; a task left unfinished is DELETEd."""
        self._stop_if_cancelled()  # e.g. a thread that waited for a connection slot while the run was cancelled
        resp = self.client.request("POST", f"/v1/{endpoint}", json=body, timeout=self._timeout(deadline))
        data = json_body(self.service, resp)
        task_id = str(data.get("id") or "") if isinstance(data, dict) else ""
        if not task_id:
            raise ServiceError(self.service, resp.status_code, "malformed_response", "the answer has no task id", True)
        self._count("created")
        with self._lock:
            self._running.add(task_id)
        try:
            task = self._wait(task_id, deadline)
        except BaseException as exc:  # interrupted, timed out, polls failing: don't leave it running (and billing)
            if self._take(task_id):  # unless cancel() has DELETEd it already
                stopping = self._cancelled.is_set() or isinstance(exc, (Cancelled, KeyboardInterrupt))
                # even past the deadline: stop the billing; quickly when the run is being stopped
                self._delete(task_id, CANCEL_TIMEOUT_S if stopping else max(2.0, min(10.0, self._timeout(deadline))))
            raise
        self._take(task_id)
        self._stop_if_cancelled()  # it ended while cancel() ran (CANCELLED by its DELETE): a cancellation, no failure
        if task["status"] == "SUCCEEDED":
            output = task.get("output") or []
            if not output or not isinstance(output[0], str):
                raise ServiceError(self.service, None, "malformed_response", "the task succeeded without output",
                                   True)
            self._count("succeeded")
            return output[0]
        self._count("failed")
        if task["status"] == "CANCELLED":
            raise ServiceError(self.service, None, "cancelled", f"task {task_id} was cancelled", False)
        raise task_failure(self.service, task)

    def _wait(self, task_id: str, deadline: float) -> dict[str, Any]:
        """Poll until the task ends (THROTTLED/PENDING/RUNNING keep polling; a few failed polls are tolerated)."""
        errors = 0
        while True:
            self._pause(deadline)
            try:
                resp = self.client.request("GET", self._task_path(task_id), timeout=self._timeout(deadline))
                task = json_body(self.service, resp)
                if not isinstance(task, dict) or "status" not in task:
                    raise ServiceError(self.service, resp.status_code, "malformed_response", "task has no status",
                                       True)
            except ServiceError as exc:
                errors += 1
                if not exc.retryable or errors >= MAX_POLL_ERRORS:
                    raise
                continue
            errors = 0
            if self.on_poll is not None:
                self.on_poll(task)
            if task["status"] in TERMINAL_STATES:
                return task

    def _pause(self, deadline: float) -> None:
        """Sleep one poll interval (+ jitter); raise when cancelled or when the deadline has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServiceError(self.service, None, "deadline", "the task did not finish in time", False)
        interval = self.poll_interval_s + random.uniform(0, self.poll_jitter_s)
        if self._cancelled.wait(min(interval, left)):
            raise Cancelled(f"{self.name}: cancelled")

    def _delete(self, task_id: str, timeout: float) -> None:
        """Cancel a running task (best effort: never hides the error that got us here)."""
        try:
            self.client.request("DELETE", self._task_path(task_id), timeout=timeout)
            self._count("cancelled")
        except ServiceError:
            pass

    def _download(self, url: str, dest: Path, deadline: float) -> None:
        self.client.download(url, dest, timeout=self._timeout(deadline), cancelled=self._cancelled.is_set,
                             max_bytes=self.max_bytes)
        try:
            info = ffmpeg.probe(dest, timeout=30)
        except ffmpeg.FFmpegError:
            info = None
        if info is None or info.first("video") is None:
            raise ServiceError(self.service, None, "malformed_video", "the downloaded output is not a video", True)

