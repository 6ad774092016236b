"""Calls to external services: a circuit breaker shared by the run's processes, retries, concurrency limits.

One ``ServiceGuard`` per service wraps every call as   semaphore → tenacity retry → pybreaker breaker → call.
Retries sit outside the breaker, so an open breaker (``pybreaker.CircuitBreakerError``) ends the call at once;
only errors a retry can fix are retried (5xx, 408, 429, timeouts, dropped connections, broken bodies), waiting
with exponential backoff plus jitter, or as long as the service's ``Retry-After`` says.

The breaker's state lives in a small JSON file under ``state_dir`` (guarded by ``fcntl.flock``), so failures
in any joblib worker count towards one breaker for the whole run: three workers failing once each open a
breaker with ``fail_max: 3``. On Dask the same state lives on the cluster instead (a ``RunState``:
renderer/ops/cluster_state.py), shared by every machine's workers. Without a ``state_dir`` the breaker is
local to the process. Once the reset
timeout has passed, exactly one caller (of all threads and processes) gets the half-open trial; the others fail
fast with ``CircuitBreakerError`` until its result closes or re-opens the breaker.

``cancel()`` (on Ctrl-C, SIGTERM, an aborted run) ends every retry loop of the process, the guards' and
``RetryPolicy.run``'s alike: backoff sleeps wake at once and no further attempt (request, Runway task) starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import pybreaker
import tenacity
from loguru import logger

from renderer.config import (
    BreakerConfig,
    BreakerServiceConfig,
    LimitsConfig,
    RetryConfig,
)
from renderer.ops import health
from renderer.ops.logs import redact

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 429})  # plus every 5xx
REQUEST_FAULT_STATUSES = frozenset({400, 404, 409, 413, 415, 422})  # this request was refused; service is fine
NON_RETRYABLE_CODES = frozenset({"invalid_api_key", "quota_exceeded", "unauthorized", "payment_required",
                                 "voice_not_found", "model_not_found", "deadline", "cancelled"})
RETRYABLE_CODES = frozenset({"too_many_concurrent_requests", "system_busy", "rate_limit_exceeded", "timeout",
                             "connection", "truncated", "malformed_response", "malformed_audio",
                             "malformed_video"})


class ServiceError(RuntimeError):
    """A failed call to an external service, classified: may a retry help (``retryable``)?"""

    def __init__(self, service: str, status: int | None, code: str, message: str, retryable: bool,
                 retry_after: float | None = None):
        self.service = service
        self.status = status
        self.code = code
        self.message = redact(message)
        self.retryable = retryable
        self.retry_after = retry_after
        where = f"HTTP {status}, {code}" if status else code
        super().__init__(f"{service}: {self.message} ({where})")

    @property
    def request_fault(self) -> bool:
        """The service refused this one request (bad input, content policy): it is healthy, the breaker ignores it."""
        return self.status in REQUEST_FAULT_STATUSES or self.code.upper().startswith("SAFETY")

    def __reduce__(self):  # picklable across joblib workers despite the custom __init__
        return (type(self), (self.service, self.status, self.code, self.message, self.retryable, self.retry_after))


class Cancelled(RuntimeError):
    """The caller asked a provider to stop (Ctrl-C, batch abort); never retried, never counted by the breaker."""


def retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


def is_retryable(exc: BaseException) -> bool:
    """Retry only what a retry can fix; an open breaker, a refusal or anything unexpected is final."""
    return isinstance(exc, ServiceError) and exc.retryable


_API_RETRY = RetryConfig().api  # the schema is the one source of the defaults
_LIMITS = LimitsConfig()  # ... and of a guard's request timeout and concurrency


# --- cancellation ------------------------------------------------------------------------------------------
_cancel = threading.Event()


def cancel() -> None:
    """Stop every retry loop of this process (Ctrl-C, SIGTERM, an aborted run): backoff sleeps wake at once and
    no loop starts another attempt — it raises ``Cancelled`` instead."""
    _cancel.set()


def cancelled() -> bool:
    """Has ``cancel()`` been called (and not reset)? A graph running in a thread no signal reaches (a Dask
    worker's) looks at this to stop."""
    return _cancel.is_set()


def reset_cancel() -> None:
    """Let retry loops run again after ``cancel()`` (a new run in a long-lived process, tests)."""
    _cancel.clear()


def retrying(*, stop: tenacity.stop.stop_base, wait: Callable[[tenacity.RetryCallState], float],
             retry: Callable[[BaseException], bool], before_sleep: Callable[[tenacity.RetryCallState], None],
             cancelled: Callable[[], bool] = lambda: False) -> tenacity.Retrying:
    """A tenacity loop that ends on ``cancel()`` (or when ``cancelled()`` turns true): it sleeps on the shared
    event, so a backoff wakes at once, raises ``Cancelled`` instead of starting an attempt (the first one
    included), and does not retry a failure seen after the cancellation (that failure is raised)."""
    def stopping() -> bool:
        return _cancel.is_set() or cancelled()

    def before(state: tenacity.RetryCallState) -> None:
        if stopping():
            raise Cancelled(f"cancelled before attempt {state.attempt_number}")

    return tenacity.Retrying(stop=stop, wait=wait, retry=tenacity.retry_if_exception(
                                 lambda exc: retry(exc) and not stopping()),
                             sleep=_cancel.wait, before=before, before_sleep=before_sleep, reraise=True)


def _ignored_by_breaker(exc: BaseException) -> bool:
    return isinstance(exc, Cancelled) or not isinstance(exc, Exception) or (
        isinstance(exc, ServiceError) and exc.request_fault)


# --- breaker state shared by processes ---------------------------------------------------------------------
def _fresh_state(state: str = pybreaker.STATE_CLOSED) -> dict[str, Any]:
    return {"state": state, "counter": 0, "success_counter": 0, "opened_at": None,
            "trial_owner": None, "trial_until": 0.0}


def _trial_owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"  # unique over a cluster's machines


class BreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker's state (state, failure/success counters, opened_at) and the half-open trial slot, kept as one
    dict that is read and changed in transactions; subclasses say where it lives and what lock guards it."""

    def _transaction(self, exclusive: bool = True) -> AbstractContextManager[dict[str, Any]]:
        raise NotImplementedError

    def _get(self, key: str) -> Any:
        with self._transaction(exclusive=False) as data:
            return data[key]

    def _set(self, **changes: Any) -> None:
        with self._transaction() as data:
            data.update(changes)

    def _add(self, key: str, n: int) -> None:
        with self._transaction() as data:
            data[key] += n

    def snapshot(self) -> dict[str, Any]:
        with self._transaction(exclusive=False) as data:
            return dict(data)

    def claim_trial(self, reset_timeout_s: float, hold_s: float) -> bool:
        """May this caller call the service now? Yes while closed; no while open within ``reset_timeout_s``;
        after that (half-open) one caller at a time, which claims the trial for ``hold_s`` (the request
        timeout: a trial whose process died expires instead of blocking the breaker for ever)."""
        now = time.time()
        with self._transaction() as data:
            if data["state"] == pybreaker.STATE_CLOSED:
                return True
            opened_at = data["opened_at"]
            if data["state"] == pybreaker.STATE_OPEN and opened_at is not None and now < opened_at + reset_timeout_s:
                return False
            if data["trial_until"] > now:
                return False
            data.update(state=pybreaker.STATE_HALF_OPEN, trial_owner=_trial_owner(), trial_until=now + hold_s)
            return True

    def end_trial(self) -> None:
        """Free the trial slot if this thread holds it (its result has closed or re-opened the breaker)."""
        with self._transaction() as data:
            if data["trial_owner"] == _trial_owner():
                data.update(trial_owner=None, trial_until=0.0)

    @property
    def state(self) -> str:
        return self._get("state")

    @state.setter
    def state(self, state: str) -> None:
        self._set(state=str(state))

    def increment_counter(self) -> None:
        self._add("counter", 1)

    def reset_counter(self) -> None:
        self._set(counter=0)

    def increment_success_counter(self) -> None:
        self._add("success_counter", 1)

    def reset_success_counter(self) -> None:
        self._set(success_counter=0)

    @property
    def counter(self) -> int:
        return int(self._get("counter"))

    @property
    def success_counter(self) -> int:
        return int(self._get("success_counter"))

    @property
    def opened_at(self) -> datetime | None:
        stamp = self._get("opened_at")
        return None if stamp is None else datetime.fromtimestamp(stamp, UTC)

    @opened_at.setter
    def opened_at(self, when: datetime) -> None:
        self._set(opened_at=when.timestamp())


class MemoryBreakerStorage(BreakerStorage):
    """The state in this process only, under a thread lock."""

    def __init__(self, state: str = pybreaker.STATE_CLOSED):
        super().__init__("memory")
        self._data = _fresh_state(state)
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self, exclusive: bool = True) -> Iterator[dict[str, Any]]:
        with self._lock:
            yield self._data


class FileBreakerStorage(BreakerStorage):
    """The state in a JSON file under an flock: all processes of a run see one breaker per service.

    Every transaction takes the lock; a changed state replaces the file atomically.
    """

    def __init__(self, path: Path | str, state: str = pybreaker.STATE_CLOSED):
        super().__init__("file")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_suffix(".lock")
        with self._locked():
            if not self.path.exists():
                self._write(_fresh_state(state))

    @contextmanager
    def _locked(self, exclusive: bool = True) -> Iterator[None]:
        with open(self._lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextmanager
    def _transaction(self, exclusive: bool = True) -> Iterator[dict[str, Any]]:
        with self._locked(exclusive):
            data = self._read()
            before = dict(data)
            yield data
            if exclusive and data != before:
                self._write(data)

    def _read(self) -> dict[str, Any]:
        try:
            return _fresh_state() | json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a missing or damaged file is a closed breaker
            return _fresh_state()

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.path)


class SharedBreaker(pybreaker.CircuitBreaker):
    """A pybreaker breaker for callers in many threads and processes, with one trial call when half-open.

    pybreaker serialises ``call`` with one lock per breaker object, which would let only one request per
    process reach a service at a time; here concurrency is the semaphore's job and state lives in the
    storage. Without that lock pybreaker's half-open state lets every concurrent caller through, so the trial
    is claimed in the storage (``claim_trial``): everyone else fails fast until its result closes or re-opens
    the breaker.
    """

    def __init__(self, *args: Any, state_storage: BreakerStorage, trial_timeout_s: float, **kwargs: Any):
        super().__init__(*args, state_storage=state_storage, **kwargs)
        self.storage = state_storage  # ours to keep: pybreaker's own reference to it is private
        self.trial_timeout_s = trial_timeout_s

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        state = self.state
        if state.name == pybreaker.STATE_CLOSED:
            return state.call(func, *args, **kwargs)
        storage = self.storage
        if not storage.claim_trial(self.reset_timeout, self.trial_timeout_s):
            raise pybreaker.CircuitBreakerError(f"{self.name}: circuit breaker open (while half-open, one trial "
                                                "call at a time)")
        try:
            return self.state.call(func, *args, **kwargs)  # half-open now: its result closes or re-opens it
        finally:
            storage.end_trial()


# --- config ------------------------------------------------------------------------------------------------
def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, dict) or hasattr(cfg, "keys"):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _has(cfg: Any, key: str) -> bool:
    return _get(cfg, key) is not None


@dataclass(frozen=True)
class RetryPolicy:
    """A retry policy; unset fields take the schema's ``retry.api`` defaults (renderer/config.py)."""

    attempts: int = _API_RETRY.attempts
    wait_s: float = _API_RETRY.wait_s
    max_wait_s: float = _API_RETRY.max_wait_s
    exponential: bool = _API_RETRY.exponential
    jitter_s: float = _API_RETRY.jitter_s

    @classmethod
    def from_cfg(cls, cfg: Any) -> RetryPolicy:
        """From ``cfg.retry`` (its ``api`` policy is used) or from one policy."""
        if _has(cfg, "api"):
            cfg = _get(cfg, "api")
        base = cls()
        return cls(**{name: type(getattr(base, name))(_get(cfg, name, getattr(base, name)))
                      for name in base.__dataclass_fields__})

    def run(self, fn: Callable[[], T], what: str = "", *, cancelled: Callable[[], bool] = lambda: False) -> T:
        """``fn()`` with up to ``attempts`` tries (any Exception but ``Cancelled``; an interruption such as
        KeyboardInterrupt is never retried). ``cancel()`` or ``cancelled()`` ends the loop (see ``retrying``)."""
        def log(state: tenacity.RetryCallState) -> None:
            logger.warning("{} failed (attempt {} of {}), retrying: {}", what or "call", state.attempt_number,
                           self.attempts, redact(str(state.outcome.exception())))

        return retrying(stop=tenacity.stop_after_attempt(max(1, self.attempts)), wait=self.backoff(),
                        retry=lambda exc: isinstance(exc, Exception) and not isinstance(exc, Cancelled),
                        before_sleep=log, cancelled=cancelled)(fn)

    def backoff(self) -> tenacity.wait.wait_base:
        base = (tenacity.wait_exponential(multiplier=self.wait_s, max=self.max_wait_s) if self.exponential
                else tenacity.wait_fixed(min(self.wait_s, self.max_wait_s)))
        return base + tenacity.wait_random(0, self.jitter_s) if self.jitter_s > 0 else base


def breaker_settings(service: str, cfg: Any) -> tuple[int, float]:
    """(fail_max, reset_timeout_s) from ``cfg.breaker`` (the service's entry is used) or from one entry;
    what is unset takes the schema's defaults for the service (renderer/config.py, BreakerConfig)."""
    default = getattr(BreakerConfig(), service, BreakerServiceConfig())
    if _has(cfg, service):
        cfg = _get(cfg, service)
    return (int(_get(cfg, "fail_max", default.fail_max)),
            float(_get(cfg, "reset_timeout_s", default.reset_timeout_s)))


# --- the guard ---------------------------------------------------------------------------------------------
@dataclass
class CallRecord:
    """What happened to one guarded call: for logs, the script's JSON and the manifest."""

    service: str
    operation: str
    attempts: int = 0
    waits_s: list[float] = field(default_factory=list)
    seconds: float = 0.0
    ok: bool = False
    error: str = ""
    error_code: str = ""
    breaker_state: str = ""


_semaphores: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_semaphores_lock = threading.Lock()
SLOT_POLL_S = 0.05  # how often a caller waiting for a free slot of a run looks again


def service_semaphore(service: str, limit: int) -> threading.BoundedSemaphore:
    """One semaphore per service and limit in this process: every guard of the service shares it."""
    with _semaphores_lock:
        return _semaphores.setdefault((service, limit), threading.BoundedSemaphore(max(1, limit)))


class RunSemaphore:
    """``limit`` slots shared by every thread and process of a run: each slot is a file under ``state_dir``
    held with an exclusive flock while in use, so a process that dies frees its slot with it."""

    def __init__(self, state_dir: Path | str, service: str, limit: int):
        self.paths = [Path(state_dir) / f"{service}.slot{k}" for k in range(max(1, limit))]
        self.paths[0].parent.mkdir(parents=True, exist_ok=True)
        self._held = threading.local()

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a free slot, waiting up to ``timeout`` (None: as long as it takes); False when none came free.
        Raises ``Cancelled`` once ``cancel()`` is called."""
        until = None if timeout is None else time.monotonic() + timeout
        while True:
            for path in self.paths:
                fh = open(path, "a")
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.close()
                    continue
                self._held.__dict__.setdefault("files", []).append(fh)
                return True
            if until is not None and time.monotonic() >= until:
                return False
            if _cancel.wait(SLOT_POLL_S):
                raise Cancelled("cancelled while waiting for a free connection slot")

    def release(self) -> None:
        fh = self._held.files.pop()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


class RunState:
    """Where one run keeps what all its workers share: a breaker per service and its API slots. Files under a
    directory for the local backends (``FileRunState``); the cluster itself on Dask
    (renderer/ops/cluster_state.py)."""

    def breaker_storage(self, service: str) -> BreakerStorage:
        raise NotImplementedError

    def semaphore(self, service: str, limit: int) -> Any:
        """An object with ``acquire(timeout) -> bool`` (raising ``Cancelled`` after ``cancel()``) and ``release()``."""
        raise NotImplementedError

    def breaker_snapshot(self, service: str) -> dict[str, Any] | None:
        """The breaker's state as stored, read without its lock, for a monitor (None: not used in this run)."""
        return None

    def record(self, name: str) -> SharedRecord:
        """A small dict every worker of the run changes in transactions (a service's rate budget)."""
        raise NotImplementedError


class SharedRecord:
    """A dict of plain data shared by a run's workers: ``with record.transaction() as data:`` reads it and,
    when the block changed it, stores it, all under the record's lock."""

    def transaction(self) -> AbstractContextManager[dict[str, Any]]:
        raise NotImplementedError


class FileRecord(SharedRecord):
    """The dict in a JSON file, changed under an flock and replaced atomically (one machine's processes)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    data = {}
                data = data if isinstance(data, dict) else {}
                before = dict(data)
                yield data
                if data != before:
                    tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                    tmp.write_text(json.dumps(data), encoding="utf-8")
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


class FileRunState(RunState):
    """Breakers in JSON files under an flock, API slots as flocked slot files: one machine's processes."""

    def __init__(self, state_dir: Path | str):
        self.dir = Path(state_dir)

    def breaker_storage(self, service: str) -> BreakerStorage:
        return FileBreakerStorage(self._breaker_file(service))

    def semaphore(self, service: str, limit: int) -> RunSemaphore:
        return RunSemaphore(self.dir, service, limit)

    def breaker_snapshot(self, service: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._breaker_file(service).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _breaker_file(self, service: str) -> Path:
        return self.dir / f"breaker-{service}.json"

    def record(self, name: str) -> FileRecord:
        return FileRecord(self.dir / f"{name}.json")


def run_state(state: RunState | Path | str | None) -> RunState | None:
    """``state`` as a RunState: a directory means files there; None: nothing shared beyond this process."""
    return state if isinstance(state, RunState) or state is None else FileRunState(state)


class ServiceGuard:
    """semaphore → retry → breaker → call, with a record of each call (``last_call`` is per thread)."""

    def __init__(self, service: str, breaker: pybreaker.CircuitBreaker, policy: RetryPolicy, *,
                 timeout_s: float, max_concurrency: int, state_dir: RunState | Path | str | None = None):
        self.service = service
        self.breaker = breaker
        self.policy = policy
        self.timeout_s = timeout_s
        self.max_concurrency = max_concurrency
        # with a run's state, the limit holds for all its processes (or the cluster's); else for this process
        state = run_state(state_dir)
        self.semaphore = (state.semaphore(service, max_concurrency) if state is not None
                          else service_semaphore(service, max_concurrency))
        self._local = threading.local()
        self._lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        return f"ServiceGuard({self.service!r}, breaker={self.breaker_state}, attempts={self.policy.attempts})"

    @property
    def breaker_state(self) -> str:
        return self.breaker.current_state

    @property
    def last_call(self) -> dict[str, Any] | None:
        """The record of the last call made by this thread (the stage that just failed or succeeded)."""
        return getattr(self._local, "last_call", None)

    def request_timeout(self, deadline: float | None = None) -> float:
        """Per-request timeout: the configured one, cut to what is left before ``deadline`` (monotonic)."""
        if deadline is None:
            return self.timeout_s
        return max(0.05, min(self.timeout_s, deadline - time.monotonic()))

    def summary(self) -> dict[str, Any]:
        with self._lock:
            calls = list(self.calls)
        return {"service": self.service, "breaker_state": self.breaker_state,
                "failure_count": self.breaker.fail_counter, "calls": len(calls),
                "failed_calls": sum(not c["ok"] for c in calls),
                "retries": sum(max(0, c["attempts"] - 1) for c in calls)}

    def call(self, fn: Callable[[], T], *, operation: str = "", deadline: float | None = None) -> T:
        """Run ``fn`` under the guard; raise its last error (or ``CircuitBreakerError``) when it gives up.

        ``deadline`` (time.monotonic()) stops retries that could not start in time; after ``cancel()`` no
        attempt starts (``Cancelled``) and a backoff wait ends at once.
        """
        record = CallRecord(self.service, operation or "call")
        started = time.monotonic()

        def attempt() -> T:
            record.attempts += 1
            with self._slot(deadline):
                return self.breaker.call(fn)

        stop = tenacity.stop_after_attempt(max(1, self.policy.attempts))
        if deadline is not None:
            stop = stop | tenacity.stop_before_delay(max(0.0, deadline - started))
        loop = retrying(stop=stop, wait=self._wait, retry=is_retryable,
                        before_sleep=lambda state: self._before_sleep(state, record))
        try:
            result = loop(attempt)
            record.ok = True
            return result
        except BaseException as exc:
            record.error = f"{type(exc).__name__}: {redact(str(exc))}"
            record.error_code = ("circuit_open" if isinstance(exc, pybreaker.CircuitBreakerError)
                                 else getattr(exc, "code", "") or type(exc).__name__)
            raise
        finally:
            record.seconds = round(time.monotonic() - started, 3)
            record.breaker_state = self.breaker_state
            self._remember(record)
            if record.error_code not in ("Cancelled", "KeyboardInterrupt", "SystemExit"):  # no fault of the service
                health.record(self.service, record.seconds, record.ok, kind="api", error=record.error,
                              breaker=record.breaker_state, attempts=record.attempts,
                              rejected=record.error_code == "circuit_open")

    @contextmanager
    def _slot(self, deadline: float | None) -> Iterator[None]:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self.semaphore.acquire(timeout=wait):
            raise ServiceError(self.service, None, "deadline", "no free connection slot before the deadline", False)
        try:
            yield
        finally:
            self.semaphore.release()

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Backoff with jitter; a ``Retry-After`` from the service wins (capped at max_wait_s)."""
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            return max(0.0, min(float(after), self.policy.max_wait_s))
        return self.policy.backoff()(state)

    def _before_sleep(self, state: tenacity.RetryCallState, record: CallRecord) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        record.waits_s.append(round(wait, 3))
        exc = state.outcome.exception() if state.outcome else None
        logger.warning("{} {}: attempt {} failed ({}), retrying in {:.2f} s", self.service, record.operation,
                       state.attempt_number, redact(str(exc)), wait)

    def _remember(self, record: CallRecord) -> None:
        data = asdict(record)
        self._local.last_call = data
        with self._lock:
            self.calls.append(data)
        if not record.ok:
            logger.warning("{} {} failed after {} attempt(s), breaker {}: {}", self.service, record.operation,
                           record.attempts, record.breaker_state, record.error)


def breaker_states(shared: RunState, services: Iterable[str], breaker_cfg: Any = None) -> dict[str, dict[str, Any]]:
    """The run's shared breakers (in files, or on the cluster: ``shared``) as a monitor shows them, read without
    taking their locks: state, failures counted, when an open one lets a trial through (``retry_at``).
    An open breaker whose reset timeout has passed shows ``half_open``: its next call is the trial."""
    out: dict[str, dict[str, Any]] = {}
    for service in sorted(services):
        raw = shared.breaker_snapshot(service)
        if not isinstance(raw, dict):
            continue
        data = _fresh_state() | raw
        state, opened_at = data["state"], data["opened_at"]
        retry_at = None
        if state == pybreaker.STATE_OPEN and opened_at is not None:
            retry_at = opened_at + breaker_settings(service, breaker_cfg)[1]
            if time.time() >= retry_at:
                state = pybreaker.STATE_HALF_OPEN
        out[service] = {"state": state, "failures": int(data["counter"]),
                        "retry_at": None if retry_at is None else datetime.fromtimestamp(retry_at, UTC).isoformat(
                            timespec="seconds")}
    return out


def build_breaker(service: str, breaker_cfg: Any = None, *, state_dir: RunState | Path | str | None = None,
                  trial_timeout_s: float = _LIMITS.api_timeout_s) -> SharedBreaker:
    """The breaker of ``service``; ``trial_timeout_s`` bounds how long one half-open trial holds its slot."""
    fail_max, reset_timeout_s = breaker_settings(service, breaker_cfg)
    state = run_state(state_dir)
    storage = state.breaker_storage(service) if state is not None else MemoryBreakerStorage()
    return SharedBreaker(fail_max=fail_max, reset_timeout=reset_timeout_s, exclude=[_ignored_by_breaker],
                         state_storage=storage, name=service, throw_new_error_on_trip=False,
                         trial_timeout_s=trial_timeout_s)


def build_guard(service: str, breaker_cfg: Any = None, retry_cfg: Any = None, *,
                state_dir: RunState | Path | str | None = None, timeout_s: float = _LIMITS.api_timeout_s,
                max_concurrency: int | None = None) -> ServiceGuard:
    """The guard for ``service`` from config: ``breaker_cfg`` is ``cfg.breaker`` (or its service entry),
    ``retry_cfg`` is ``cfg.retry`` (its ``api`` policy is used) or one policy; ``state_dir`` shares the
    breaker between processes (one directory per run, or a ``RunState``: the cluster's); a half-open trial holds its slot for at most
    ``timeout_s``, the request timeout; ``max_concurrency`` requests at once (by default the schema's
    ``limits.api_concurrency`` for the service), over all processes of the run when there is a ``state_dir``."""
    if max_concurrency is None:
        max_concurrency = getattr(_LIMITS.api_concurrency, service)
    return ServiceGuard(service, build_breaker(service, breaker_cfg, state_dir=state_dir, trial_timeout_s=timeout_s),
                        RetryPolicy.from_cfg(retry_cfg), timeout_s=timeout_s, max_concurrency=max_concurrency,
                        state_dir=state_dir)
