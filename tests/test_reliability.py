"""renderer.ops.reliability: breakers shared across processes, retries outside the breaker, concurrency limits —
against the local API doubles over real HTTP (requests counted at the double)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pybreaker
import pytest

from renderer.devtools.fakes import RUNWAY_VERSION, FakeAPI
from renderer.ops import reliability
from renderer.ops.reliability import (
    Cancelled,
    FileBreakerStorage,
    RetryPolicy,
    ServiceError,
    breaker_settings,
    build_guard,
)
from renderer.providers.http import Client

KEY = "rw-test-key-0001"
ONE_ATTEMPT = {"attempts": 1, "wait_s": 0.01, "max_wait_s": 1, "exponential": False, "jitter_s": 0}
FAST_RETRY = {"attempts": 4, "wait_s": 0.01, "max_wait_s": 1, "exponential": True, "jitter_s": 0.005}
BREAKER = {"fail_max": 3, "reset_timeout_s": 60}
T2V = {"model": "gen4.5", "promptText": "A red sky.", "ratio": "1280:720", "duration": 2}


def runway_client(url: str) -> Client:
    return Client("runway", url, {"Authorization": f"Bearer {KEY}", "X-Runway-Version": RUNWAY_VERSION})


def poll(client: Client, task_id: str = "nope"):
    return lambda: client.request("GET", f"/v1/tasks/{task_id}", timeout=5)


@pytest.fixture
def api():
    with FakeAPI(runway_key=KEY, retry_after_s=0.2, hang_s=5) as server:
        yield server


@pytest.fixture
def cancel():
    """``reliability.cancel``, undone after the test (it is process-wide)."""
    yield reliability.cancel
    reliability.reset_cancel()


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


def _race(url: str, state_dir: str | None, callers: int, ready, go, results, guard=None) -> None:
    """``callers`` threads, each releases ``ready``, waits for ``go``, calls through one guard and puts
    (outcome, attempts) on ``results``."""
    guard = guard or build_guard("runway", {"fail_max": 3, "reset_timeout_s": 30}, FAST_RETRY,
                                 state_dir=state_dir, timeout_s=5, max_concurrency=callers)
    client = runway_client(url)

    def one() -> None:
        ready.release()
        go.wait(60)
        try:
            guard.call(poll(client))
            outcome = "ok"
        except pybreaker.CircuitBreakerError:
            outcome = "open"
        except ServiceError as exc:
            outcome = exc.status
        results.put((outcome, guard.last_call["attempts"]))

    threads = [threading.Thread(target=one) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _opened_long_ago(storage) -> None:
    storage.state = "open"
    storage.opened_at = datetime.now(UTC) - timedelta(seconds=60)  # its reset timeout (30 s) has passed


def test_half_open_breaker_lets_one_trial_through_across_processes_and_threads(tmp_path: Path):
    """Reset timeout passed, 9 callers at once (2 processes x 3 threads + 3 threads here): one trial reaches
    the service (slow: a 503 after 0.5 s), the others fail fast with the open error and are not retried; the
    trial's failure re-opens the breaker, so its own retry fails fast too."""
    _opened_long_ago(FileBreakerStorage(tmp_path / "breaker-runway.json"))
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    with FakeAPI(runway_key=KEY, latency={"task": 0.5}, fault_rate=1.0, faults=("503",), retry_after_s=0.1) as api:
        args = (api.url, str(tmp_path), 3, ready, go, results)
        workers = [ctx.Process(target=_race, args=args) for _ in range(2)]
        for w in workers:
            w.start()
        here = threading.Thread(target=_race, args=args)
        here.start()
        for _ in range(9):
            assert ready.acquire(timeout=60)
        go.set()
        outcomes = sorted((results.get(timeout=60) for _ in range(9)), key=str)
        for w in workers:
            w.join(timeout=60)
        here.join(timeout=60)
        assert [w.exitcode for w in workers] == [0, 0]
        assert api.count("task") == 1
    assert outcomes == [("open", 1)] * 8 + [("open", 2)]  # the trial: a 503, then its retry met the open breaker
    assert build_guard("runway", BREAKER, ONE_ATTEMPT, state_dir=tmp_path).breaker_state == "open"


def test_half_open_breaker_lets_one_trial_through_in_one_process():
    """The same without a state dir: the process-local breaker also lets one of its threads try."""
    guard = build_guard("runway", {"fail_max": 3, "reset_timeout_s": 30}, FAST_RETRY, timeout_s=5,
                        max_concurrency=6)
    _opened_long_ago(guard.breaker._state_storage)
    ready, go, results = threading.Semaphore(0), threading.Event(), queue.Queue()
    with FakeAPI(runway_key=KEY, latency={"task": 0.5}, fault_rate=1.0, faults=("503",), retry_after_s=0.1) as api:
        racers = threading.Thread(target=_race, args=(api.url, None, 6, ready, go, results, guard))
        racers.start()
        for _ in range(6):
            assert ready.acquire(timeout=60)
        go.set()
        racers.join(timeout=60)
        assert api.count("task") == 1
    assert sorted((results.get() for _ in range(6)), key=str) == [("open", 1)] * 5 + [("open", 2)]


def _claim_trial_and_die(path: str) -> None:
    FileBreakerStorage(path).claim_trial(30, hold_s=0.5)
    os._exit(0)  # killed mid-trial: no result, no cleanup


