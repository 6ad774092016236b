"""Admission control against this machine's real memory and disk: refuse what can never fit, wait for what
may come free, warn when a job starts without its memory."""

from __future__ import annotations

import time
from types import SimpleNamespace

import psutil
import pytest
from loguru import logger

from renderer.ops import admission
from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from tests.conftest import TINY, compose_cfg

GB = 1024**3


def limits(memory_gb: float, wait_s: float = 0.0, min_free_gb: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(memory_gb=memory_gb, admission_wait_s=wait_s, min_free_gb=min_free_gb)


def just_under_total() -> float:
    """A limit this machine could meet in principle, but not now: something is always using some memory."""
    return psutil.virtual_memory().total / GB * 0.999


def test_a_limit_above_the_machines_memory_is_refused_with_the_fix():
    with pytest.raises(admission.NeverFits, match=r"limits.memory_gb=100000 is more than .* limits.memory_gb=0"):
        admission.check_fits(limits(100000))
    admission.check_fits(limits(just_under_total()))  # possible, so not refused
    admission.check_fits(limits(0))


def test_free_memory_admits_a_job_at_once():
    started = time.monotonic()
    assert admission.await_memory(limits(0.001, wait_s=30), logger) == ""
    assert admission.await_memory(limits(0, wait_s=30), logger) == ""  # 0: no check
    assert time.monotonic() - started < 5


def test_a_job_waits_for_memory_then_starts_with_a_warning():
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="INFO")
    started = time.monotonic()
    try:
        warning = admission.await_memory(limits(just_under_total(), wait_s=1.0), logger)
    finally:
        logger.remove(sink)
    assert time.monotonic() - started >= 1.0  # it waited for the memory to come free
    assert "started with only" in warning and "after waiting 1 s" in warning and "batch.n_jobs" in warning
    assert sum("waiting for memory" in m for m in messages) == 1  # said once, not every poll


def test_jobs_by_memory_gives_each_job_its_share():
    free_gb = psutil.virtual_memory().available / GB
    assert admission.jobs_by_memory(limits(free_gb * 0.4), 5)[0] == 2
    assert admission.jobs_by_memory(limits(free_gb * 2), 5)[0] == 1  # always at least one
    assert admission.jobs_by_memory(limits(0), 5)[0] == 5


def test_a_job_without_its_memory_still_renders_and_records_why(two_scenes, tmp_path):
    cfg = compose_cfg(*TINY, "assembly=audio_only", f"limits.memory_gb={just_under_total():.4f}",
                      "limits.admission_wait_s=0.5")
    record = render_script(two_scenes, "tiny", cfg, RunLayout(tmp_path))
    assert record["status"] == "ok", record["error"]
    assert any("started with only" in w for w in record["warnings"])
    assert (tmp_path / "tiny" / "tiny.mp4").exists()


def test_a_limit_no_job_can_meet_fails_the_script_with_the_fix(two_scenes, tmp_path):
    record = render_script(two_scenes, "tiny", compose_cfg(*TINY, "limits.memory_gb=100000"), RunLayout(tmp_path))
    assert record["status"] == "failed" and "limits.memory_gb=100000 is more than" in record["error"]
