"""Cache keys read exactly what a stage uses: for every node of every strategy's graph, each config leaf it
declares changes its key, and every other leaf of the config (and its unkeyed settings) leaves it alone."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
from omegaconf import DictConfig, OmegaConf

from renderer.engine.graph import Graph
from renderer.media import ass
from renderer.ops.files import RunLayout
from renderer.pipeline import compose
from renderer.pipeline.render import providers_for
from renderer.providers.base import AudioClip
from renderer.stages.captions import CaptionTrack
from renderer.stages.terminal import TerminalTrack
from renderer.stages.timeline import plan
from tests.conftest import THREE_SCENES, compose_cfg, parsed


def leaves(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of every leaf below ``node`` (lists count as leaves)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def flipped(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return [*value, value[0] if value else "x"]
    return f"{value}-other"


def with_leaf_flipped(cfg: DictConfig, leaf: str) -> DictConfig:
    other = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.update(other, leaf, flipped(OmegaConf.select(other, leaf)), merge=False)
    return other


def outputs_for(script) -> dict[str, Any]:
    """Stand-in outputs for the nodes read through Parts (a key hashes what they say)."""
    track = TerminalTrack("[Script Info]", [ass.Event(0, None, 1, "Term", "hi")], 1.0, 10, 40)
    out: dict[str, Any] = {"timeline": plan([(s.start, s.duration) for s in script.scenes], 10)}
    for scene in script.scenes:
        out[f"terminal/{scene.index}"] = track
        out[f"captions/{scene.index}"] = CaptionTrack("[Script Info]", [ass.Event(0, 50, 0, "Caption", "hi")])
        out[f"title/{scene.index}"] = CaptionTrack("[Script Info]", [ass.Event(0, 50, 0, "Title", "hi")])
        out[f"voice/{scene.index}"] = AudioClip(None, 1.0, provider="espeak")
    return out


def key_of(node, cfg: DictConfig, graph: Graph, outputs: dict[str, Any]) -> str:
    return Graph.key(node, cfg, {name: "0" * 64 for name in graph.nodes}, outputs)


@pytest.mark.parametrize("strategy", ["overlay", "ui_only", "visual_only", "audio_only", "overlay captions.burn=true",
                                      "visual_only captions.burn=true assembly.title_card=true",
                                      "audio_only audio.music=ambient"])
def test_every_declared_leaf_and_only_those_change_a_nodes_key(tmp_path, strategy):
    strategy, *extra = strategy.split()
    cfg = compose_cfg(f"assembly={strategy}", "assembly.transition_s=0.5", "encode.chunk_s=2", *extra)
    script = parsed(THREE_SCENES)
    comp = compose.compose(script, "tiny", cfg, providers_for(cfg, RunLayout(tmp_path)))
    outputs = outputs_for(script)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    everything = sorted(leaves(resolved))
    base, keyed = {}, {}
    for name, node in comp.graph.nodes.items():
        base[name] = key_of(node, cfg, comp.graph, outputs)
        declared = {leaf for leaf in everything if any(leaf == r or leaf.startswith(r + ".") for r in node.reads)}
        assert all(any(leaf == r or leaf.startswith(r + ".") for leaf in everything) for r in node.reads), name
        keyed[name] = {leaf for leaf in declared
                       if not any(leaf == u or leaf.startswith(u + ".") for u in node.unkeyed)}
    # one copy of the config, each leaf flipped in turn and put back (building a config per leaf took half the
    # time): every node's key with that one leaf changed, against its key with none
    other = OmegaConf.create(resolved)
    for leaf in everything:
        value = OmegaConf.select(other, leaf)
        OmegaConf.update(other, leaf, flipped(value), merge=False)
        for name, node in comp.graph.nodes.items():
            changed = key_of(node, other, comp.graph, outputs) != base[name]
            assert changed == (leaf in keyed[name]), \
                f"{name}: {leaf} {'changes' if changed else 'does not change'} its key"
        OmegaConf.update(other, leaf, value, merge=False)
    assert OmegaConf.to_container(other) == resolved  # every leaf put back as it was
    assert {node.stage for node in comp.graph.nodes.values()} == set(compose.stage_names(cfg))


def test_the_terminal_is_keyed_by_the_theme_settings_it_draws_with_only():
    cfg = compose_cfg()
    script = parsed(THREE_SCENES)
    from renderer.stages import terminal

    node = terminal.node(script.scenes[0], script.title)
    theme_reads = {r for r in node.reads if r.startswith("theme.")}
    assert "theme.foreground" in theme_reads and "theme.red" not in theme_reads and "theme.name" not in theme_reads
    assert Graph.key(node, cfg, {}, {}) == Graph.key(node, with_leaf_flipped(cfg, "theme.red"), {}, {})


def test_a_terminal_reads_the_ansi_colours_its_text_shows_and_no_others():
    cfg = compose_cfg()
    script = parsed(THREE_SCENES.replace("$ ", "$ \x1b[31mred\x1b[0m ", 1))
    from renderer.stages import terminal

    coloured = terminal.node(script.scenes[0], script.title)
    assert {r for r in coloured.reads if r.startswith("theme.")} - {f"theme.{leaf}" for leaf in terminal.THEME_READS} \
        == {"theme.red"}
    base = Graph.key(coloured, cfg, {}, {})
    assert Graph.key(coloured, with_leaf_flipped(cfg, "theme.red"), {}, {}) != base
    assert Graph.key(coloured, with_leaf_flipped(cfg, "theme.green"), {}, {}) == base


def test_unkeyed_settings_can_sit_deep_below_a_read_path():
    from renderer.engine.keys import select, without
    from renderer.engine.node import Node

    cfg = OmegaConf.create({"voice": {"model": "m", "settings": {"speed": 1.0, "style": 0.0}}})
    selected = without(select(cfg, ("voice",)), ("voice.settings.speed",))
    assert selected == {"voice": {"model": "m", "settings": {"style": 0.0}}}
    node = Node("v", "1", lambda inp: None, reads=("voice",), unkeyed=("voice.settings.speed",))
    other = OmegaConf.create({"voice": {"model": "m", "settings": {"speed": 2.0, "style": 0.0}}})
    assert Graph.key(node, cfg, {}, {}) == Graph.key(node, other, {}, {})
