"""What this machine's ffmpeg was found to do (the encoders and filters it has, an encoder that starts), kept in
the user's cache dir (``$XDG_CACHE_HOME/renderer/encoders.json``) per host and binary (path, size, mtime), so
it is asked once per machine rather than by every run. Several processes write the file: each adds its note to
what it reads there first. A file that cannot be read or written costs only the asking again."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from renderer.ops.files import user_cache_dir, write_json_atomic


def cache_file() -> Path:
    return user_cache_dir() / "encoders.json"


def machine(binary: str) -> str:
    """This host and the ffmpeg at ``binary``: what a note holds for."""
    try:
        info = Path(binary).stat()
        made = f"{info.st_size}:{info.st_mtime_ns}"
    except OSError:
        made = "?"
    return f"{socket.gethostname()}|{binary}|{made}"


def recall(binary: str, key: str) -> dict[str, Any] | None:
    """The note kept under ``key`` for ``binary`` on this host, if any."""
    note = _load().get(machine(binary), {}).get(key)
    return note if isinstance(note, dict) else None


def note(binary: str, key: str, value: dict[str, Any]) -> None:
    data = _load()
    data.setdefault(machine(binary), {})[key] = value
    try:
        cache_file().parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache_file(), data)
    except OSError:
        pass


def _load() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
