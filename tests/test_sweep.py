"""Sweeps through Hydra's launchers (joblib processes, submitit_local): one job per value, each a whole batch
in its own run dir, and one summary of how each ended, whichever launcher ran it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
from omegaconf import OmegaConf

from tests.conftest import CONF, TINY, TWO_SCENES, run_cli

CLI_TINY = [o for o in TINY if not o.startswith("batch.backend")] + ["voice=silent", "limits.memory_gb=0"]
SCHEMAS = {"joblib": JobLibLauncherConf, "submitit_local": LocalQueueConf, "submitit_slurm": SlurmQueueConf}


def sweep(tmp_path: Path, launcher: str, *values: str) -> tuple:
    script = tmp_path / "one.txt"
    script.write_text(TWO_SCENES, encoding="utf-8")
    sweep_dir = tmp_path / "sweep"
    result = run_cli("-m", *values, f"hydra/launcher={launcher}", *CLI_TINY, f"batch.inputs=[{script}]",
                     f"hydra.sweep.dir={sweep_dir}")
    manifests = {job.name: json.loads((job / "manifest.json").read_text())
                 for job in sorted(sweep_dir.glob("[0-9]*")) if (job / "manifest.json").exists()}
    return result, sweep_dir, manifests


def process_of(job_dir: Path) -> int:
    first = json.loads((job_dir / "renderer.jsonl").read_text().splitlines()[0])
    return first["record"]["process"]["id"]


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_two_value_sweep_renders_one_batch_per_value_in_processes_of_its_own(launcher, tmp_path):
    result, sweep_dir, manifests = sweep(tmp_path, launcher, "theme=dark,matrix")
    assert result.returncode == 0, result.stderr
    assert sorted(manifests) == ["0", "1"]
    assert {m["settings"]["theme"] for m in manifests.values()} == {"dark", "matrix"}
    assert all(m["scripts"]["one"]["status"] == "ok" for m in manifests.values())
    for job in ("0", "1"):
        assert (sweep_dir / job / "one" / "one.mp4").stat().st_size > 0
    pids = {process_of(sweep_dir / job) for job in ("0", "1")}
    assert len(pids) == 2, "each job runs in a process of its own"
    summary = [line for line in result.stderr.splitlines() if line.startswith(("ok ", "FAILED"))]
    assert len(summary) == 2 and all(line.startswith("ok ") for line in summary), summary
    assert all(any(f"theme={theme}" in line for line in summary) for theme in ("dark", "matrix"))
    if launcher == "submitit_local":
        assert list((sweep_dir / ".submitit").glob("*/*_log.out")), "submitit keeps each job's log"
    assert "is validated against ConfigStore schema" not in result.stderr


def test_a_failed_job_of_a_launched_sweep_fails_the_sweep_and_is_named(tmp_path):
    """The jobs ran in other processes: the summary is read back from their run dirs."""
    result, _, manifests = sweep(tmp_path, "joblib", "assembly=audio_only", "script.format=log,markdown")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(("ok ", "FAILED"))]
    assert len(lines) == 2
    assert any(line.startswith("ok ") and "script.format=log" in line for line in lines), lines
    assert any(line.startswith("FAILED") and "script.format=markdown" in line and "(exit 1)" in line
               for line in lines), lines


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_launcher_files_extend_the_plugin_schema_and_restate_none_of_its_defaults(name):
    path = CONF / "hydra" / "launcher" / f"{name}.yaml"
    chosen = OmegaConf.to_container(OmegaConf.load(path))
    assert chosen.pop("defaults") == [f"{name}_schema"]
    defaults = OmegaConf.structured(SCHEMAS[name])
    assert chosen and set(chosen) <= set(defaults), "a key the launcher does not have"
    assert [k for k, v in chosen.items() if v == defaults[k]] == []
