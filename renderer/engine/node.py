"""A graph's nodes: who they are (stage, scene, part), what they read, what they run, and what a run
records of each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, TypeVar, Union

from loguru import logger

T = TypeVar("T")


def node_name(stage: str, scene: int | None = None, part: int | str | None = None) -> str:
    """A node's name, made from its identity here only: ``mux``, ``voice/3`` (scene 3), ``segment/3.1``
    (part 1 of scene 3), ``visual.plan`` (the plan part of the visual stage, for no one scene). Names are what
    nodes find each other by; nothing reads them back."""
    name = stage if scene is None else f"{stage}/{scene}"
    return name if part is None else f"{name}.{part}"


def _whole(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Part:
    """An input that is what ``node``'s output says rather than how it was made: the stage receives
    ``pick(output)``, which must be plain data (no files), and its key hashes that value (without the
    output's provider and warnings). Two outputs saying the same thing (a voice of the same length, a
    terminal with nothing to show in any theme) leave the dependent's key as it was, and a fallback's value
    is as good a key as any other."""

    node: str
    pick: Callable[[Any], Any] = _whole


Dep = Union[str, Part]
Deps = Mapping[str, Union[Dep, tuple[Dep, ...]]]


@dataclass(frozen=True)
class NodeInput:
    """Everything a stage function may look at."""

    data: Any  # the node's own plain data (e.g. its scene's narration)
    cfg: dict[str, Any]  # only the config paths the node declared, as plain containers, by path
    deps: dict[str, Any]  # its inputs by the names it declared (a tuple of deps gives a list)
    workdir: Path
    key: str

    def tree(self, prefix: str) -> dict[str, Any]:
        """The declared settings under ``prefix`` as one nested dict: reads ``theme.foreground`` and
        ``theme.font_size`` give ``tree("theme") == {"foreground": ..., "font_size": ...}``."""
        out: dict[str, Any] = {}
        for path, value in self.cfg.items():
            if path == prefix and isinstance(value, dict):
                out.update(value)
            elif path.startswith(prefix + "."):
                *parents, leaf = path[len(prefix) + 1:].split(".")
                node = out
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = value
        return out


class Retry(Protocol):
    """How a node's function is tried again (renderer.ops.reliability.RetryPolicy is one): ``run`` returns
    ``call()``'s result after up to its tries, and starts none once ``cancelled()`` is true."""

    def run(self, call: Callable[[], T], what: str, /, *, cancelled: Callable[[], bool]) -> T: ...


@dataclass
class Node:
    stage: str  # e.g. "voice"
    version: str
    fn: Callable[[NodeInput], Any]
    reads: tuple[str, ...] = ()  # config paths, e.g. ("voice", "format.fps")
    data: Any = None
    deps: Deps | tuple[str, ...] = ()  # input name -> node name, Part, or a tuple of them; names alone
    fallback: Callable[[NodeInput, Exception], Any] | None = None
    cacheable: bool = True  # False when the key cannot vouch for the output (e.g. a stand-in provider)
    retry: Retry | None = None  # tries of ``fn`` before the fallback (or the failure)
    unkeyed: tuple[str, ...] = ()  # read settings that cannot change the output (e.g. "visual.poll_interval_s")
    slot: str = ""  # nodes of one slot share the run's cap for it (e.g. "encode": the CPU-bound encodes)
    scene: int | None = None  # the scene it is for, when its stage has a node per scene
    # which part of that scene, when the stage splits a scene (segment chunks: 0, 1, ...), or a named part of a
    # stage for the whole script (the visual stage's "plan")
    part: int | str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.deps, Mapping):
            self.deps = {name: name for name in self.deps}

    @property
    def name(self) -> str:
        """Unique in the graph: ``node_name(stage, scene, part)``, e.g. "voice/3"."""
        return node_name(self.stage, self.scene, self.part)

    def upstream(self, *, by_key: bool = False) -> list[str]:
        """Names of the nodes this one depends on (``by_key``: only those it is keyed by, not Parts)."""
        out: list[str] = []
        for dep in self.deps.values():
            for one in dep if isinstance(dep, tuple) else (dep,):
                if isinstance(one, Part):
                    if not by_key:
                        out.append(one.node)
                else:
                    out.append(one)
        return out


@dataclass
class NodeRecord:
    """What a run says of one node (a script's record keeps them as its ``stages``)."""

    name: str
    stage: str
    key: str
    status: str = "pending"  # ok | cached | fallback | failed | skipped
    started: float = 0.0  # seconds after the graph began (with ``seconds``: the waterfall in report.html)
    seconds: float = 0.0
    provider: str = ""
    error: str = ""
    # the output's own warnings, then any about keeping it (e.g. the cache could not: the output is fine)
    warnings: list[str] = field(default_factory=list)
    scene: int | None = None
    part: int | str | None = None


class SlotExecutor(Protocol):
    """Runs a slot's node functions elsewhere: ``executor(fn, inp)`` returns ``fn(inp)`` computed there (or
    raises what it raised); at most ``capacity`` at once."""

    capacity: int

    def __call__(self, fn: Callable[[NodeInput], Any], inp: NodeInput) -> Any: ...


def first_that_works(fallbacks: list[Callable[[NodeInput], Any]]) -> Callable[[NodeInput, Exception], Any] | None:
    """A node fallback trying ``fallbacks`` in order; the last one's error if all fail; None if there are none."""
    if not fallbacks:
        return None

    def fallback(inp: NodeInput, exc: Exception) -> Any:
        for attempt in fallbacks[:-1]:
            try:
                return attempt(inp)
            except Exception as error:  # each step that failed is noted on the node's error, for its record
                logger.warning("fallback failed too: {}", error)
                exc.add_note(f"{getattr(attempt, 'label', 'fallback')} failed too: {type(error).__name__}: {error}")
        return fallbacks[-1](inp)

    return fallback
