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
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.asdict(value)
        if isinstance(value, StageOutput):
            for name in _NOT_SAID:
                del fields[name]
        return fields
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


def fingerprint(dep: Dep | tuple[Dep, ...], keys: dict[str, str], outputs: dict[str, Any]) -> Any:
    """What a dependency adds to a key: the node's key, or the digest of a Part's value."""
    if isinstance(dep, tuple):
        return [fingerprint(one, keys, outputs) for one in dep]
    if isinstance(dep, Part):
        if dep.node not in outputs:
            raise ValueError(f"the key of a node reading part of {dep.node!r} is known only once it has run")
        return "part:" + digest(dep.pick(outputs[dep.node]))
    return keys[dep]


def key(node: Node, cfg: DictConfig, keys: dict[str, str], outputs: dict[str, Any]) -> str:
    """The content key of ``node``, given its deps' keys (and, for Parts, their outputs). The node's name,
    scene and part are not in it: what it reads says what it makes."""
    payload = {
        "stage": node.stage,
        "version": node.version,
        "cfg": without(select(cfg, node.reads), node.unkeyed),
        "data": plain(node.data),
        "deps": {name: fingerprint(dep, keys, outputs) for name, dep in node.deps.items()},
    }
    return digest(payload)
