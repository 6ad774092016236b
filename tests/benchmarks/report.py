"""The results table: one row per claim, and the machine it was measured on."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.benchmarks.measure import ROOT, ffmpeg_version


@dataclass
class Row:
    id: str  # P1, P2a …
    claim: str  # what is claimed, in a few words
    figure: str  # the measured figure, with what it is
    against: str  # what it is compared with, and its figure
    ratio: str
    target: str
    met: bool | None  # None: failed to measure (see `error`)
    runs: list[str] = field(default_factory=list)  # every run's figures, for the details below the table
    error: str = ""

    @property
    def verdict(self) -> str:
        return "FAILED" if self.met is None else "pass" if self.met else "MISS"


def failed(id_: str, claim: str, target: str, error: Exception | str) -> Row:
    return Row(id_, claim, "", "", "", target, None, error=str(error))


def machine() -> str:
    free = psutil.virtual_memory()
    rev = _git("rev-parse", "--short", "HEAD")
    dirty = " + uncommitted changes" if _git("status", "--porcelain", "--", "renderer", "conf", "tests") else ""
    return (f"{len(os.sched_getaffinity(0))} cores ({psutil.cpu_count(logical=False)} physical), "
            f"{free.total / 2**30:.1f} GB RAM; {ffmpeg_version()}; renderer {rev}{dirty}")


def markdown(rows: list[Row], header: list[str]) -> str:
    table = ["| # | claim | measured | against | ratio | target | verdict |", "|---|---|---|---|---:|---|---|"]
    table += [f"| {r.id} | {r.claim} | {r.figure} | {r.against} | {r.ratio} | {r.target} | {r.verdict} |"
              for r in rows]
    details = [f"- **{r.id}**: " + "; ".join(r.runs) for r in rows if r.runs]
    errors = [f"### {r.id} FAILED\n```\n{r.error}\n```" for r in rows if r.error]
    return "\n".join(["# Benchmarks", "", *header, "", *table, "", "Every run (the table shows their median):", "",
                      *details, *(["", *errors] if errors else []), ""])


def write(text: str, path: Path) -> None:
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()
