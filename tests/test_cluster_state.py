"""renderer.ops.cluster_state: on Dask, a run's breakers and API slots live on the cluster, shared by
tasks on every worker (a real `dask scheduler` and two `dask worker` processes on 127.0.0.1); cloud keys reach
the workers through their environment only, never the scheduler."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pybreaker
import pytest
from distributed import Client

from renderer.devtools.fakes import FakeAPI
from renderer.ops.cluster_state import (
    ClusterBreakerStorage,
    ClusterRunState,
    namespace,
)
from renderer.ops.reliability import ServiceError, build_guard
from tests.cluster import Cluster
from tests.conftest import TINY, TWO_SCENES, run_cli
from tests.test_reliability import (
    BREAKER,
    FAST_RETRY,
    KEY,
    ONE_ATTEMPT,
    poll,
    runway_client,
)

EL_KEY = "el-SECRET-scheduler-key-41aa07"
RW_KEY = "rw-SECRET-scheduler-key-c2d9e5"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster"), workers=2,
                 env={"ELEVENLABS_API_KEY": EL_KEY, "RUNWAY_API_KEY": RW_KEY}) as running:
        yield running


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster.address, set_as_default=True) as connected:
        yield connected


def workers(client: Client) -> list[str]:
    names = sorted(client.scheduler_info(n_workers=-1)["workers"])
    assert len(names) == 2
    return names


# --- tasks (run on the workers) ---------------------------------------------------------------------------
def fail_once(url: str, run_dir: str) -> str:
    guard = build_guard("runway", BREAKER, ONE_ATTEMPT, state_dir=ClusterRunState(run_dir))
    try:
        guard.call(poll(runway_client(url)))
    except ServiceError as exc:
        return f"{exc.status}"
    return "ok"


def side_by_side(fn, count: int) -> None:
    """``fn`` in ``count`` threads at once; back when all are done."""
    threads = [threading.Thread(target=fn) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def race(url: str, run_dir: str, callers: int) -> list[str]:
    """``callers`` threads at once through one guard: what each got."""
    guard = build_guard("runway", {"fail_max": 3, "reset_timeout_s": 30}, FAST_RETRY,
                        state_dir=ClusterRunState(run_dir), timeout_s=5, max_concurrency=callers)
    client, outcomes, go = runway_client(url), [], threading.Barrier(callers)

    def one() -> None:
        go.wait(30)
        try:
            guard.call(poll(client))
            outcomes.append("ok")
        except pybreaker.CircuitBreakerError:
            outcomes.append("open")
        except ServiceError as exc:
            outcomes.append(str(exc.status))

    side_by_side(one, callers)
    return outcomes


def hold_slots(run_dir: str, limit: int, callers: int, hold_s: float) -> list[tuple[float, float]]:
    """``callers`` threads each take one of the run's ``limit`` runway slots for ``hold_s``: their intervals."""
    semaphore = ClusterRunState(run_dir).semaphore("runway", limit)
    spans: list[tuple[float, float]] = []

    def one() -> None:
        assert semaphore.acquire(timeout=60)
        start = time.time()
        time.sleep(hold_s)
        spans.append((start, time.time()))
        semaphore.release()

    side_by_side(one, callers)
    return spans


# --- tests ------------------------------------------------------------------------------------------------
def test_failures_on_every_worker_count_towards_one_breaker(client, tmp_path):
    with FakeAPI(runway_key=KEY, fault_rate=1.0, faults=("500",)) as api:
        run = str(tmp_path / "run")
        futures = [client.submit(fail_once, api.url, run, workers=[w], pure=False)
                   for w in workers(client) + workers(client)[:1]]
        assert client.gather(futures) == ["500"] * 3
        assert api.count("task") == 3
        guard = build_guard("runway", BREAKER, ONE_ATTEMPT, state_dir=ClusterRunState(run))  # here: the client
        assert guard.breaker_state == "open"
        with pytest.raises(pybreaker.CircuitBreakerError):
            guard.call(poll(runway_client(api.url)))
        assert client.submit(fail_once, api.url, run, pure=False).exception().__class__ is \
            pybreaker.CircuitBreakerError
        assert api.count("task") == 3
    other = build_guard("runway", BREAKER, ONE_ATTEMPT, state_dir=ClusterRunState(tmp_path / "other-run"))
    assert other.breaker_state == "closed"  # one run's breaker is its own


