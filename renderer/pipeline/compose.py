"""A script's stage graph, composed from the assembly strategy in config.

A strategy (``conf/assembly/*.yaml``) says what each scene's segment is drawn on (``assembly.picture``:
the scene's ``visual``, the theme's ``background``, or ``none`` for sound only) and which layers are burnt
in on top of it (``assembly.layers``, bottom first). Every name there is a stage module in
``renderer/stages/`` with an ``add(composition)`` function, so a new layer (burned-in captions, say) is one
module plus one line of config. The fixed part of the graph around them:

    voice, picture, layers (per scene) -> timeline -> narration (per scene, without a music bed) -> soundtrack,
    segment (per scene), transition (per cut) -> join -> mux

Stages find each other's nodes through ``Composition.name`` alone.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from omegaconf import DictConfig

from renderer.config import PICTURES_WITHOUT_STAGE
from renderer.engine.graph import Graph
from renderer.engine.node import Node, node_name
from renderer.media import codecs
from renderer.providers.chain import Providers
from renderer.script import Script
from renderer.stages import soundtrack
from renderer.stages import voice as voice_stage
from renderer.stages.timeline import chunk_count, plan
from renderer.stages.visual import shots_of


class CompositionError(ValueError):
    """The strategy in config names something that is not a stage."""


AFTER_TIMELINE = ("credits",)  # layers that read the timeline (the credits card: the last scene's length)


def layer_names(cfg: DictConfig) -> list[str]:
    """The layers burnt in over the picture, bottom first: the strategy's, then the title card when
    ``assembly.title_card`` is on and the captions when ``captions.burn`` is (on top, readable over the card),
    then the credits card when ``assembly.credits_card`` is (the ending, over everything); a picture of
    ``none`` has nothing to burn them into."""
    layers = list(cfg.assembly.layers)
    for name, wanted in (("title", cfg.assembly.title_card), ("captions", cfg.captions.burn),
                         ("credits", cfg.assembly.credits_card)):
        if wanted and cfg.assembly.picture != "none" and name not in layers:
            layers.append(name)
    return layers


def stage_names(cfg: DictConfig) -> list[str]:
    """The stages a script's graph is built from, in the order they are added."""
    picture, layers = cfg.assembly.picture, layer_names(cfg)
    sources = ["voice"] + ([picture] if picture not in PICTURES_WITHOUT_STAGE else []) + layers
    # each clip shaped and measured, then placed as a piece of its own, or mixed whole with a bed
    sound = ["level", "soundtrack"] if cfg.audio.music else ["level", "narration", "soundtrack"]
    if picture == "none":
        return [*dict.fromkeys(sources), "timeline", *sound, "mux"]
    early = [name for name in dict.fromkeys(sources) if name not in AFTER_TIMELINE]
    late = [name for name in layers if name in AFTER_TIMELINE]
    cuts = ["transition"] if cfg.assembly.transition_s > 0 else []
    # the soundtrack before the segments: it needs only the voices and the timeline, so it is mixed beside the
    # encodes (in the background) rather than alone on one core at the end
    return [*early, "timeline", *late, *sound, "segment", *cuts, "join", "mux", "thumbnails"]


