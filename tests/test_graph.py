"""renderer.engine (graph, node, keys, run): dependency order, concurrency, content keys, fallbacks and failure
propagation, what a run tells its observer."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from renderer.engine.cache import Cache
from renderer.engine.graph import Graph
from renderer.engine.node import Node, NodeInput, Part, node_name
from renderer.engine.observer import GraphObserver
from renderer.engine.output import StageOutput
from renderer.engine.run import GraphError

BARRIER_TIMEOUT_S = 5  # only a guard against hanging: the happy path never waits on it


def cfg(**overrides):
    base = {
        "voice": {"name": "espeak", "rate": 160},
        "visual": {"name": "procedural", "fps": 12},
        "format": {"width": 160, "height": 90, "fps": 25},
        "assembly": {"strategy": "overlay", "panel": {"x": 0.05, "y": 0.45}},
    }
    conf = OmegaConf.create(base)
    for path, value in overrides.items():
        OmegaConf.update(conf, path.replace("__", "."), value)
    return conf


def const(value):
    return lambda inp: value


def boom(inp: NodeInput):
    raise ValueError("boom")


def by_name(records):
    return {r.name: r for r in records}


@dataclass(frozen=True)
class Out(StageOutput):
    """A stage output carrying a provider name, as providers' clips do."""

    value: Any = None


# --------------------------------------------------------------------------- execution order


def test_nodes_run_after_their_deps_and_see_their_outputs(tmp_path: Path):
    log: list[str] = []
    lock = threading.Lock()

    def step(name, value):
        def fn(inp: NodeInput):
            with lock:
                log.append(f"start {name}")
            result = (value, dict(inp.deps))
            with lock:
                log.append(f"end {name}")
            return result
        return fn

    g = Graph()
    g.add(Node("a", "1", step("a", 1)))
    g.add(Node("b", "1", step("b", 2)))
    g.add(Node("c", "1", step("c", 3), deps=("a", "b")))
    g.add(Node("d", "1", step("d", 4), deps=("c",)))
    outputs, records = g.run(cfg(), tmp_path)

    assert [r.status for r in records] == ["ok"] * 4
    assert log.index("start c") > max(log.index("end a"), log.index("end b"))
    assert log.index("start d") > log.index("end c")
    assert outputs["c"][1] == {"a": outputs["a"], "b": outputs["b"]}
    assert outputs["d"][1] == {"c": outputs["c"]}
    assert outputs["a"][1] == {}


def test_independent_nodes_run_concurrently(tmp_path: Path):
    barrier = threading.Barrier(2, timeout=BARRIER_TIMEOUT_S)

    def meet(inp: NodeInput):
        barrier.wait()  # breaks (and fails the node) unless the other node is running at the same time
        return threading.current_thread().name

    g = Graph()
    g.add(Node("voice", "1", meet, scene=0))
    g.add(Node("visual", "1", meet, scene=0))
    outputs, records = g.run(cfg(), tmp_path, threads=4)
    assert [r.status for r in records] == ["ok", "ok"]
    assert outputs["voice/0"] != outputs["visual/0"]  # two different worker threads


def test_node_input_carries_only_declared_config_as_plain_data(tmp_path: Path):
    seen = {}

    def fn(inp: NodeInput):
        seen.update(cfg=inp.cfg, data=inp.data, workdir=inp.workdir, key=inp.key)
        return None

    g = Graph()
    g.add(Node("n", "1", fn, reads=("voice", "assembly.panel"), data={"k": [1, 2]}))
    _, records = g.run(cfg(), tmp_path)
    assert seen["cfg"] == {"voice": {"name": "espeak", "rate": 160}, "assembly.panel": {"x": 0.05, "y": 0.45}}
    assert type(seen["cfg"]["voice"]) is dict  # plain containers, not DictConfig
    assert seen["data"] == {"k": [1, 2]}
    assert seen["workdir"] == tmp_path
    assert seen["key"] == records[0].key == g.keys(cfg())["n"]


def test_duplicate_or_unknown_dependency_is_rejected():
    g = Graph()
    g.add(Node("a", "1", const(1)))
    with pytest.raises(ValueError, match="duplicate"):
        g.add(Node("a", "1", const(1)))
    with pytest.raises(ValueError, match="unknown"):
        g.add(Node("b", "1", const(1), deps=("nope",)))


