"""The runners: one small batch on sequential, loky, a Dask LocalCluster and a real `dask scheduler` with two
`dask worker` processes gives the same manifest and the same video streams; a cluster's workers must see the
run's files; a worker killed mid-script, a scheduler that goes away and an interrupted batch on a cluster."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from renderer.devtools.fakes import FakeAPI
from tests.cluster import Cluster
from tests.conftest import ROOT, TINY, TWO_SCENES, run_cli

EL_KEY = "el-SECRET-dask-key-90c1f4"
RW_KEY = "rw-SECRET-dask-key-3be7a2"

CLI_TINY = [o for o in TINY if not o.startswith("batch.backend")] + ["voice=silent", "limits.memory_gb=0",
                                                                     "batch.n_jobs=2", "batch.dask.timeout_s=20"]
TIMING = ("seconds", "started", "finished", "run_dir", "storage")  # storage: free bytes move


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """Two workers with the cloud keys in their own environment (the renderer that submits has none)."""
    with Cluster(tmp_path_factory.mktemp("cluster"), workers=2,
                 env={"ELEVENLABS_API_KEY": EL_KEY, "RUNWAY_API_KEY": RW_KEY}) as running:
        yield running


@pytest.fixture
def cluster(two_workers):
    """The module's cluster, whole again: a test that killed a worker leaves it restarting (its nanny)."""
    two_workers.wait_for_workers(2)
    return two_workers


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("in")
    for n in range(3):
        (folder / f"s{n}.txt").write_text(TWO_SCENES.replace("A blue sea.", f"A blue sea, take {n}."),
                                          encoding="utf-8")
    return folder


def video_md5(path: Path) -> str:
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v", "-c", "copy", "-f", "md5", "-"],
                          capture_output=True, text=True, check=True).stdout.strip()


def comparable(run_dir: Path) -> dict:
    """The manifest without what differs between any two runs (times, the run dir in its paths)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key in TIMING:
        manifest.pop(key, None)
    for entry in manifest["scripts"].values():
        entry.pop("seconds")
        entry["outputs"] = {k: str(Path(v).relative_to(run_dir)) for k, v in entry["outputs"].items()}
    return manifest


def render(inputs: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run_cli(*CLI_TINY, f"batch.inputs=[{inputs}/*.txt]", f"hydra.run.dir={run_dir}", *extra)
    assert result.returncode == 0, result.stderr
    return result


def test_every_backend_gives_the_same_manifest_and_video_streams(inputs, cluster, tmp_path):
    runs = {"sequential": ["batch.backend=sequential"], "loky": ["batch.backend=loky"],
            "local-cluster": ["batch.backend=dask", "batch.dask.workers=2"],
            "cluster": ["batch.backend=dask", f"batch.dask.address={cluster.address}"],
            "cluster-split-scenes": ["batch.backend=dask", f"batch.dask.address={cluster.address}",
                                     "batch.dask.split_scenes=true"]}
    manifests, videos = {}, {}
    for name, overrides in runs.items():
        render(inputs, tmp_path / name, *overrides)
        manifests[name] = comparable(tmp_path / name)
        videos[name] = {p.stem: video_md5(p) for p in sorted((tmp_path / name).glob("*/*.mp4"))}
        assert list((tmp_path / name / "tmp").iterdir()) == []
    assert len(videos["loky"]) == 3 and {m["scripts"]["s0"]["status"] for m in manifests.values()} == {"ok"}
    for name in runs:
        assert manifests[name] == manifests["loky"], name
        assert videos[name] == videos["loky"], name
    assert manifests["cluster"]["n_jobs"] == 2  # two one-thread workers on this host share its cores
    log = (tmp_path / "cluster" / "renderer.log").read_text()
    assert "(dask)" in log and "s2" in log  # the workers log into the run dir, which they see


def test_a_cluster_that_cannot_be_reached_fails_before_any_work(inputs, tmp_path):
    result = run_cli(*CLI_TINY, f"batch.inputs=[{inputs}/*.txt]", f"hydra.run.dir={tmp_path / 'run'}",
                     "batch.backend=dask", "batch.dask.address=tcp://127.0.0.1:9", "batch.dask.timeout_s=2")
    assert result.returncode == 2
    assert "batch.dask.address=tcp://127.0.0.1:9: cannot reach the Dask scheduler" in result.stderr
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_a_worker_that_cannot_see_the_run_dir_is_named_before_any_work(inputs, tmp_path):
    """A worker with its own private /tmp-like mount over the run's folder (as on a machine without the shared
    filesystem): the batch refuses to start, naming the worker and the path."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--mount", "true"]).returncode != 0:
        pytest.skip("cannot make a mount namespace here (needs root and unshare)")
    shared = tmp_path / "shared"
    shared.mkdir()
    blind = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f'mount -t tmpfs tmpfs "{shared}" && exec "$0" "$@"']
    with Cluster(tmp_path / "cluster", workers=1, wrap=blind) as blind_cluster:
        result = run_cli(*CLI_TINY, f"batch.inputs=[{inputs}/*.txt]", f"hydra.run.dir={shared / 'run'}",
                         "batch.backend=dask", f"batch.dask.address={blind_cluster.address}")
    assert result.returncode == 2, result.stderr
    assert "cannot see the run dir" in result.stderr and str(shared / "run") in result.stderr
    assert "worker tcp://127.0.0.1:" in result.stderr and "hydra.run.dir=/shared/" in result.stderr
    assert not (shared / "run" / "manifest.json").exists()
    assert not list((shared / "run").glob(".renderer-probe-*"))