def stage_module(name: str) -> Any:
    try:
        module = importlib.import_module(f"renderer.stages.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"renderer.stages.{name}":
            raise
        raise CompositionError(f"no stage {name!r} (renderer/stages/{name}.py): check assembly.picture and "
                               "assembly.layers") from None
    if not callable(getattr(module, "add", None)):
        raise CompositionError(f"renderer/stages/{name}.py has no add(composition) function")
    return module


def _cores(cfg: DictConfig) -> int:
    return cfg.limits.cores or len(os.sched_getaffinity(0))


@dataclass
class Composition:
    """What the stages of one script share while they add their nodes."""

    script: Script
    slug: str
    cfg: DictConfig
    providers: Providers
    graph: Graph = field(default_factory=Graph)

    @property
    def picture(self) -> str:
        return self.cfg.assembly.picture

    @property
    def layers(self) -> list[str]:
        return layer_names(self.cfg)

    @property
    def scenes(self) -> range:
        return range(len(self.script.scenes))

    def name(self, stage: str, scene: int | None = None, part: int | str | None = None) -> str:
        """The node of ``stage`` (for ``scene``, when it has one per scene; ``part`` of it, when several)."""
        return node_name(stage, scene, part)

    def pictures(self, scene: int) -> tuple[str, ...]:
        """The nodes of the picture stage that scene ``scene`` shows: one, or one per shot (none: no stage)."""
        if self.picture in PICTURES_WITHOUT_STAGE:
            return ()
        if self.name(self.picture, scene) in self.graph.nodes:
            return (self.name(self.picture, scene),)
        shots = []
        while self.name(self.picture, scene, len(shots)) in self.graph.nodes:
            shots.append(self.name(self.picture, scene, len(shots)))
        return tuple(shots)

    def nodes_of(self, stage: str) -> tuple[str, ...]:
        """Every node of ``stage``, in the order they were added (scene by scene)."""
        return tuple(name for name, node in self.graph.nodes.items() if node.stage == stage)

    def add(self, node: Node) -> Node:
        return self.graph.add(node)

    @property
    def timeout(self) -> float:
        return self.cfg.limits.ffmpeg_timeout_s

    def budget(self, group: str) -> float:
        """A cloud provider's whole scene (every request, retry and poll); a local tool's single run."""
        provider = self.providers.primary.get(group)
        cloud = getattr(provider, "service", None) or getattr(provider, "services", None)
        return self.cfg.limits.scene_timeout_s if cloud else self.timeout

    @property
    def transitions(self) -> bool:
        """Whether the cuts between scenes have transitions (``assembly.transition_s``): a segment of their own
        each, and the video fades in and out at its ends."""
        return self.cfg.assembly.transition_s > 0 and self.picture != "none"

    @cached_property
    def chunks(self) -> list[int]:
        """How many chunks each scene's video is encoded in: counted from its scripted length (and its shots)."""
        fps = self.cfg.format.fps
        scripted = plan([(s.start, s.duration) for s in self.script.scenes], fps)
        provider = self.providers.primary.get("visual") if self.picture == "visual" else None
        return [chunk_count(span.frames, fps, self.cfg.encode.chunk_s, shots_of(scene, provider))
                for span, scene in zip(scripted.spans, self.script.scenes)]

    @property
    def core_share(self) -> int:
        """The cores this script may use: the run's, divided among the scripts rendered at once."""
        jobs = max(1, min(self.cfg.batch.n_jobs, self.cfg.limits.max_jobs))
        return max(1, _cores(self.cfg) // jobs)

    @property
    def encode_slots(self) -> int:
        """Encodes of this script at once: its share of the cores, never more than it has encodes."""
        cuts = len(self.chunks) - 1 if self.transitions else 0
        encodes = sum(self.chunks) + cuts if self.picture != "none" else 1
        return max(1, min(self.cfg.limits.stage_threads, self.core_share, encodes))

    @property
    def slots(self) -> dict[str, int]:
        """How many nodes of each named slot run at once: the encodes (and pictures drawn here), as the cores
        allow; the voices, as many as the voice provider speaks at once (``PARALLEL``; else the stage threads); the
        soundtrack, beside them at a lower priority."""
        voices = getattr(self.providers.primary.get("voice"), "PARALLEL", self.cfg.limits.stage_threads)
        return {"encode": self.encode_slots, voice_stage.SLOT: max(1, voices), soundtrack.SLOT: 1}

    @cached_property
    def encoding(self) -> tuple[codecs.Encoder, str]:
        """The encoder every segment of the video gets (``encode.codec`` on ``encode.hw``, as this machine has
        it), and why it is not the one asked for ("" when it is)."""
        e = self.cfg.encode
        return codecs.resolve(e.codec, e.hw, preset=e.preset)

    @property
    def encoder(self) -> codecs.Encoder:
        return self.encoding[0]

    @property
    def encoder_fallback(self) -> str:
        """Why the video is not encoded as ``encode.hw`` asked ("" when it is, or when it has no picture)."""
        return self.encoding[1] if "encoding" in self.__dict__ else ""

    @property
    def encode_threads(self) -> int:
        """x264 threads per encode, so that all encodes together fill the cores without oversubscribing."""
        return max(1, self.core_share // self.encode_slots)

    def outputs(self, outputs: dict[str, Any], stage: str) -> list[Any]:
        """``stage``'s output for every scene (None where it has none)."""
        return [outputs.get(self.name(stage, i)) for i in self.scenes]


def compose(script: Script, slug: str, cfg: DictConfig, providers: Providers) -> Composition:
    comp = Composition(script, slug, cfg, providers)
    for name in stage_names(cfg):
        stage_module(name).add(comp)
    return comp
