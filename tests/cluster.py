"""A real Dask cluster for the tests: a ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, as a
user would start them on their machines (one thread per worker, one script at a time)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from renderer.ops.secrets import SECRET_ENV_VARS
from tests.conftest import ROOT


def _dask(*args: str) -> list[str]:
    return [sys.executable, "-m", "dask", *args]  # `dask scheduler`, `dask worker`, with this interpreter


class Cluster:
    """``dask scheduler`` + ``workers`` × ``dask worker``; ``env`` adds to each worker's environment (its
    credentials, say); ``wrap`` prefixes a worker's command (e.g. an ``unshare`` that hides a path from it)."""

    def __init__(self, folder: Path, workers: int = 2, *, env: dict[str, str] | None = None,
                 wrap: list[str] | None = None):
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = folder / "scheduler.json"
        base = {k: v for k, v in os.environ.items() if k not in SECRET_ENV_VARS}
        base["PYTHONPATH"] = str(ROOT)
        self.worker_env = base | (env or {})
        self.logs = {name: open(folder / f"{name}.log", "w") for name in
                     ["scheduler", *(f"worker{n}" for n in range(workers))]}
        self.scheduler = self._start("scheduler", _dask("scheduler", "--host", "127.0.0.1", "--port", "0",
                                                        "--no-dashboard", "--scheduler-file",
                                                        str(self.scheduler_file)), base)
        self.address = self._address()
        self.workers = [self._start(f"worker{n}", (wrap or []) + _dask(
            "worker", self.address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
            "--name", f"worker{n}", "--death-timeout", "60"), self.worker_env) for n in range(workers)]
        self.wait_for_workers(workers)

    def _start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.logs[name], stderr=subprocess.STDOUT,
                                start_new_session=True)

    def _address(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scheduler_file.exists():
                try:
                    return json.loads(self.scheduler_file.read_text())["address"]
                except ValueError:  # half written
                    pass
            assert self.scheduler.poll() is None, self.log("scheduler")
            time.sleep(0.05)
        raise TimeoutError(f"no scheduler address:\n{self.log('scheduler')}")

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=timeout)

    def log(self, name: str) -> str:
        self.logs[name].flush()
        return (self.folder / f"{name}.log").read_text()

    def worker_processes(self) -> list[psutil.Process]:
        """Every process of the workers: their nannies and the worker processes the nannies run."""
        out = []
        for proc in self.workers:
            try:
                parent = psutil.Process(proc.pid)
                out += [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return out

    def stop_scheduler(self) -> None:
        _stop(self.scheduler)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            _stop(proc)
        for fh in self.logs.values():
            fh.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
