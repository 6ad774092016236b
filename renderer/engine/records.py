"""Cache records: a stage output as plain JSON data, and back.

A record is data, never code: reading one builds only the classes this process already knows as record types
(``record_types``: the ``StageOutput`` subclasses it has defined, and the dataclasses their fields hold, found
through their type hints), looked up by name; no module a record names is ever imported. Writing checks the
same list, so whatever is written can be read back.

Forms (``FORMAT`` 1): ``None``, booleans, ints, strings and finite floats as themselves; a list as a JSON array;
``{"float": "nan" | "inf" | "-inf"}``; ``{"tuple": [...]}``; ``{"dict": [[key, value], ...]}`` (any keys, in
order); ``{"path": name}`` (a file of the cache entry, by its name there); a dataclass as
``{"type": "<module>:<QualName>", "fields": {name: value}}`` (its init fields).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any, Callable

from renderer.engine.output import init_fields, output_types, type_name

FORMAT = 1  # the record layout written now; one of another number (or none: a pickle) is not read


class Unrecordable(TypeError):
    """An output holding a value no record form fits (a class not among ``record_types``, a set, an object)."""


class NotARecord(ValueError):
    """Data that is not a record this renderer reads: an unknown type or form, a file the entry does not hold."""


def _held(hint: Any, found: dict[str, type]) -> None:
    """The dataclasses a field's type hint names (``tuple[Span, ...]``, ``list[ass.Event]``, ``Box | None``)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        _add(hint, found)
    for arg in typing.get_args(hint):
        _held(arg, found)


def _add(cls: type, found: dict[str, type]) -> None:
    if found.get(type_name(cls)) is cls:
        return
    found[type_name(cls)] = cls
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a hint that does not resolve: what it names is not a record type (writing says so)
        hints = {}
    for f in dataclasses.fields(cls):
        _held(hints.get(f.name), found)


# the last answer, and the outputs it is for (each with whether it was a dataclass yet: one being defined is not)
_known: tuple[tuple[tuple[type, bool], ...], dict[str, type]] = ((), {})


def record_types() -> dict[str, type]:
    """Every class a record may name: the stage outputs defined so far and the dataclasses their fields hold
    (worked out again only when a stage output type was defined since)."""
    global _known
    outputs = tuple((cls, dataclasses.is_dataclass(cls)) for cls in output_types().values())
    if outputs != _known[0]:
        found: dict[str, type] = {}
        for cls, ready in outputs:
            if ready:
                _add(cls, found)
        _known = (outputs, found)
    return _known[1]


# --- writing -----------------------------------------------------------------------------------------------
def dump(value: Any, name_of: Callable[[Path], str]) -> Any:
    """``value`` as record data; each Path as ``name_of(path)``, its file's name in the entry."""
    return _Dumper(record_types(), name_of).dump(value)


class _Dumper:
    def __init__(self, known: dict[str, type], name_of: Callable[[Path], str]):
        self.known, self.name_of = known, name_of

    def dump(self, value: Any) -> Any:
        if value is None or type(value) in (bool, str):
            return value
        if isinstance(value, str):  # a str enum
            return str(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value) if math.isfinite(value) else {"float": repr(float(value))}
        if type(value) is list:
            return [self.dump(v) for v in value]
        if type(value) is tuple:
            return {"tuple": [self.dump(v) for v in value]}
        if type(value) is dict:
            return {"dict": [[self.dump(k), self.dump(v)] for k, v in value.items()]}
        if isinstance(value, Path):
            return {"path": self.name_of(value)}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            name = type_name(type(value))
            if self.known.get(name) is not type(value):
                raise Unrecordable(f"{name} is not a stage output nor a dataclass one holds by its type hints: "
                                   "a cache record cannot hold it")
            return {"type": name, "fields": {field: self.dump(getattr(value, field))
                                             for field in init_fields(type(value))}}
        raise Unrecordable(f"a cache record cannot hold a {type(value).__qualname__}")


# --- reading -----------------------------------------------------------------------------------------------
def load(data: Any, path_of: Callable[[str], Path]) -> Any:
    """The value ``data`` records; each file name as ``path_of(name)``. ``NotARecord`` when it is not one."""
    return _Loader(record_types(), path_of).load(data)


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


class _Loader:
    def __init__(self, known: dict[str, type], path_of: Callable[[str], Path]):
        self.known, self.path_of = known, path_of

    def load(self, data: Any) -> Any:
        if data is None or type(data) in (bool, int, float, str):
            return data
        if type(data) is list:
            return [self.load(v) for v in data]
        if type(data) is dict and data.keys() == {"type", "fields"}:
            if type(data["type"]) is str and type(data["fields"]) is dict:
                return self._object(data["type"], data["fields"])
        if type(data) is not dict or len(data) != 1:
            raise NotARecord(f"no record form is {_short(data)}")
        form, body = next(iter(data.items()))
        if form == "tuple" and type(body) is list:
            return tuple(self.load(v) for v in body)
        if form == "dict" and type(body) is list and all(type(kv) is list and len(kv) == 2 for kv in body):
            return {self._key(k): self.load(v) for k, v in body}
        if form == "float" and type(body) is str and body in _FLOATS:
            return _FLOATS[body]
        if form == "path" and type(body) is str:
            return self.path_of(body)
        raise NotARecord(f"no record form is {_short(data)}")

    def _key(self, data: Any) -> Any:
        key = self.load(data)
        try:
            hash(key)
        except TypeError:
            raise NotARecord(f"a dict key cannot be {_short(data)}") from None
        return key

    def _object(self, name: str, fields: dict[str, Any]) -> Any:
        cls = self.known.get(name)
        if cls is None:
            raise NotARecord(f"{name!r} is not a type a cache record may hold")
        values = {field: self.load(value) for field, value in fields.items()}
        try:
            return cls(**values)
        except Exception as exc:  # fields this class does not take (a record of another version of it)
            raise NotARecord(f"{name} cannot be rebuilt from its record ({type(exc).__name__}: {exc})") from None


def _short(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 80 else text[:77] + "..."