# --------------------------------------------------------------------------- content keys


def keyed_graph(*, version="1", data=None, voice_reads=("voice",)):
    g = Graph()
    g.add(Node("voice", version, const(None), reads=voice_reads, data=data or {"text": "hi"}, scene=0))
    g.add(Node("visual", "1", const(None), reads=("visual", "format"), data={"prompt": "p"}, scene=0))
    g.add(Node("panel", "1", const(None), reads=("assembly.panel",)))
    g.add(Node("assembly", "1", const(None), deps=("voice/0", "visual/0"), reads=("format",)))
    return g


def test_keys_are_stable_across_calls_and_graph_instances():
    k1 = keyed_graph().keys(cfg())
    k2 = keyed_graph().keys(cfg())
    assert k1 == keyed_graph().keys(cfg()) == k2
    assert len(set(k1.values())) == len(k1)  # every node has its own key
    assert all(len(k) == 64 and int(k, 16) >= 0 for k in k1.values())


def test_key_changes_with_a_config_subtree_the_node_reads():
    before = keyed_graph().keys(cfg())
    after = keyed_graph().keys(cfg(voice__rate=200))
    assert after["voice/0"] != before["voice/0"]
    assert after["visual/0"] == before["visual/0"]  # does not read voice
    assert after["panel"] == before["panel"]


def test_key_of_a_dotted_read_changes_only_with_that_subtree():
    before = keyed_graph().keys(cfg())
    assert keyed_graph().keys(cfg(assembly__panel__x=0.1))["panel"] != before["panel"]
    assert keyed_graph().keys(cfg(assembly__strategy="ui_only"))["panel"] == before["panel"]


def test_key_does_not_change_with_unrelated_config():
    before = keyed_graph().keys(cfg())
    after = keyed_graph().keys(cfg(assembly__strategy="ui_only", extra={"anything": 1}))
    assert after == before


def test_key_changes_when_a_dependency_key_changes():
    before = keyed_graph().keys(cfg())
    after = keyed_graph().keys(cfg(voice__name="silent"))
    assert after["voice/0"] != before["voice/0"]
    assert after["assembly"] != before["assembly"]  # reads only "format", but depends on voice/0
    assert after["visual/0"] == before["visual/0"]


def test_key_changes_with_node_data_and_version():
    base = keyed_graph().keys(cfg())
    new_data = keyed_graph(data={"text": "hello"}).keys(cfg())
    new_version = keyed_graph(version="2").keys(cfg())
    for changed in (new_data, new_version):
        assert changed["voice/0"] != base["voice/0"]
        assert changed["assembly"] != base["assembly"]
        assert changed["visual/0"] == base["visual/0"]


# --------------------------------------------------------------------------- failures and fallbacks


def test_failing_node_with_fallback_records_it_and_dependents_use_the_fallback(tmp_path: Path):
    fallback_calls = []

    def fallback(inp: NodeInput, exc: Exception):
        fallback_calls.append(exc)
        return Out("silence", provider="silent")

    g = Graph()
    g.add(Node("voice", "1", boom, fallback=fallback, scene=0))
    g.add(Node("assembly", "1", lambda inp: ("assembled", inp.deps["voice/0"].value),
               deps=("voice/0",)))
    outputs, records = g.run(cfg(), tmp_path)
    rec = by_name(records)

    assert rec["voice/0"].status == "fallback"
    assert rec["voice/0"].error == "ValueError: boom"
    assert rec["voice/0"].provider == "silent"
    assert isinstance(fallback_calls[0], ValueError)
    assert rec["assembly"].status == "ok"
    assert outputs["assembly"] == ("assembled", "silence")


