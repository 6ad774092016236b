"""The runners: one small batch on sequential, loky, a Dask LocalCluster and a real `dask scheduler` with two
`dask worker` processes gives the same manifest and the same video streams; a cluster's workers must see the
run's files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.conftest import TINY, TWO_SCENES, run_cli

CLI_TINY = [o for o in TINY if not o.startswith("batch.backend")] + ["voice=silent", "limits.memory_gb=0",
                                                                     "batch.n_jobs=2", "batch.dask.timeout_s=20"]
TIMING = ("seconds", "started", "finished", "run_dir")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("cluster"), workers=2) as running:
        yield running


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
            "cluster": ["batch.backend=dask", f"batch.dask.address={cluster.address}"]}
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
