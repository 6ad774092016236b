"""A service's rate limit as its own response headers state it, kept for every process of a run.

Stock services say how many requests are left (``X-Ratelimit-Remaining``) and when the window resets
(``X-Ratelimit-Reset``: Pixabay in seconds from now, Pexels as a UNIX time). A ``RateBudget`` holds those
figures in the run's shared state (``RunState.record``: a JSON file under an flock on the local backends, a
Variable under a Lock on a Dask cluster, as the breakers are kept), so the jobs of a batch share one budget: a request starts only while the budget has room; the last figures less the
requests still in flight (which the service may not have counted yet) are the room; answers of one window
may only lower it, as they may arrive out of order, and only a later window's raises it. Until a service has
answered once (a new run, or a window that has reset) one request at a time goes out, so the limit is never
crossed by requests started on a stale guess. A spent budget waits for its reset when that is near enough,
else the caller is told to go elsewhere (``RateLimited``).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from renderer.ops.reliability import (
    Cancelled,
    RunState,
    ServiceError,
    _cancel,
    run_state,
)

POLL_S = 0.05  # how often a caller waiting for room looks again
SAME_WINDOW_S = 1.5  # resets this close are one window's (a reset in whole seconds from now drifts by up to 1 s)


class RateLimited(ServiceError):
    """The service's rate limit is spent until later than the caller can wait: ask another service. ``sent``:
    the service said so (a 429, which its breaker counts); else the budget kept the request from going out."""

    def __init__(self, service: str, message: str, sent: bool = True):
        super().__init__(service, 429, "rate_limited", message, False)
        self.sent = sent

    @property
    def request_fault(self) -> bool:  # a request never sent is no failure of the service
        return not self.sent

    def __reduce__(self):
        return (type(self), (self.service, self.message, self.sent))


def _fresh() -> dict[str, Any]:
    return {"remaining": None, "reset_at": None, "in_flight": 0}


@dataclass(frozen=True)
class Reading:
    """What one answer said of the limit: requests left and when the window resets (UNIX time)."""

    remaining: int | None = None
    reset_at: float | None = None


def reading(headers: Mapping[str, str], *, reset_is_epoch: bool, now: float | None = None) -> Reading:
    """The rate-limit headers of an answer (names are matched without regard to case)."""
    lower = {k.lower(): v for k, v in headers.items()}
    now = time.time() if now is None else now

    def number(name: str) -> float | None:
        try:
            return float(lower[name])
        except (KeyError, ValueError):
            return None

    remaining, reset = number("x-ratelimit-remaining"), number("x-ratelimit-reset")
    reset_at = None if reset is None else (reset if reset_is_epoch else now + reset)
    return Reading(None if remaining is None else int(remaining), reset_at)


class RateBudget:
    """One service's budget, in ``<state dir>/ratelimit-<service>.json`` (or in this process only)."""

    def __init__(self, service: str, state: RunState | Path | str | None = None):
        self.service = service
        shared = run_state(state)
        self.record = shared.record(f"ratelimit-{service}") if shared is not None else None  # None: this process
        self._memory = _fresh()
        self._lock = threading.Lock()

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            if self.record is None:
                yield self._memory
                return
            with self.record.transaction() as data:
                for key, value in _fresh().items():
                    data.setdefault(key, value)
                yield data

    def snapshot(self) -> dict[str, Any]:
        with self._state() as data:
            return dict(data)

    def acquire(self, *, max_wait_s: float, deadline: float | None = None) -> None:
        """Room for one request, waiting up to ``max_wait_s`` (and not past ``deadline``, monotonic) for a
        spent window to reset; ``RateLimited`` when it resets later than that."""
        started = time.monotonic()
        while True:
            with self._state() as data:
                now = time.time()
                if data["reset_at"] is not None and now >= data["reset_at"]:
                    data.update(remaining=None, reset_at=None)  # a new window: learn it from the next answer
                remaining = data["remaining"]
                if (remaining is None and data["in_flight"] == 0) or (remaining is not None and remaining > 0):
                    data["in_flight"] += 1
                    if remaining is not None:
                        data["remaining"] = remaining - 1
                    return
                reset_in = None if data["reset_at"] is None else data["reset_at"] - now
            waited = time.monotonic() - started
            if remaining is not None and (reset_in is None or reset_in > max_wait_s - waited or (
                    deadline is not None and time.monotonic() + reset_in > deadline)):
                when = "no reset time given" if reset_in is None else f"it resets in {reset_in:.0f} s"
                raise RateLimited(self.service, f"the rate limit is spent ({when})", sent=False)
            if deadline is not None and time.monotonic() > deadline:  # waiting for the first answer
                raise ServiceError(self.service, None, "deadline", "no room in the rate limit before the deadline",
                                   False)
            if _cancel.wait(POLL_S):
                raise Cancelled(f"{self.service}: cancelled while waiting for the rate limit")

    def release(self, seen: Reading | None = None, *, spent_for_s: float | None = None) -> None:
        """The request is over: ``seen`` is what its answer said of the limit (None: nothing); ``spent_for_s``:
        the service refused it for its rate (a 429) and rests this long unless ``seen`` gives the reset."""
        with self._state() as data:
            data["in_flight"] = max(0, data["in_flight"] - 1)
            # answers of one window may arrive out of order, and an old window's after a new one's: only an
            # answer naming a later reset (a new window) sets the room; any other may only lower it
            newer = seen is not None and seen.reset_at is not None and (
                data["reset_at"] is None or seen.reset_at > data["reset_at"] + SAME_WINDOW_S)
            if seen is not None and seen.remaining is not None:
                room = max(0, seen.remaining - data["in_flight"])
                data["remaining"] = room if newer or data["remaining"] is None else min(room, data["remaining"])
            if newer:
                data["reset_at"] = seen.reset_at
            if spent_for_s is not None:
                data["remaining"] = 0
                if seen is None or seen.reset_at is None:
                    data["reset_at"] = time.time() + spent_for_s
