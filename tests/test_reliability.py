"""renderer.reliability: breakers shared across processes, retries outside the breaker, concurrency limits —
against the local API doubles over real HTTP (requests counted at the double)."""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time
from pathlib import Path

import pybreaker
import pytest

from renderer.fakes import RUNWAY_VERSION, FakeAPI
from renderer.providers.http import Client
from renderer.reliability import (
    FileBreakerStorage,
    RetryPolicy,
    ServiceError,
    breaker_settings,
    build_guard,
)

KEY = "rw-test-key-0001"
ONE_ATTEMPT = {"attempts": 1, "wait_s": 0.01, "max_wait_s": 1, "exponential": False, "jitter_s": 0}
FAST_RETRY = {"attempts": 4, "wait_s": 0.01, "max_wait_s": 1, "exponential": True, "jitter_s": 0.005}
BREAKER = {"fail_max": 3, "reset_timeout_s": 60}


def runway_client(url: str) -> Client:
    return Client("runway", url, {"Authorization": f"Bearer {KEY}", "X-Runway-Version": RUNWAY_VERSION})


def poll(client: Client, task_id: str = "nope"):
    return lambda: client.request("GET", f"/v1/tasks/{task_id}", timeout=5)


@pytest.fixture
def api():
    with FakeAPI(runway_key=KEY, retry_after_s=0.2, hang_s=5) as server:
        yield server


# --------------------------------------------------------------------------- breaker


def test_breaker_opens_after_exactly_fail_max_failures_and_stops_calling(api: FakeAPI, tmp_path: Path):
    api.fault_rate, api.faults = 1.0, ("500",)
    guard = build_guard("runway", BREAKER, ONE_ATTEMPT, state_dir=tmp_path)
    client = runway_client(api.url)
    for n in range(3):
        with pytest.raises(ServiceError) as err:
            guard.call(poll(client))
        assert err.value.status == 500 and err.value.retryable
    assert guard.breaker_state == "open"
    for _ in range(5):  # the reset window: calls fail at once, the service is not called
        with pytest.raises(pybreaker.CircuitBreakerError):
            guard.call(poll(client))
    assert api.count("task") == 3
    assert guard.last_call["error_code"] == "circuit_open" and guard.last_call["attempts"] == 1
    assert guard.summary()["failed_calls"] == 8


def test_retries_stop_at_the_open_breaker(api: FakeAPI, tmp_path: Path):
    """Retry wraps the breaker: once the breaker opens mid-retry, the call ends without more requests."""
    api.fault_rate, api.faults = 1.0, ("500",)
    guard = build_guard("runway", BREAKER, FAST_RETRY, state_dir=tmp_path)
    with pytest.raises(pybreaker.CircuitBreakerError):
        guard.call(poll(runway_client(api.url)))
    assert api.count("task") == 3  # attempts=4, but the 4th met the open breaker
    assert guard.last_call["attempts"] == 4
    assert guard.last_call["breaker_state"] == "open"


def _fail_once(url: str, state_dir: str) -> None:
    """Child process: one failing call through a guard sharing the run's breaker file."""
    guard = build_guard("runway", BREAKER, ONE_ATTEMPT, state_dir=state_dir)
    try:
        guard.call(poll(runway_client(url)))
    except ServiceError as exc:
        assert exc.status == 500
        return
    raise AssertionError("the call should have failed")


def test_breaker_state_is_shared_by_worker_processes(api: FakeAPI, tmp_path: Path):
    api.fault_rate, api.faults = 1.0, ("500",)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_fail_once, args=(api.url, str(tmp_path))) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    guard = build_guard("runway", BREAKER, ONE_ATTEMPT, state_dir=tmp_path)
    assert guard.breaker_state == "open"
    with pytest.raises(pybreaker.CircuitBreakerError):
        guard.call(poll(runway_client(api.url)))
    assert api.count("task") == 3


def test_half_open_breaker_closes_after_a_good_call(api: FakeAPI, tmp_path: Path):
    api.script("task", "500", "500", "500")
    guard = build_guard("runway", {"fail_max": 3, "reset_timeout_s": 0.2}, ONE_ATTEMPT, state_dir=tmp_path)
    client = runway_client(api.url)
    for _ in range(3):
        with pytest.raises(ServiceError):
            guard.call(poll(client))
    assert guard.breaker_state == "open"
    time.sleep(0.3)  # past the reset window: the next call is the trial
    with pytest.raises(ServiceError) as err:  # the double answers 404 for an unknown task: a request fault
        guard.call(poll(client))
    assert err.value.status == 404
    assert guard.breaker_state == "closed"
    assert api.count("task") == 4


def test_refused_requests_do_not_trip_the_breaker(api: FakeAPI, tmp_path: Path):
    """A 404/400/SAFETY says nothing about the service's health: not retried, not counted."""
    guard = build_guard("runway", BREAKER, FAST_RETRY, state_dir=tmp_path)
    client = runway_client(api.url)
    for _ in range(5):
        with pytest.raises(ServiceError) as err:
            guard.call(poll(client))
        assert err.value.status == 404 and not err.value.retryable
    assert guard.breaker_state == "closed"
    assert api.count("task") == 5


def test_file_storage_round_trip(tmp_path: Path):
    a = FileBreakerStorage(tmp_path / "breaker-x.json")
    b = FileBreakerStorage(tmp_path / "breaker-x.json")  # another process's view
    a.increment_counter()
    a.increment_counter()
    assert b.counter == 2
    b.state = "open"
    assert a.state == "open" and a.opened_at is None
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    a.opened_at = now
    assert abs((b.opened_at - now).total_seconds()) < 1e-3
    b.reset_counter()
    assert a.counter == 0