def test_failing_node_without_fallback_skips_dependents_and_raises(tmp_path: Path):
    g = Graph()
    g.add(Node("voice", "1", boom, scene=0))
    g.add(Node("visual", "1", const("clip"), scene=0))
    g.add(Node("mix", "1", const("mixed"), deps=("voice/0",)))
    g.add(Node("assembly", "1", const("video"), deps=("mix", "visual/0")))
    with pytest.raises(GraphError) as info:
        g.run(cfg(), tmp_path)
    rec = by_name(info.value.records)

    assert rec["voice/0"].status == "failed"
    assert rec["voice/0"].error == "ValueError: boom"
    assert rec["visual/0"].status == "ok"  # independent work is not affected
    assert rec["mix"].status == "skipped"
    assert rec["assembly"].status == "skipped"  # transitively
    assert "voice/0" in str(info.value) and "boom" in str(info.value)
    assert [r.name for r in info.value.records] == ["voice/0", "visual/0", "mix", "assembly"]


def test_failing_fallback_leaves_the_node_failed(tmp_path: Path):
    def bad_fallback(inp: NodeInput, exc: Exception):
        raise RuntimeError("fallback broke too")

    g = Graph()
    g.add(Node("visual", "1", boom, fallback=bad_fallback, scene=0))
    g.add(Node("assembly", "1", const("video"), deps=("visual/0",)))
    with pytest.raises(GraphError) as info:
        g.run(cfg(), tmp_path)
    rec = by_name(info.value.records)
    assert rec["visual/0"].status == "failed"
    assert "boom" in rec["visual/0"].error and "fallback broke too" in rec["visual/0"].error
    assert rec["assembly"].status == "skipped"


def test_dependent_waits_for_its_dep_output_not_just_its_status(tmp_path: Path):
    """B's function has returned (its status is set) but B has not finished; meanwhile A finishes and
    wakes the scheduler. C (depends on B) must not start before B's output exists.

    Regression: readiness was once judged by the dep's status, set in the worker before its output was
    handed back, so C hit a KeyError and was silently left 'pending'. Two workers make the order
    deterministic: C, if wrongly started, runs before D (which is what lets B finish)."""
    b_returned = threading.Event()
    release_b = threading.Event()

    class SlowToHandBack(StageOutput):
        def __init__(self):  # its provider is the property below
            pass

        @property
        def provider(self):  # read by the graph after the status is set, before the future resolves
            b_returned.set()
            release_b.wait(BARRIER_TIMEOUT_S)
            return "b-provider"

    def a(inp):
        b_returned.wait(BARRIER_TIMEOUT_S)
        return "a"

    def d(inp):
        release_b.set()  # D depends only on A: it may run while B is still handing back
        return "d"

    g = Graph()
    g.add(Node("a", "1", a))
    g.add(Node("b", "1", const(SlowToHandBack())))
    g.add(Node("c", "1", lambda inp: ("c", inp.deps["b"]), deps=("b",)))
    g.add(Node("d", "1", d, deps=("a",)))
    outputs, records = g.run(cfg(), tmp_path, threads=2)
    assert [r.status for r in records] == ["ok"] * 4
    assert outputs["c"][0] == "c"


def test_a_node_breaking_outside_its_function_is_failed_not_left_pending(tmp_path: Path):
    class BadOutput(StageOutput):
        def __init__(self):  # its provider is the property below
            pass

        @property
        def provider(self):  # the graph reads this after the stage function returned
            raise RuntimeError("bad output")

    g = Graph()
    g.add(Node("a", "1", const(BadOutput())))
    g.add(Node("b", "1", const("b"), deps=("a",)))
    with pytest.raises(GraphError) as info:
        g.run(cfg(), tmp_path)
    rec = by_name(info.value.records)
    assert rec["a"].status == "failed" and "bad output" in rec["a"].error
    assert rec["b"].status == "skipped"


