"""What a stage returns: a ``StageOutput`` says who made it (``provider``), what it noticed on the way
(``warnings``) and which files it holds (``files()``), wherever in its fields they sit.

The graph records the provider and warnings of every node; the cache moves an output's files into its
entries and gives the output back pointing at them (``relocated``), so every Path an output holds must be
a file its stage made (in the work folder), never one it only read. Outputs are plain frozen dataclasses.
Every subclass is registered by name as it is defined (``output_types``): the classes a cache record may
rebuild (renderer/engine/records.py), found there and never by importing what a record names.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

T = TypeVar("T")

_OUTPUT_TYPES: dict[str, type] = {}  # "<module>:<qualname>" -> every StageOutput subclass defined so far


@functools.cache
def type_name(cls: type) -> str:
    """How a record names a class: ``renderer.stages.timeline:Timeline``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def output_types() -> dict[str, type]:
    """Every ``StageOutput`` subclass this process has defined, by ``type_name``."""
    return dict(_OUTPUT_TYPES)


@dataclass(frozen=True, kw_only=True)
class StageOutput:
    """The base of every stage's output type: its own fields first, then these two by keyword."""

    provider: str = ""  # who made it: "espeak", "ffmpeg:concat", "placeholder", ...
    warnings: tuple[str, ...] = ()  # for the script's record: the output is usable, but the user should know

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _OUTPUT_TYPES[type_name(cls)] = cls

    def files(self) -> list[Path]:
        """Every file this output holds, in any field: a Path, or Paths in lists, tuples, sets, dicts and
        nested dataclasses; each once."""
        return files_in(self)


_ATOMS = frozenset({str, int, float, bool, bytes, type(None)})  # hold no Path: not looked into


@functools.cache
def init_fields(cls: type) -> tuple[str, ...]:
    """The fields a dataclass is built from (what ``dataclasses.replace`` and a cache record take)."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def _mapped(value: Any, fn: Callable[[Path], Path]) -> Any:
    """``value`` with every Path in it replaced by ``fn(path)``, containers and dataclasses rebuilt only where
    something changed (a dataclass through its init fields)."""
    if type(value) in _ATOMS:
        return value
    if isinstance(value, Path):
        return fn(value)
    if isinstance(value, dict):
        items = [(_mapped(k, fn), _mapped(v, fn)) for k, v in value.items()]
        same = all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items()))
        return value if same else type(value)(items)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_mapped(v, fn) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)  # a namedtuple's fields
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {name: new for name in init_fields(type(value))
                   if (new := _mapped(old := getattr(value, name), fn)) is not old}
        return dataclasses.replace(value, **changed) if changed else value
    return value


def files_in(value: Any) -> list[Path]:
    """Every Path in ``value`` (an output, or any plain data), in the order found, each once."""
    found: dict[Path, None] = {}

    def note(path: Path) -> Path:
        found[path] = None
        return path

    _mapped(value, note)
    return list(found)


def relocated(value: T, moves: Mapping[Path, Path]) -> T:
    """``value`` with every file it holds that ``moves`` names at its new place."""
    return _mapped(value, lambda path: moves.get(path, path)) if moves else value
