"""Composing a script's stage graph from the strategy in config: stage names, nodes, encode slots, errors."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from renderer.engine.node import Part
from renderer.media.codecs import Encoder
from renderer.ops.files import RunLayout
from renderer.pipeline import compose
from renderer.pipeline.render import providers_for, render_script
from tests.conftest import TINY, compose_cfg, parsed

STAGES = {
    "overlay": ["voice", "visual", "terminal", "timeline", "level", "narration", "soundtrack", "segment", "join",
                "mux", "thumbnails"],
    "visual_only": ["voice", "visual", "timeline", "level", "narration", "soundtrack", "segment", "join", "mux",
                    "thumbnails"],
    "ui_only": ["voice", "terminal", "timeline", "level", "narration", "soundtrack", "segment", "join", "mux",
                "thumbnails"],
    "audio_only": ["voice", "timeline", "level", "narration", "soundtrack", "mux"],
}


def scenes_script(n: int):
    """A LOG script of ``n`` short scenes, three seconds apart."""
    body = "".join(f"[0:{3 * i:02d} – Scene {i + 1}]\nVisual: Picture number {i + 1}.\nNarration:\n“Line {i + 1}.”\n\n"
                   for i in range(n))
    script = parsed(f"SCRIPT: TEST_0009 — MANY\n\n{body}END TEST_0009\n", "many.txt")
    assert len(script.scenes) == n and not script.errors
    return script


def composed(tmp_path: Path, script, *overrides: str) -> compose.Composition:
    cfg = compose_cfg(*TINY, *overrides)
    return compose.compose(script, "tiny", cfg, providers_for(cfg, RunLayout(tmp_path)))


@pytest.mark.parametrize("strategy", sorted(STAGES))
def test_stage_names_follow_the_strategy(strategy):
    assert compose.stage_names(compose_cfg(*TINY, f"assembly={strategy}")) == STAGES[strategy]


@pytest.mark.parametrize("strategy", ["overlay", "visual_only"])
def test_by_default_the_title_card_and_the_captions_are_drawn_over_the_picture(strategy):
    """What a publisher would pick (README, Captions): words on screen whenever narration plays."""
    plain = STAGES[strategy]
    at = plain.index("timeline")
    assert compose.stage_names(compose_cfg(f"assembly={strategy}")) == [*plain[:at], "title", "captions", *plain[at:]]
    assert compose.stage_names(compose_cfg("assembly=audio_only")) == STAGES["audio_only"]


def test_stage_names_keep_the_layers_in_order_once_each():
    cfg = compose_cfg(*TINY, "assembly=overlay", "assembly.layers=[terminal,terminal]")
    assert compose.stage_names(cfg) == STAGES["overlay"]


@pytest.mark.parametrize("strategy", sorted(STAGES))
def test_the_graph_has_a_node_per_stage_and_scene(tmp_path, strategy):
    script = parsed()
    comp = composed(tmp_path, script, f"assembly={strategy}")
    once = {"timeline", "soundtrack", "join", "mux", "thumbnails"} & set(STAGES[strategy])
    per_scene = [s for s in STAGES[strategy] if s not in once]
    expected = {f"{stage}/{i}" for stage in per_scene if stage != "segment" for i in (0, 1)}
    expected |= {f"segment/{i}.{k}" for i in (0, 1) for k in range(comp.chunks[i])} if "segment" in per_scene else set()
    expected |= once
    nodes = comp.graph.nodes
    assert set(nodes) == expected
    assert {n.stage for n in nodes.values()} == set(STAGES[strategy])
    # CPU-bound work takes turns for the cores (pictures drawn here among it); voices wait in a slot of their own;
    # the clips' shaping and the soundtrack, which only the mux waits for, beside the encodes at a lower priority
    slots = {"segment": "encode", "level": "background", "narration": "background", "soundtrack": "background",
             "visual": "encode", "voice": "voice"}
    for name, node in nodes.items():
        assert node.slot == slots.get(node.stage, ""), name
    assert comp.slots["background"] == 1
    mux_deps = nodes["mux"].deps
    if strategy == "audio_only":
        assert "picture" not in mux_deps and "join" not in nodes
    else:
        assert nodes["join"].deps["segments"] == comp.nodes_of("segment")  # every chunk, scene by scene
        assert mux_deps["picture"] == "join" and "segments" not in mux_deps  # two files: a sound edit copies them
        assert nodes["join"].fallback is not None and nodes["mux"].fallback is not None


def test_segments_read_their_span_their_picture_and_their_layers(tmp_path):
    comp = composed(tmp_path, parsed(), "assembly=overlay")
    segment = comp.graph.nodes["segment/1.0"]
    assert segment.stage == "segment" and segment.fallback is not None
    deps = segment.deps
    assert isinstance(deps["chunk"], Part) and deps["chunk"].node == "timeline"
    assert deps["picture"] == "visual/1"
    assert [p.node for p in deps["layers"]] == ["terminal/1"]
    assert segment.upstream(by_key=True) == ["visual/1"]  # its frames and the layers count by value
    ui = composed(tmp_path, parsed(), "assembly=ui_only").graph.nodes["segment/0.0"]
    assert "picture" not in ui.deps and "theme.background" in ui.reads


def test_the_timeline_reads_only_the_last_voice_length(tmp_path):
    comp = composed(tmp_path, parsed(), "assembly=overlay")
    timeline = comp.graph.nodes["timeline"]
    assert timeline.upstream() == ["voice/1"] and timeline.upstream(by_key=True) == []
    assert timeline.reads == ("format.fps",)


@pytest.mark.parametrize("overrides, scenes, slots, threads", [
    (["limits.cores=8", "batch.n_jobs=2"], 9, 4, 1),  # 8 // 2 = 4 cores a script: 4 encodes of 1 thread
    (["limits.cores=8", "batch.n_jobs=2", "limits.stage_threads=2"], 9, 2, 2),  # 2 encodes of 2 threads
    (["limits.cores=2", "batch.n_jobs=2"], 9, 1, 1),  # one core a script
    (["limits.cores=8", "batch.n_jobs=1"], 2, 2, 4),  # never more slots than encodes: threads fill the rest
    (["limits.cores=8", "batch.n_jobs=1"], 1, 1, 8),
    (["limits.cores=8", "batch.n_jobs=6", "limits.max_jobs=3"], 9, 2, 1),  # jobs capped by max_jobs
    (["limits.cores=3", "batch.n_jobs=1", "limits.stage_threads=2"], 9, 2, 1),  # 3 // 2: no oversubscription
])
def test_encode_slots_share_the_cores(tmp_path, overrides, scenes, slots, threads):
    comp = composed(tmp_path, scenes_script(scenes), *overrides)
    assert (comp.encode_slots, comp.encode_threads) == (slots, threads)
    assert comp.encode_slots <= sum(comp.chunks)
    jobs = min(comp.cfg.batch.n_jobs, comp.cfg.limits.max_jobs)
    assert comp.encode_slots * comp.encode_threads * jobs <= max(comp.cfg.limits.cores, jobs)


def test_all_cores_by_default(tmp_path):
    comp = composed(tmp_path, scenes_script(9), "batch.n_jobs=1", "limits.stage_threads=1")
    assert comp.encode_slots == 1 and comp.encode_threads == len(os.sched_getaffinity(0))


def test_an_unknown_layer_names_the_module_it_needs(tmp_path):
    with pytest.raises(compose.CompositionError, match=r"renderer/stages/sparkles\.py"):
        composed(tmp_path, parsed(), "assembly=overlay",
                 "assembly.layers=[terminal,sparkles]")
    with pytest.raises(compose.CompositionError, match=r"renderer/stages/canvas\.py"):
        composed(tmp_path, parsed(), "assembly.picture=canvas")


def test_a_stage_module_without_add_is_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "renderer.stages.inert", types.ModuleType("renderer.stages.inert"))
    with pytest.raises(compose.CompositionError, match=r"renderer/stages/inert\.py has no add"):
        composed(tmp_path, parsed(), "assembly.layers=[inert]")


def test_a_composition_error_fails_the_script_with_its_message(two_scenes, tmp_path):
    cfg = compose_cfg(*TINY, "assembly.layers=[terminal,sparkles]")
    record = render_script(two_scenes, "tiny", cfg, RunLayout(tmp_path))
    assert record["status"] == "failed"
    assert "renderer/stages/sparkles.py" in record["error"] and "assembly.layers" in record["error"]
    assert not (tmp_path / "tiny" / "tiny.mp4").exists()


def test_a_long_scene_is_encoded_in_chunks_side_by_side(tmp_path):
    script = parsed("SCRIPT: X — Long\n[0:00 – A]\nNarration: “a”\n\n[0:25 – B]\nNarration: “b”\n"
                        "\n[0:29 – C]\nNarration: “c”\n", "long.txt")
    comp = composed(tmp_path, script, "assembly=visual_only", "encode.chunk_s=10", "format.fps=25")
    assert comp.chunks[:2] == [3, 1]  # 25 s in three chunks of at most 10 s; 4 s in one
    assert comp.nodes_of("segment")[:4] == ("segment/0.0", "segment/0.1", "segment/0.2", "segment/1.0")
    assert comp.graph.nodes["join"].deps["segments"] == comp.nodes_of("segment")
    whole = composed(tmp_path, script, "assembly=visual_only", "encode.chunk_s=0")
    assert whole.chunks == [1, 1, 1]


def test_with_transitions_each_cut_reads_its_two_scenes_and_is_joined_between_them(tmp_path):
    comp = composed(tmp_path, scenes_script(3), "assembly=overlay", "encode.chunk_s=2", "assembly.transition_s=0.5")
    assert compose.stage_names(comp.cfg) == [*STAGES["overlay"][:8], "transition", *STAGES["overlay"][8:]]
    assert comp.nodes_of("transition") == ("transition/0", "transition/1")  # the cut after scene 1, after scene 2
    cut = comp.graph.nodes["transition/1"]
    assert cut.slot == "encode" and cut.fallback is not None and "assembly.transition" in cut.reads
    assert isinstance(cut.deps["window"], Part) and cut.deps["window"].node == "timeline"
    assert cut.upstream(by_key=True) == ["visual/1", "visual/2"]  # its two scenes' pictures, nothing else
    assert [p.node for p in (*cut.deps["layers"], *cut.deps["next_layers"])] == ["terminal/1", "terminal/2"]
    assert comp.graph.nodes["join"].deps["segments"] == (
        "segment/0.0", "segment/0.1", "transition/0", "segment/1.0", "segment/1.1", "transition/1", "segment/2.0",
        "segment/2.1")
    assert "assembly.transition" not in comp.graph.nodes["segment/1.0"].reads  # the name is the cuts' alone
    hard = composed(tmp_path, scenes_script(3), "assembly=overlay", "encode.chunk_s=2")
    assert hard.nodes_of("transition") == ()
    assert hard.graph.nodes["segment/1.0"].data == {"encoder": Encoder("h264", "libx264")}  # no fades: no ends


def test_a_scene_of_eight_seconds_or_more_is_encoded_in_two_halves_at_least(tmp_path):
    """The scene spoken last encodes last: in two halves side by side it ends in half the time. Each scene's
    count depends on its own length alone, so an edit of another never re-cuts it."""
    script = parsed("SCRIPT: X — Short\n[0:00 – A]\nNarration: “a”\n\n[0:08 – B]\nNarration: “b”\n\n"
                    "[0:15 – C]\nNarration: “c”\n", "short.txt")
    comp = composed(tmp_path, script, "assembly=visual_only", "format.fps=25")
    assert comp.chunks[:2] == [2, 1]  # 8 s: two halves, where encode.chunk_s (10 s) alone gave one; 7 s: one
    whole = composed(tmp_path, script, "assembly=visual_only", "format.fps=25", "encode.chunk_s=0")
    assert whole.chunks == [1, 1, 1]  # whole scenes, as asked
