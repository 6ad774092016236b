"""Paths, slugs, the run-dir layout and atomic writes."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def slugify(name: str) -> str:
    """A file-system-safe, lowercase name: 'The Descent (v2).txt' stem -> 'the-descent-v2'."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:80] or "script"


def unique_slugs(paths: list[Path]) -> dict[Path, str]:
    """One slug per input; a clash gets -2, -3 ... in input order."""
    taken: set[str] = set()
    out: dict[Path, str] = {}
    for path in paths:
        base = slug = slugify(path.stem)
        n = 1
        while slug in taken:
            n += 1
            slug = f"{base}-{n}"
        taken.add(slug)
        out[path] = slug
    return out


def expand_inputs(patterns: list[str]) -> tuple[list[Path], list[str]]:
    """Files named by ``patterns`` (paths or globs), in order, without repeats; plus patterns matching nothing."""
    files: list[Path] = []
    unmatched: list[str] = []
    for pattern in patterns:
        literal = os.path.expanduser(pattern)
        if Path(literal).is_file():  # a real name that happens to hold glob characters: "LOG [final].txt"
            matches = [literal]
        else:
            matches = [m for m in sorted(glob.glob(literal, recursive=True)) if Path(m).is_file()]
        if not matches:
            unmatched.append(pattern)
        for m in matches:
            path = Path(m).resolve()
            if path not in files:
                files.append(path)
    return files, unmatched


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success fsync it and rename it into place, else delete it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary files
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def copy_atomic(src: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: Path, data: Any) -> None:
    write_text_atomic(target, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


class RunLayout:
    """Where everything of one run lives: ``<run>/<slug>/<slug>.mp4``, ``<run>/tmp/<slug>/`` ..."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    @property
    def manifest(self) -> Path:
        return self.run_dir / "manifest.json"

    @property
    def tmp(self) -> Path:
        return self.run_dir / "tmp"

    def script_dir(self, slug: str) -> Path:
        return self.run_dir / slug

    def output(self, slug: str, suffix: str) -> Path:
        return self.script_dir(slug) / f"{slug}{suffix}"

    def workdir(self, slug: str) -> Path:
        """This process's work dir for ``slug``: a retry in another worker never shares files with the
        leftovers of one that died."""
        path = self.tmp / f"{slug}.{os.getpid()}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def clean_workdir(self, slug: str) -> None:
        shutil.rmtree(self.tmp / f"{slug}.{os.getpid()}", ignore_errors=True)