# --------------------------------------------------------------------------- retries


def test_retry_after_is_honoured(api: FakeAPI, tmp_path: Path):
    api.script("task", "429")
    guard = build_guard("runway", BREAKER, {**FAST_RETRY, "jitter_s": 0}, state_dir=tmp_path)
    with pytest.raises(ServiceError) as err:  # after the 429, the retry reaches the (404) task lookup
        guard.call(poll(runway_client(api.url)))
    assert err.value.status == 404
    assert api.count("task") == 2
    assert guard.last_call["attempts"] == 2
    assert guard.last_call["waits_s"] == [0.2]  # the double's Retry-After, not the 0.01 s backoff


def test_server_errors_timeouts_and_broken_bodies_are_retried(api: FakeAPI, tmp_path: Path):
    api.script("task", "500", "503", "malformed")
    guard = build_guard("runway", {"fail_max": 10, "reset_timeout_s": 60}, FAST_RETRY, state_dir=tmp_path,
                        timeout_s=0.5)
    client = runway_client(api.url)

    def poll_json():
        from renderer.providers.http import json_body

        return json_body("runway", client.request("GET", "/v1/tasks/nope", timeout=guard.request_timeout()))

    with pytest.raises(ServiceError) as err:
        guard.call(poll_json)
    assert err.value.status == 404  # 500, 503 and a broken JSON body were retried; then the real answer
    assert api.count("task") == 4
    api.script("task", "hang")
    with pytest.raises(ServiceError) as err:
        guard.call(poll_json)
    assert err.value.status == 404 and guard.last_call["attempts"] == 2  # the hang timed out, then retried


def test_non_retryable_errors_are_not_retried(api: FakeAPI, tmp_path: Path):
    guard = build_guard("runway", BREAKER, FAST_RETRY, state_dir=tmp_path)
    bad_key = Client("runway", api.url, {"Authorization": "Bearer wrong", "X-Runway-Version": RUNWAY_VERSION})
    with pytest.raises(ServiceError) as err:
        guard.call(poll(bad_key))
    assert err.value.status == 401 and not err.value.retryable
    api.script("create", "quota")
    with pytest.raises(ServiceError) as err:
        guard.call(lambda: runway_client(api.url).request("POST", "/v1/text_to_video", json={}, timeout=5))
    assert err.value.status == 400 and "credits" in str(err.value)
    assert api.count("task") == 1 and api.count("create") == 1


def test_unexpected_errors_are_not_retried(tmp_path: Path):
    guard = build_guard("runway", BREAKER, FAST_RETRY)
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        guard.call(broken)
    assert len(calls) == 1


def test_deadline_stops_retries(api: FakeAPI, tmp_path: Path):
    api.fault_rate, api.faults = 1.0, ("429",)
    api.retry_after_s = 0.3
    guard = build_guard("runway", {"fail_max": 50, "reset_timeout_s": 60}, {**FAST_RETRY, "attempts": 20})
    with pytest.raises(ServiceError) as err:
        guard.call(poll(runway_client(api.url)), deadline=time.monotonic() + 0.5)
    assert err.value.status == 429
    assert api.count("task") < 20


# --------------------------------------------------------------------------- concurrency, records, config


def test_semaphore_limits_concurrent_calls_per_service():
    guard = build_guard("bench-limit", {"fail_max": 5, "reset_timeout_s": 1}, ONE_ATTEMPT, max_concurrency=2)
    inside, peak, lock = 0, 0, threading.Lock()
    release = threading.Event()

    def work():
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        release.wait(5)
        with lock:
            inside -= 1

    threads = [threading.Thread(target=guard.call, args=(work,)) for _ in range(6)]
    for t in threads:
        t.start()
    while True:  # wait until two calls are inside and the others queue at the semaphore
        with lock:
            if inside == 2:
                break
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join()
    assert peak == 2


def test_last_call_is_per_thread():
    guard = build_guard("records", None, ONE_ATTEMPT)
    guard.call(lambda: 1, operation="main")
    seen = {}
    t = threading.Thread(target=lambda: seen.setdefault("other", guard.last_call))
    t.start()
    t.join()
    assert seen["other"] is None
    assert guard.last_call["operation"] == "main" and guard.last_call["ok"]


def test_settings_come_from_the_composed_config():
    from tests.conftest import compose_cfg  # here, not at the top: spawned workers import this module

    cfg = compose_cfg()
    assert breaker_settings("elevenlabs", cfg.breaker) == (5, 60.0)
    assert breaker_settings("runway", cfg.breaker) == (3, 120.0)
    policy = RetryPolicy.from_cfg(cfg.retry)
    assert (policy.attempts, policy.exponential, policy.jitter_s) == (4, True, 1.0)
    guard = build_guard("runway", cfg.breaker, cfg.retry, timeout_s=cfg.limits.api_timeout_s)
    assert guard.breaker.fail_max == 3 and guard.breaker.reset_timeout == 120.0 and guard.timeout_s == 60


def test_service_error_pickles_and_redacts(monkeypatch):
    monkeypatch.setenv("RUNWAY_API_KEY", "rw-very-secret-0042")
    err = ServiceError("runway", 500, "x", "echo rw-very-secret-0042", True, retry_after=2.0)
    assert "rw-very-secret-0042" not in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (again.status, again.retryable, again.retry_after, str(again)) == (500, True, 2.0, str(err))