def test_half_open_breaker_lets_one_trial_through_across_workers(client, tmp_path):
    """Reset timeout passed, 2 workers x 3 threads at once: exactly one request reaches the service."""
    run = str(tmp_path / "run")
    storage = ClusterBreakerStorage(f"{namespace(run)}-breaker-runway")
    storage.state = "open"
    storage.opened_at = datetime.now(UTC) - timedelta(seconds=60)
    with FakeAPI(runway_key=KEY, latency={"task": 0.5}, fault_rate=1.0, faults=("503",), retry_after_s=0.1) as api:
        outcomes = client.gather([client.submit(race, api.url, run, 3, workers=[w], pure=False)
                                  for w in workers(client)])
        assert api.count("task") == 1
    assert sorted(o for both in outcomes for o in both) == ["open"] * 6
    assert storage.state == "open"


def test_api_slots_hold_for_the_whole_cluster(client, tmp_path):
    """A limit of 2 over 2 workers x 3 threads: never more than 2 at once, and 2 at once do happen."""
    run = str(tmp_path / "run")
    spans = [s for both in client.gather([client.submit(hold_slots, run, 2, 3, 0.4, workers=[w], pure=False)
                                          for w in workers(client)]) for s in both]
    assert len(spans) == 6
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    assert peak == 2


def spend_budget(run_dir: str) -> None:
    from renderer.ops.ratelimit import RateBudget, reading

    budget = RateBudget("pixabay", ClusterRunState(run_dir))
    budget.acquire(max_wait_s=1)
    budget.release(reading({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3600"}, reset_is_epoch=False))


def ask_budget(run_dir: str) -> str:
    from renderer.ops.ratelimit import RateBudget, RateLimited

    try:
        RateBudget("pixabay", ClusterRunState(run_dir)).acquire(max_wait_s=1)
    except RateLimited as exc:
        return exc.message
    return "room"


def test_a_rate_limit_spent_on_one_worker_holds_on_every_worker(client, tmp_path):
    run = str(tmp_path / "run")
    first, second = workers(client)
    client.submit(spend_budget, run, workers=[first], pure=False).result()
    assert "resets in" in client.submit(ask_budget, run, workers=[second], pure=False).result()
    assert client.submit(ask_budget, str(tmp_path / "other-run"), workers=[second], pure=False).result() == "room"


def test_cloud_keys_reach_workers_by_their_environment_only(cluster, client, tmp_path):
    """A cloud batch on the cluster, the keys only in the workers' environment: the videos use the services,
    and no key is in the scheduler's task names, transition log or logs, the workers' logs, or the run dir."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "s0.txt").write_text(TWO_SCENES, encoding="utf-8")
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("ELEVENLABS_API_KEY", "RUNWAY_API_KEY")}
    overrides = [o for o in TINY if not o.startswith(("batch.backend", "visual."))]
    with FakeAPI(elevenlabs_key=EL_KEY, runway_key=RW_KEY, task_seconds=0.2) as api:
        result = run_cli(*overrides, "voice=elevenlabs", "visual=runway", f"voice.base_url={api.url}",
                         f"visual.base_url={api.url}", "visual.poll_interval_s=0.05", "visual.poll_jitter_s=0.01",
                         f"batch.inputs=[{inputs}/*.txt]", f"hydra.run.dir={run_dir}", "batch.backend=dask",
                         f"batch.dask.address={cluster.address}", "limits.memory_gb=0", env=env)
    assert result.returncode == 0, result.stderr
    record = json.loads((run_dir / "s0" / "s0.json").read_text())
    assert record["providers"]["voice"] == ["elevenlabs"] and record["providers"]["visual"] == ["runway"]
    assert record["fallbacks"] == [] and record["services"]["runway"]["calls"] >= 2
    seen = client.run_on_scheduler(lambda dask_scheduler: repr([*dask_scheduler.tasks,
                                                                 *dask_scheduler.transition_log]))
    assert "render-s0-" in seen  # the check below looks at the right place
    texts = {"scheduler": seen + cluster.log("scheduler"), "renderer": result.stdout + result.stderr,
             **{f"worker{n}": cluster.log(f"worker{n}") for n in range(2)}}
    texts |= {str(p): p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file()}
    for key in (EL_KEY, RW_KEY):
        assert [where for where, text in texts.items() if key in text] == []