def test_a_trial_whose_process_died_expires_after_the_request_timeout(tmp_path: Path):
    storage = FileBreakerStorage(tmp_path / "breaker-runway.json")
    _opened_long_ago(storage)
    worker = multiprocessing.get_context("spawn").Process(target=_claim_trial_and_die, args=(str(storage.path),))
    worker.start()
    worker.join(timeout=60)
    assert storage.snapshot()["state"] == "half-open"
    assert not storage.claim_trial(30, hold_s=0.5)  # the dead caller's trial still holds the slot...
    time.sleep(0.6)
    assert storage.claim_trial(30, hold_s=0.5)  # ...until its timeout: then the next caller is the trial


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


def test_cancel_wakes_the_backoff_and_no_new_attempt_starts(api: FakeAPI, tmp_path: Path, cancel):
    """Ctrl-C during a 5 s backoff: the loop ends at once, and no new request (no new Runway task) is sent."""
    api.fault_rate, api.faults = 1.0, ("500",)
    slow = {"attempts": 5, "wait_s": 5, "max_wait_s": 5, "exponential": False, "jitter_s": 0}
    guard = build_guard("runway", {"fail_max": 10, "reset_timeout_s": 60}, slow, state_dir=tmp_path)
    ended: dict = {}

    def create():
        return runway_client(api.url).request("POST", "/v1/text_to_video", json=T2V, timeout=5)

    def run() -> None:
        try:
            guard.call(create, operation="text_to_video")
        except BaseException as exc:
            ended.update(exc=exc, at=time.monotonic())

    caller = threading.Thread(target=run)
    caller.start()
    while api.count("create") == 0:
        time.sleep(0.01)
    time.sleep(0.3)  # the 500 is in; the loop sleeps its 5 s
    cancelled_at = time.monotonic()
    cancel()
    caller.join(timeout=10)
    assert not caller.is_alive(), "the retry loop slept through the cancellation"
    assert ended["at"] - cancelled_at < 0.5
    assert isinstance(ended["exc"], Cancelled)
    with pytest.raises(Cancelled):  # once cancelled, a guarded call does not even start
        guard.call(create)
    assert api.count("create") == 1 and not api.tasks


def test_cancel_ends_the_graph_retries_too(cancel):
    """``RetryPolicy.run`` (the graph's stage retries) sleeps on the same cancellation."""
    calls = []

    def failing():
        calls.append(1)
        raise OSError("still unreadable")

    threading.Timer(0.3, cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        RetryPolicy(attempts=5, wait_s=5, exponential=False, jitter_s=0).run(failing, "reading x")
    assert time.monotonic() - started < 1.0 and len(calls) == 1


def test_an_interruption_is_never_retried():
    calls = []

    def interrupted():
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RetryPolicy(attempts=4, wait_s=0.01, exponential=False, jitter_s=0).run(interrupted, "reading x")
    assert len(calls) == 1


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
    guard = build_guard("records", None, ONE_ATTEMPT, max_concurrency=1)  # a service the schema does not list
    guard.call(lambda: 1, operation="main")
    seen = {}
    t = threading.Thread(target=lambda: seen.setdefault("other", guard.last_call))
    t.start()
    t.join()
    assert seen["other"] is None
    assert guard.last_call["operation"] == "main" and guard.last_call["ok"]


def test_settings_come_from_the_composed_config():
    from tests.conftest import (
        compose_cfg,  # here, not at the top: spawned workers import this module
    )

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


def _hold_a_slot(state_dir: str, inside, peak, lock, go) -> None:
    """In another process: call through a run-wide guard and count the callers inside at once."""
    guard = build_guard("run-limit", None, ONE_ATTEMPT, state_dir=state_dir, max_concurrency=2)

    def work():
        with lock:
            inside.value += 1
            peak.value = max(peak.value, inside.value)
        time.sleep(0.2)
        with lock:
            inside.value -= 1

    go.wait(10)
    threads = [threading.Thread(target=guard.call, args=(work,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_the_api_concurrency_limit_holds_for_the_whole_run_across_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    inside, peak, lock, go = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Lock(), ctx.Event()
    procs = [ctx.Process(target=_hold_a_slot, args=(str(tmp_path), inside, peak, lock, go)) for _ in range(2)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert peak.value == 2  # six callers in two processes, never more than two requests at once


def test_a_slot_held_by_a_dead_process_is_free_again(tmp_path):
    slots = reliability.RunSemaphore(tmp_path, "dying", 1)
    holder = multiprocessing.get_context("fork").Process(
        target=lambda: (reliability.RunSemaphore(tmp_path, "dying", 1).acquire(), os._exit(0)))
    holder.start()
    holder.join(10)
    assert slots.acquire(timeout=1)
    assert not reliability.RunSemaphore(tmp_path, "dying", 1).acquire(timeout=0.1)  # held by us now
    slots.release()


def test_waiting_for_a_slot_ends_on_cancel(tmp_path):
    slots = reliability.RunSemaphore(tmp_path, "busy", 1)
    assert slots.acquire()
    threading.Timer(0.2, reliability.cancel).start()
    started = time.monotonic()
    with pytest.raises(reliability.Cancelled):
        reliability.RunSemaphore(tmp_path, "busy", 1).acquire()
    assert time.monotonic() - started < 1
    slots.release()