def long_scripts(folder: Path, count: int, seconds: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        (folder / f"s{n}.txt").write_text(TWO_SCENES.replace("[0:03 – Two]", f"[0:{seconds:02d} – Two]")
                                          .replace("A blue sea.", f"A blue sea, take {n}."), encoding="utf-8")
    return folder


def popen(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "renderer", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def encodes_of(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for proc in procs:
        try:
            if proc.name() == "ffmpeg" and "-filter_complex_script" in proc.cmdline():
                out.append(proc)
        except psutil.NoSuchProcess:
            continue
    return out


def wait_for(condition, seconds: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (found := condition()):
            return found
        assert proc is None or proc.poll() is None, f"the batch ended before {what}:\n{proc.stderr.read()}"
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {seconds} s")


def manifest_of(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {"scripts": {}}


def test_a_worker_killed_mid_script_costs_nothing(cluster, tmp_path):
    """kill -9 of the worker process running an encode (as the OOM killer would): the scheduler runs its
    script again on the other worker, the nanny brings a worker back, and the batch finishes with every video."""
    inputs, run_dir = long_scripts(tmp_path / "in", 3), tmp_path / "run"
    proc = popen(*CLI_TINY, "format.width=640", "format.height=360", f"batch.inputs=[{inputs}/*.txt]",
                 f"hydra.run.dir={run_dir}", "batch.backend=dask", f"batch.dask.address={cluster.address}")
    encode = wait_for(lambda: encodes_of(cluster.worker_processes()), 90, "encode on a worker", proc)[0]
    victim = encode.parent()
    tools = victim.children(recursive=True)
    victim.kill()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert {s["status"] for s in manifest_of(run_dir)["scripts"].values()} == {"ok"}
    assert len(list(run_dir.glob("*/*.mp4"))) == 3
    wait_for(lambda: not any(t.is_running() and t.status() != psutil.STATUS_ZOMBIE for t in tools), 5,
             "end of the killed worker's tools")
    assert list((run_dir / "tmp").iterdir()) == []


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background job of a non-interactive shell ignores it


def test_ctrl_c_on_a_cluster_stops_its_scripts_and_cancels_their_runway_tasks(cluster, tmp_path):
    """Ctrl-C to the renderer: the run's stop Event tells every task to stop, the workers DELETE their Runway
    tasks and kill their tools, no task of the run is left on the scheduler, and the scripts are cancelled."""
    inputs, run_dir = long_scripts(tmp_path / "in", 3), tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("ELEVENLABS_API_KEY", "RUNWAY_API_KEY")}
    with FakeAPI(runway_key=RW_KEY, task_seconds=600) as api:  # tasks that never end
        proc = popen(*[o for o in CLI_TINY if not o.startswith("visual.")], "visual=runway", f"visual.base_url={api.url}", "visual.poll_interval_s=0.05",
                     "visual.poll_jitter_s=0.01", "limits.api_timeout_s=3", f"batch.inputs=[{inputs}/*.txt]",
                     f"hydra.run.dir={run_dir}", "batch.backend=dask", f"batch.dask.address={cluster.address}",
                     env=env, start_new_session=True, preexec_fn=_sigint_default)
        try:
            wait_for(lambda: api.count("create") >= 4, 90, "Runway task from both workers", proc)
            time.sleep(0.3)  # no create request still in flight
            created = set(api.tasks)
            interrupted = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C: the renderer's group, not the cluster
            _, err = proc.communicate(timeout=30)
            seconds = time.monotonic() - interrupted
            stats = api.stats()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 130, err
    assert seconds < 8, f"{seconds:.1f} s to stop"
    assert created and set(stats["deleted"]) >= created, f"tasks left running at Runway: {created - set(stats['deleted'])}"
    assert stats["counts"]["create"] == len(created), "a task was created after the interruption"
    assert {s["status"] for s in manifest_of(run_dir)["scripts"].values()} == {"cancelled"}
    records = [json.loads(p.read_text()) for p in run_dir.glob("*/*.json")]
    assert records and all(r["status"] == "cancelled" for r in records)  # written by the workers themselves
    wait_for(lambda: not encodes_of(cluster.worker_processes()), 5, "end of every encode on the workers")
    from distributed import Client

    with Client(cluster.address, set_as_default=False) as client:
        left = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
    assert not [k for k in left if k.startswith("render-")], left


def test_a_scheduler_that_goes_away_stops_the_batch_and_resume_finishes_it(tmp_path):
    inputs, run_dir = long_scripts(tmp_path / "in", 4, seconds=10), tmp_path / "run"
    with Cluster(tmp_path / "cluster", workers=2) as doomed:
        proc = popen(*CLI_TINY, f"batch.inputs=[{inputs}/*.txt]", f"hydra.run.dir={run_dir}", "batch.backend=dask",
                     f"batch.dask.address={doomed.address}", "batch.dask.timeout_s=5")
        wait_for(lambda: any(s["status"] == "ok" for s in manifest_of(run_dir)["scripts"].values()), 90,
                 "first finished script", proc)
        doomed.stop_scheduler()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert f"the Dask scheduler at {doomed.address} went away" in err and f"resume={run_dir}" in err
    status = {slug: s["status"] for slug, s in manifest_of(run_dir)["scripts"].items()}
    assert "ok" in status.values() and "cancelled" in status.values(), status
    resumed = run_cli(f"resume={run_dir}", "batch.backend=loky")
    assert resumed.returncode == 0, resumed.stderr
    assert {s["status"] for s in manifest_of(run_dir)["scripts"].values()} == {"ok"}
    assert len(list(run_dir.glob("*/*.mp4"))) == 4


def test_one_long_video_spreads_its_encodes_over_the_cluster(cluster, tmp_path):
    """batch.dask.split_scenes=true: a single script's chunk encodes run as tasks on both workers, and the
    video is the one loky renders."""
    from distributed import Client

    script = tmp_path / "long.txt"
    script.write_text(TWO_SCENES.replace("[0:03 – Two]", "[0:06 – Two]"), encoding="utf-8")
    chunks = ["encode.chunk_s=1"]  # render() takes every script in tmp_path: this one
    render(tmp_path, tmp_path / "loky", *chunks, "batch.backend=loky")
    with Client(cluster.address, set_as_default=False) as client:
        client.get_task_stream()  # from now on the scheduler keeps a record of where each task ran
        started = time.time()
        render(tmp_path, tmp_path / "split", *chunks, "batch.backend=dask", f"batch.dask.address={cluster.address}",
               "batch.dask.split_scenes=true")
        stream = client.get_task_stream(start=started)
    encodes = [t for t in stream if str(t["key"]).startswith("encode-")]
    assert len(encodes) >= 10, [t["key"] for t in stream]  # 10 one-second chunks (the soundtrack is mixed here)
    assert len({t["worker"] for t in encodes}) == 2, "the encodes ran on one worker only"
    assert video_md5(tmp_path / "split" / "long" / "long.mp4") == video_md5(tmp_path / "loky" / "long" / "long.mp4")
    record = json.loads((tmp_path / "split" / "long" / "long.json").read_text())
    assert {s["status"] for s in record["stages"]} == {"ok"}


def _profiling(dask_worker) -> bool:
    return any(callback.is_running() for name, callback in dask_worker.periodic_callbacks.items()
               if name.startswith("profile"))


def test_no_worker_renders_beside_the_profiler_that_can_hang_it(tmp_path):
    """Dask's statistical profiler calls sys._current_frames() every 10 ms, which before CPython 3.12 can deadlock
    (python/cpython#106883): a LocalCluster worker hung mid-script for good, and the batch with it. The
    renderer's LocalCluster starts its workers without it; on a cluster started as a user starts one (the
    profiler on), each worker stops it as it takes the script's task or one of its encodes."""
    from distributed import Client
    from omegaconf import OmegaConf

    from renderer.config import DaskConfig
    from renderer.runners.dask import PROFILER_CAN_DEADLOCK, DaskRunner

    runner = DaskRunner(OmegaConf.structured(DaskConfig(workers=1)))
    try:
        assert not any(runner.client.run(_profiling).values())
    finally:
        runner.close()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "long.txt").write_text(TWO_SCENES.replace("[0:03 – Two]", "[0:06 – Two]"), encoding="utf-8")
    with Cluster(tmp_path / "cluster", workers=2) as users, \
            Client(users.address, set_as_default=False) as client:
        assert all(client.run(_profiling).values()) and len(client.run(_profiling)) == 2
        render(tmp_path / "in", tmp_path / "run", "batch.backend=dask", f"batch.dask.address={users.address}",
               "batch.dask.split_scenes=true", "encode.chunk_s=1")  # one script's task; its encodes on both
        assert not any(client.run(_profiling).values()) or not PROFILER_CAN_DEADLOCK


# --- the graceful stop of a local pool, through public interfaces only ---------------------------------------

ON_THE_ROLL = """
import signal, sys, time
from pathlib import Path
from renderer.runners.worker import Roll
stopped = []
signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
with Roll(Path(sys.argv[1])).rendering("s0"):
    print("rendering", flush=True)
    while not stopped:
        time.sleep(0.01)
print("stopped", flush=True)
time.sleep(60)  # alive after its script, as a pool's worker is
"""


def test_a_graceful_stop_signals_the_workers_on_the_roll_and_waits_for_their_scripts(tmp_path):
    """A process that put itself on the run's roll gets SIGTERM and the stop waits for its script to end; a
    process that merely has the pid a dead worker left on the roll (another start time) is not touched."""
    from renderer.runners.local import stop_workers
    from renderer.runners.worker import Roll

    worker = subprocess.Popen([sys.executable, "-c", ON_THE_ROLL, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    namesake = subprocess.Popen(["sleep", "60"])
    try:
        assert worker.stdout.readline().strip() == "rendering"
        roll = Roll(tmp_path)
        (roll.dir / str(namesake.pid)).write_text(repr(psutil.Process(namesake.pid).create_time() - 5))
        (roll.dir / f"{namesake.pid}.1").write_text("s1")  # the script the dead worker was rendering
        assert set(roll.workers()) == {worker.pid}
        started = time.monotonic()
        assert stop_workers(roll, grace=10) == 0
        assert time.monotonic() - started < 5
        assert worker.stdout.readline().strip() == "stopped"
        assert roll.scripts(roll.workers()) == []
        assert worker.poll() is None and namesake.poll() is None  # nobody was killed
    finally:
        for proc in (worker, namesake):
            proc.kill()
            proc.wait()


def test_a_graceful_stop_gives_up_after_its_grace(tmp_path):
    from renderer.runners.local import stop_workers
    from renderer.runners.worker import Roll

    stuck = subprocess.Popen([sys.executable, "-c", ON_THE_ROLL.replace("lambda *_: stopped.append(1)",
                                                                        "signal.SIG_IGN"), str(tmp_path)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert stuck.stdout.readline().strip() == "rendering"
        started = time.monotonic()
        assert stop_workers(Roll(tmp_path), grace=0.5) == 1
        assert 0.5 <= time.monotonic() - started < 3
    finally:
        stuck.kill()
        stuck.wait()


def _defined(tree: ast.AST) -> set[str]:
    """The names a module defines: functions, classes, variables and attributes it assigns."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            own.add(node.attr)
    return own


def _private_uses(path: Path, ours: set[str] = frozenset()) -> list[str]:
    """Where ``path`` reaches into another package's private parts: an import of a private module or name from
    outside renderer, or ``x._name`` / ``getattr(x, "_name")`` for a ``_name`` neither the module nor ``ours``
    (what the renderer's other modules define: a base class's attributes) defines."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    own = _defined(tree) | ours
    private = lambda name: (name.startswith("_") and not name.startswith("__")  # noqa: E731
                            and name not in PUBLIC_BY_CONVENTION)
    found = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} import {a.name}" for a in node.names
                      if not a.name.startswith("renderer") and any(map(private, a.name.split(".")))]
        elif isinstance(node, ast.ImportFrom) and not node.level and not node.module.startswith("renderer"):
            if any(map(private, node.module.split("."))) or any(private(a.name) for a in node.names):
                found.append(f"{where} from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in own:
            found.append(f"{where} {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr", "setattr") and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and private(str(node.args[1].value))):
            found.append(f"{where} {ast.unparse(node)}")
    return found


# Known uses elsewhere in the package, not of the runners: OmegaConf's Container._get_node (the schema's open
# maps, renderer/config.py) and pybreaker's CircuitBreaker._state_storage (renderer/ops/reliability.py).
# Each is to go; none may be added.
# public by convention though they start with "_": Hydra's `_target_`, a namedtuple's documented `_fields`, the
# os module's documented `_exit` (a forked child leaving without running its parent's exit handlers)
PUBLIC_BY_CONVENTION = {"_target_", "_fields", "_exit"}


def test_the_renderer_uses_no_private_part_of_a_dependency():
    modules = sorted((ROOT / "renderer").rglob("*.py"))
    ours = set().union(*(_defined(ast.parse(path.read_text(encoding="utf-8"))) for path in modules))
    found = [use for path in modules for use in _private_uses(path, ours)]
    assert found == []


def test_the_private_use_check_sees_the_ways_in(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from joblib._parallel_backends import LokyBackend\nimport loky._base\n"
                      "from joblib.parallel import _backend\n\n\nclass Own:\n    _mine = 1\n\n\n"
                      "def f(backend, own):\n    own._mine\n    getattr(backend._workers, '_processes', {})\n",
                      encoding="utf-8")
    assert sorted(_private_uses(module)) == [
        "probe.py:1 from joblib._parallel_backends import LokyBackend", "probe.py:12 backend._workers",
        "probe.py:12 getattr(backend._workers, '_processes', {})", "probe.py:2 import loky._base",
        "probe.py:3 from joblib.parallel import _backend"]