def test_an_interrupted_run_starts_no_fallback_and_no_retry(tmp_path: Path):
    """Ctrl-C while a stage runs: on_abort stops it, and neither its retry nor its fallback starts anything."""
    from renderer.ops.reliability import RetryPolicy

    started, killed = threading.Event(), threading.Event()
    calls = {"fn": 0, "fallback": 0}

    def long_stage(inp):
        calls["fn"] += 1
        started.set()
        killed.wait(10)  # stands for a subprocess that on_abort kills
        raise RuntimeError("killed")

    def fallback(inp, exc):
        calls["fallback"] += 1
        return "stand-in"

    graph = Graph()
    graph.add(Node("slow", "1", long_stage, fallback=fallback,
                   retry=RetryPolicy(attempts=3, wait_s=0.0, jitter_s=0.0)))
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        threading.Thread(target=lambda: started.wait(10) and signal.setitimer(signal.ITIMER_REAL, 0.05),
                         daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            graph.run(cfg(), tmp_path, on_abort=killed.set)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert calls == {"fn": 1, "fallback": 0}


def test_unkeyed_settings_do_not_change_the_key_but_still_reach_the_stage(tmp_path: Path):
    seen = {}

    def stage(inp):
        seen.update(inp.cfg["visual"])
        return "clip"

    def graph():
        g = Graph()
        g.add(Node("visual", "1", stage, reads=("visual",), unkeyed=("visual.poll_interval_s",), scene=0))
        return g

    slow, fast = cfg(visual={"model": "gen4", "poll_interval_s": 5}), cfg(visual={"model": "gen4", "poll_interval_s": 1})
    assert graph().keys(slow) == graph().keys(fast)
    assert graph().keys(slow) != graph().keys(cfg(visual={"model": "gen3", "poll_interval_s": 5}))
    graph().run(fast, tmp_path)
    assert seen["poll_interval_s"] == 1


# --------------------------------------------------------------------------- named inputs, parts, slots


def test_inputs_are_passed_by_declared_name_and_tuples_give_lists(tmp_path: Path):
    g = Graph()
    g.add(Node("voice", "1", const("v0"), scene=0))
    g.add(Node("voice", "1", const("v1"), scene=1))
    g.add(Node("mix", "1", lambda inp: dict(inp.deps), deps={"voices": ("voice/0", "voice/1"),
                                                                    "first": "voice/0"}))
    outputs, _ = g.run(cfg(), tmp_path)
    assert outputs["mix"] == {"voices": ["v0", "v1"], "first": "v0"}


def part_graph(data: dict, *, fallback: bool = False) -> Graph:
    g = Graph()
    g.add(Node("voice", "1", boom if fallback else const({"duration": 2.0, "path": data["path"]}),
               data=data, fallback=(lambda inp, exc: {"duration": 2.0, "path": "stand-in"}) if fallback else None))
    g.add(Node("timeline", "1", lambda inp: ("spans for", inp.deps["length"]),
               deps={"length": Part("voice", lambda clip: clip["duration"])}))
    g.add(Node("mux", "1", lambda inp: inp.deps["voice"], deps={"voice": "voice"}))
    return g


def test_a_part_keys_its_dependent_by_value_not_by_how_it_was_made(tmp_path: Path):
    _, first = part_graph({"path": "a.wav"}).run(cfg(), tmp_path)
    outputs, second = part_graph({"path": "b.wav"}).run(cfg(), tmp_path)
    first, second = by_name(first), by_name(second)
    assert outputs["timeline"] == ("spans for", 2.0)  # the stage sees the picked value
    assert second["voice"].key != first["voice"].key
    assert second["timeline"].key == first["timeline"].key  # same duration: early cutoff
    assert second["mux"].key != first["mux"].key  # keyed by the whole node


def test_a_part_of_a_fallback_is_still_cacheable(tmp_path: Path):
    cache = Cache(tmp_path / "cache")
    _, records = part_graph({"path": "a.wav"}, fallback=True).run(cfg(), tmp_path, cache=cache)
    assert by_name(records)["voice"].status == "fallback"
    _, again = part_graph({"path": "a.wav"}, fallback=True).run(cfg(), tmp_path, cache=cache)
    again = by_name(again)
    assert again["voice"].status == "fallback" and again["mux"].status == "ok"  # built on a stand-in
    assert again["timeline"].status == "cached"  # its value is the same whoever made it


def test_static_keys_need_no_part(tmp_path: Path):
    with pytest.raises(ValueError, match="known only once it has run"):
        part_graph({"path": "a.wav"}).keys(cfg())


def test_slot_caps_how_many_of_its_nodes_run_at_once(tmp_path: Path):
    lock, running, peak = threading.Lock(), {"encode": 0, "": 0}, {"encode": 0, "": 0}
    other_ran_alongside = threading.Event()

    def work(slot: str):
        def fn(inp: NodeInput):
            with lock:
                running[slot] += 1
                peak[slot] = max(peak[slot], running[slot])
                if slot == "" and running["encode"]:
                    other_ran_alongside.set()
            threading.Event().wait(0.05)
            with lock:
                running[slot] -= 1
        return fn

    g = Graph()
    for i in range(6):
        g.add(Node("segment", "1", work("encode"), data=i, slot="encode", scene=i))
    for i in range(3):
        g.add(Node("voice", "1", work(""), data=i, scene=i))
    _, records = g.run(cfg(), tmp_path, threads=4, slots={"encode": 2})
    assert {r.status for r in records} == {"ok"}
    assert peak["encode"] == 2
    assert other_ran_alongside.is_set()  # the cap holds back only its own slot


class OtherProcess:
    """A slot executor: each node function runs in a child process (as on another machine), shipped there
    with cloudpickle as Dask does; it counts what went there and how many ran at once."""

    def __init__(self, capacity: int):
        import concurrent.futures
        import multiprocessing

        self.capacity = capacity
        self.pool = concurrent.futures.ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn"))
        self.lock, self.running, self.peak, self.sent = threading.Lock(), 0, 0, []

    def __call__(self, fn, inp):
        import cloudpickle

        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.sent.append(inp.data)
        try:
            return self.pool.submit(_call_there, cloudpickle.dumps((fn, inp))).result()
        finally:
            with self.lock:
                self.running -= 1


def _call_there(shipped: bytes):
    import os
    import pickle
    import time

    fn, inp = pickle.loads(shipped)
    time.sleep(0.1)
    return (os.getpid(), fn(inp))


def test_a_slot_with_an_executor_runs_its_nodes_there_up_to_its_capacity(tmp_path: Path):
    import os

    elsewhere = OtherProcess(capacity=3)
    g = Graph()
    for i in range(6):
        g.add(Node("segment", "1", lambda inp: inp.data * 10, data=i, slot="encode", scene=i))
    g.add(Node("voice", "1", lambda inp: (os.getpid(), "voice"), scene=0))
    g.add(Node("mux", "1", lambda inp: sorted(v for _, v in inp.deps["parts"]),
               deps={"parts": tuple(f"segment/{i}" for i in range(6))}))
    try:
        outputs, records = g.run(cfg(), tmp_path, threads=1, slots={"encode": 1}, executors={"encode": elsewhere})
    finally:
        elsewhere.pool.shutdown()
    assert {r.status for r in records} == {"ok"}
    assert outputs["mux"] == [0, 10, 20, 30, 40, 50] and sorted(elsewhere.sent) == list(range(6))
    assert os.getpid() not in {outputs[f"segment/{i}"][0] for i in range(6)}, "a node ran in this process"
    assert outputs["voice/0"][0] == os.getpid()  # the other slots stay here
    assert elsewhere.peak == 3  # the executor's capacity, not the local cap of 1, nor the one local thread


# --------------------------------------------------------------------------- identity, outputs, the observer


def test_a_nodes_name_is_made_from_its_stage_scene_and_part(tmp_path: Path):
    assert (node_name("mux"), node_name("voice", 3), node_name("segment", 3, 1)) == ("mux", "voice/3", "segment/3.1")
    g = Graph()
    g.add(Node("segment", "1", const("s"), scene=3, part=1))
    g.add(Node("mux", "1", const("m"), deps=("segment/3.1",)))
    _, records = g.run(cfg(), tmp_path)
    assert [(r.name, r.stage, r.scene, r.part) for r in records] == [("segment/3.1", "segment", 3, 1),
                                                                     ("mux", "mux", None, None)]


def test_the_record_says_what_the_output_says_of_itself(tmp_path: Path):
    g = Graph()
    g.add(Node("voice", "1", const(Out("v", provider="espeak", warnings=("too long", "too loud"))), scene=0))
    g.add(Node("mix", "1", const(("plain", "data")), deps=("voice/0",)))
    _, records = g.run(cfg(), tmp_path)
    rec = by_name(records)
    assert (rec["voice/0"].provider, rec["voice/0"].warnings) == ("espeak", ["too long", "too loud"])
    assert (rec["mix"].provider, rec["mix"].warnings) == ("", [])  # not a StageOutput: says nothing


class Watching(GraphObserver):
    """Notes what a run tells it, and in which node's context a cache call was made."""

    def __init__(self):
        self.events: list[tuple] = []
        self.lock = threading.Lock()
        self.local = threading.local()

    def note(self, *event):
        with self.lock:
            self.events.append(event)

    @contextmanager
    def node_running(self, node, total):
        self.local.node = node.name
        self.note("running", node.name, node.scene, total)
        yield
        self.local.node = None

    def node_finished(self, node, record):
        self.note("finished", node.name, record.status)

    @contextmanager
    def cache_call(self, op):
        fields: dict[str, Any] = {}
        yield fields
        self.note("cache", self.local.node, op, fields.get("hit"))

    def redact(self, text):
        return text.replace("secret", "***")


def test_a_run_tells_its_observer_of_every_node_and_cache_call(tmp_path: Path):
    def graph():
        g = Graph()
        g.add(Node("voice", "1", const(Out("v", provider="espeak")), scene=2))
        g.add(Node("mux", "1", lambda inp: (_ for _ in ()).throw(ValueError("the secret is out")),
                   deps=("voice/2",)))
        return g

    cache, seen = Cache(tmp_path / "cache"), []
    for _ in range(2):
        watching = Watching()
        with pytest.raises(GraphError) as info:
            graph().run(cfg(), tmp_path, cache=cache, observer=watching)
        seen.append(watching.events)
    assert by_name(info.value.records)["mux"].error == "ValueError: the *** is out"
    first, again = seen
    assert first == [("running", "voice/2", 2, 2), ("cache", "voice/2", "get", False),
                     ("cache", "voice/2", "put", None), ("finished", "voice/2", "ok"),
                     ("running", "mux", None, 2), ("cache", "mux", "get", False), ("finished", "mux", "failed")]
    assert again[:3] == [("running", "voice/2", 2, 2), ("cache", "voice/2", "get", True),
                         ("finished", "voice/2", "cached")]


def test_a_run_that_is_cancelled_stops_and_says_so_to_its_hooks(tmp_path: Path):
    """``cancelled()`` turning true (another thread's cancel) interrupts the run: on_interrupt, then on_abort."""
    release, calls = threading.Event(), []

    def long_stage(inp):
        release.wait(BARRIER_TIMEOUT_S)
        return "late"

    g = Graph()
    g.add(Node("slow", "1", long_stage))
    g.add(Node("after", "1", const("never"), deps=("slow",)))
    with pytest.raises(KeyboardInterrupt):
        g.run(cfg(), tmp_path, cancelled=lambda: True, on_interrupt=lambda: calls.append("interrupt"),
              on_abort=lambda: (calls.append("abort"), release.set()))
    assert calls == ["interrupt", "abort"]


class CountedNode(Node):
    """A node that counts how often the run asks it for its inputs: the scheduler's readiness checks."""

    asked = 0

    def upstream(self, *, by_key: bool = False) -> list[str]:
        CountedNode.asked += 1
        return super().upstream(by_key=by_key)


def _checks_for(nodes: int, tmp_path: Path) -> int:
    """Readiness checks for a graph of ``nodes`` trivial nodes: a chain through half of them (each pass
    frees one), and the other half in a slot of one (each waits its turn while all are ready)."""
    g = Graph()
    for n in range(nodes // 2):
        g.add(CountedNode(stage="link", part=n, version="1", fn=const(n),
                          deps={"before": node_name("link", None, n - 1)} if n else {}))
    for n in range(nodes // 2):
        g.add(CountedNode(stage="queued", part=n, version="1", fn=const(n), slot="one"))
    CountedNode.asked = 0
    outputs, _ = g.run(cfg(), tmp_path, slots={"one": 1})
    assert len(outputs) == nodes
    return CountedNode.asked


def test_scheduling_work_grows_linearly_with_the_graph(tmp_path: Path):
    small, large = _checks_for(400, tmp_path), _checks_for(1600, tmp_path)
    # rescanning every pending node per pass would be ~16x (and hundreds of checks per node)
    assert large / small < 6, (small, large)
    assert large < 1600 * 10, large
