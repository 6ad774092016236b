"""Content keys: a node's key hashes its stage name and version, the config subtrees it reads (less its
unkeyed settings), its own data and its inputs' keys, so two nodes with one key produce the same output.
A ``Part`` input adds the digest of the value it picks instead (early cutoff), which is known only once
the node it reads has run: a run keys its nodes as they become ready.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from renderer.engine.node import Dep, Node, Part
from renderer.engine.output import StageOutput

# how an output was made and what was noted on the way, not what it says: no part of a Part's value
_NOT_SAID = tuple(f.name for f in dataclasses.fields(StageOutput))


def plain(value: Any) -> Any:
    """``value`` as JSON-able plain data: configs and dataclasses as containers, sequences item by item."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # field by field, as dataclasses.asdict would, without its deep copies (a layer has thousands of events)
        skip = _NOT_SAID if isinstance(value, StageOutput) else ()
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in skip}
    return value


def without(selected: dict[str, Any], unkeyed: tuple[str, ...]) -> dict[str, Any]:
    """``selected`` minus the dotted ``unkeyed`` settings, at any depth below one of its read paths."""
    for dotted in unkeyed:
        if dotted in selected:
            del selected[dotted]
            continue
        path = next((p for p in selected if dotted.startswith(p + ".")), None)
        if path is None:
            continue
        *parents, leaf = dotted[len(path) + 1:].split(".")
        node = selected[path]
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return selected


def select(cfg: DictConfig, paths: tuple[str, ...]) -> dict[str, Any]:
    """The config at each of ``paths``, as plain data, by path (a missing value raises)."""
    return {path: plain(OmegaConf.select(cfg, path, throw_on_missing=True)) for path in paths}


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(plain(value), sort_keys=True, default=str).encode()).hexdigest()


class Picks:
    """Each Part's value and its digest, picked from ``outputs`` once: the chunks of a long scene all read the
    same layers, and picking and hashing a layer's events for every chunk would cost chunks × events. A value
    is shared by every node reading that Part (Parts are equal when their node and pick are): read-only."""

    def __init__(self, outputs: dict[str, Any]):
        self.outputs = outputs
        self.values: dict[Part, Any] = {}
        self.digests: dict[Part, str] = {}

    def value(self, part: Part) -> Any:
        if part not in self.values:
            if part.node not in self.outputs:
                raise ValueError(f"the key of a node reading part of {part.node!r} is known only once it has run")
            self.values[part] = part.pick(self.outputs[part.node])
        return self.values[part]

    def digest(self, part: Part) -> str:
        if part not in self.digests:
            self.digests[part] = digest(self.value(part))
        return self.digests[part]


def fingerprint(dep: Dep | tuple[Dep, ...], keys: dict[str, str], picks: Picks) -> Any:
    """What a dependency adds to a key: the node's key, or the digest of a Part's value."""
    if isinstance(dep, tuple):
        return [fingerprint(one, keys, picks) for one in dep]
    if isinstance(dep, Part):
        return "part:" + picks.digest(dep)
    return keys[dep]


def key(node: Node, cfg: DictConfig, keys: dict[str, str], outputs: dict[str, Any], picks: Picks | None = None
        ) -> str:
    """The content key of ``node``, given its deps' keys (and, for Parts, their outputs, or the ``picks`` of
    them a run keeps). The node's name, scene and part are not in it: what it reads says what it makes."""
    picks = Picks(outputs) if picks is None else picks
    payload = {
        "stage": node.stage,
        "version": node.version,
        "cfg": without(select(cfg, node.reads), node.unkeyed),
        "data": plain(node.data),
        "deps": {name: fingerprint(dep, keys, picks) for name, dep in node.deps.items()},
    }
    return digest(payload)
