"""The content-addressed stage cache: round trips, records that are data (never code), damage detection,
concurrent writers, LRU pruning."""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from renderer.cli.cache import parse_size
from renderer.engine.cache import STAGING, STALE_STAGING_S, Cache, staging_name
from renderer.engine.output import StageOutput
from renderer.engine.records import FORMAT, Unrecordable
from renderer.providers.base import AudioClip
from renderer.stages.terminal import TerminalTrack

KEY = "ab" + "0" * 62


def clip(tmp_path: Path, payload: bytes = b"RIFF-not-really-audio", name: str = "voice.wav") -> AudioClip:
    path = tmp_path / name
    path.write_bytes(payload)
    return AudioClip(path, 1.5, provider="espeak")


def test_put_moves_files_in_and_get_returns_them(tmp_path):
    cache = Cache(tmp_path / "cache")
    stored = cache.put("voice", KEY, clip(tmp_path))
    assert not (tmp_path / "voice.wav").exists()  # moved, not copied
    assert stored.path.parent == cache.entry_dir("voice", KEY)
    again = cache.get("voice", KEY)
    assert again == stored and again.path.read_bytes() == b"RIFF-not-really-audio"
    assert (cache.hits, cache.misses) == (1, 0)
    assert cache.get("voice", "cd" + "0" * 62) is None and cache.misses == 1


@dataclass(frozen=True)
class Frames(StageOutput):
    """An output holding its files in containers, and in an output of its own."""

    pictures: list[Path]
    by_name: dict[str, Path]
    voice: AudioClip


def test_the_files_an_output_holds_in_any_container_come_back_from_the_cache(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    paths = {name: work / name for name in ("a.jpg", "b.jpg", "cover.png")}
    for name, path in paths.items():
        path.write_bytes(name.encode())
    output = Frames([paths["a.jpg"], paths["b.jpg"]], {"cover": paths["cover.png"]}, clip(work), provider="test",
                    warnings=("w",))
    assert output.files() == [paths["a.jpg"], paths["b.jpg"], paths["cover.png"], work / "voice.wav"]
    cache = Cache(tmp_path / "cache")
    stored = cache.put("frames", KEY, output)
    shutil.rmtree(work)  # the script's work folder goes at the end of its render
    hit = cache.get("frames", KEY)
    assert hit == stored and isinstance(hit.pictures, list) and (hit.provider, hit.warnings) == ("test", ("w",))
    assert {path.parent for path in hit.files()} == {cache.entry_dir("frames", KEY)}
    assert [p.read_bytes() for p in hit.pictures] == [b"a.jpg", b"b.jpg"]
    assert hit.by_name["cover"].read_bytes() == b"cover.png"
    assert hit.voice.path.read_bytes() == b"RIFF-not-really-audio" and hit.voice.duration == 1.5


def test_outputs_without_files_round_trip(tmp_path):
    cache = Cache(tmp_path)
    track = TerminalTrack("[Script Info]", [], 1.0, 10, 40)
    cache.put("terminal", KEY, track)
    assert cache.get("terminal", KEY) == track


def exact(value):
    """``value`` as nested (type, value) pairs with every field, ``compare=False`` ones too: equal only when the
    two are the same in every detail (a tuple is not a list, -0.0 is not 0.0, nan is nan)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value), tuple((f.name, exact(getattr(value, f.name))) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return type(value), tuple(exact(v) for v in value)
    if isinstance(value, dict):
        return type(value), tuple((exact(k), exact(v)) for k, v in value.items())
    if isinstance(value, float):
        return float, "nan" if math.isnan(value) else (value, math.copysign(1.0, value))
    return type(value), value


@dataclass(frozen=True)
class Corner:
    """A plain dataclass an output holds (as the timeline holds its spans)."""

    x: float
    label: str | None = None


@dataclass(frozen=True)
class Everything(StageOutput):
    """An output with a value of every form a record holds."""

    numbers: tuple[float, ...]
    corners: list[Corner]
    by_key: dict
    nothing: None = None
    flag: bool = False
    alignment: dict | None = dataclasses.field(default=None, compare=False)


def test_values_of_every_form_come_back_exactly(tmp_path):
    picture = tmp_path / "a.png"
    picture.write_bytes(b"png")
    output = Everything((math.nan, math.inf, -math.inf, -0.0, 0.1 + 0.2, 1e300, 3), [Corner(1.5), Corner(2, "b")],
                        {1: "int key", (1, "two"): [picture], "nested": {"tuple": ("dict", {})}, None: True},
                        flag=True, alignment={"characters": ["a"], "character_start_times_seconds": [0.0]},
                        provider="test", warnings=("careful",))
    cache = Cache(tmp_path / "cache")
    stored = cache.put("everything", KEY, output)
    hit = Cache(cache.root).get("everything", KEY)
    assert exact(hit) == exact(stored)
    assert hit.by_key[(1, "two")][0].read_bytes() == b"png"


def test_a_record_is_json_data_naming_its_format_types_and_files(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.put("voice", KEY, clip(tmp_path))
    record = json.loads((cache.entry_dir("voice", KEY) / "entry.json").read_text())
    assert record["format"] == FORMAT
    assert record["output"] == {"type": "renderer.providers.base:AudioClip", "fields": {
        "provider": "espeak", "warnings": {"tuple": []}, "path": {"path": "0.wav"}, "duration": 1.5,
        "alignment": None, "loudness": None}}
    assert set(record["files"]) == {"0.wav"}


class LeavesAMark:
    """Unpickled, it creates a file: the proof that the cache ran code from an entry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _old_entry(cache: Cache, stage: str, output: object) -> Path:
    """An entry as renderers before record format 1 wrote it: the output pickled (base64) in entry.json."""
    entry = cache.entry_dir(stage, KEY)
    entry.mkdir(parents=True)
    record = {"stage": stage, "key": KEY, "created": time.time(), "files": {},
              "output": base64.b64encode(pickle.dumps(output)).decode()}
    (entry / "entry.json").write_text(json.dumps(record))
    return entry


def test_an_old_pickled_entry_is_rendered_again_never_unpickled(tmp_path):
    cache = Cache(tmp_path / "cache")
    marker = tmp_path / "ran-code-from-the-cache"
    entry = _old_entry(cache, "voice", LeavesAMark(marker))
    assert cache.get("voice", KEY) is None
    assert not marker.exists()
    assert not entry.exists()  # removed, so the new render takes its place
    stored = cache.put("voice", KEY, clip(tmp_path))
    assert cache.get("voice", KEY) == stored


@pytest.mark.parametrize("named", ["os:system", "subprocess:Popen", "this:s", "renderer.engine.cache:Cache"])
def test_a_record_naming_a_type_that_is_no_stage_output_is_a_miss_and_nothing_is_imported(tmp_path, named):
    cache = Cache(tmp_path / "cache")
    marker = tmp_path / "ran-code-from-the-cache"
    cache.put("voice", KEY, clip(tmp_path))
    entry = cache.entry_dir("voice", KEY)
    record = json.loads((entry / "entry.json").read_text())
    record["output"] = {"type": named, "fields": {"args": ["touch", str(marker)], "root": str(tmp_path)}}
    (entry / "entry.json").write_text(json.dumps(record))
    assert cache.get("voice", KEY) is None
    assert not marker.exists() and "this" not in sys.modules  # `import this` prints the Zen of Python
    assert not entry.exists()


def test_a_record_naming_a_file_its_entry_does_not_hold_is_damaged(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.put("voice", KEY, clip(tmp_path))
    entry = cache.entry_dir("voice", KEY)
    record = json.loads((entry / "entry.json").read_text())
    record["output"]["fields"]["path"] = {"path": "../../../../etc/passwd"}
    (entry / "entry.json").write_text(json.dumps(record))
    assert cache.get("voice", KEY) is None and not entry.exists()


def test_an_entry_of_a_newer_format_is_a_miss_left_for_the_renderers_that_read_it(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.put("voice", KEY, clip(tmp_path))
    entry = cache.entry_dir("voice", KEY)
    record = json.loads((entry / "entry.json").read_text())
    (entry / "entry.json").write_text(json.dumps({**record, "format": FORMAT + 1}))
    assert cache.get("voice", KEY) is None and entry.exists()


@dataclass(frozen=True)
class Loose(StageOutput):
    path: Path
    tags: set  # no record form holds a set


def test_an_output_no_record_can_hold_is_not_cached_and_keeps_its_files(tmp_path):
    output = Loose(clip(tmp_path).path, {"a"})
    with pytest.raises(Unrecordable, match="set"):
        Cache(tmp_path / "cache").put("loose", KEY, output)
    assert output.path.read_bytes() == b"RIFF-not-really-audio"


def test_every_stage_output_of_a_render_comes_back_from_its_record_exactly(tmp_path):
    """Every node of a small render with every layer (terminal, title and credits cards, burnt-in captions,
    transitions, thumbnails) is read back from its record as the very output it stored."""
    from renderer.ops.files import RunLayout
    from renderer.pipeline import compose
    from renderer.pipeline.render import providers_for, script_options
    from renderer.script import parse_file
    from tests.conftest import THREE_SCENES, TINY, compose_cfg

    script = tmp_path / "tiny.txt"
    script.write_text(THREE_SCENES, encoding="utf-8")
    cfg = compose_cfg(*TINY, "cache.enabled=true", f"cache.dir={tmp_path / 'cache'}", "assembly.title_card=true",
                      "assembly.credits_card=true", "captions.burn=true", "assembly.transition_s=0.4")
    layout = RunLayout(tmp_path / "run")
    comp = compose.compose(parse_file(script, options=script_options(cfg)), "tiny", cfg, providers_for(cfg, layout))
    cache = Cache(cfg.cache.dir)
    outputs, nodes = comp.graph.run(cfg, layout.workdir("tiny"), cache=cache)
    assert {node.status for node in nodes} == {"ok"}
    again = Cache(cache.root)
    for node in nodes:
        assert exact(again.get(node.stage, node.key)) == exact(outputs[node.name]), node.name
    assert again.misses == 0
    assert {type(output).__name__ for output in outputs.values()} >= {
        "Timeline", "AudioClip", "VisualClip", "TerminalTrack", "TitleTrack", "CreditsTrack", "CaptionTrack",
        "Segment", "Soundtrack", "Video", "Thumbnails"}


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete_file", "garble_record"])
def test_damaged_entry_is_a_miss_and_is_removed(tmp_path, damage):
    cache = Cache(tmp_path / "cache")
    stored = cache.put("voice", KEY, clip(tmp_path))
    entry = cache.entry_dir("voice", KEY)
    if damage == "flip_byte":
        data = bytearray(stored.path.read_bytes())
        data[0] ^= 0xFF
        stored.path.write_bytes(bytes(data))
    elif damage == "truncate":
        stored.path.write_bytes(stored.path.read_bytes()[:3])
    elif damage == "delete_file":
        stored.path.unlink()
    else:
        (entry / "entry.json").write_text("{not json")
    assert cache.get("voice", KEY) is None
    assert not entry.exists()
    assert cache.put("voice", KEY, clip(tmp_path)).path.exists()  # and it can be stored again


def test_two_writers_of_one_key_leave_one_good_entry(tmp_path):
    cache = Cache(tmp_path / "cache")
    barrier = threading.Barrier(2, timeout=10)
    results: list[AudioClip] = []

    def write(n: int) -> None:
        value = clip(tmp_path, b"same bytes", name=f"v{n}.wav")
        barrier.wait()
        results.append(cache.put("voice", KEY, value))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(r.path.exists() for r in results)
    assert cache.get("voice", KEY).path.read_bytes() == b"same bytes"
    assert list((cache.root / "tmp").iterdir()) == []


def test_prune_removes_least_recently_used_first(tmp_path):
    cache = Cache(tmp_path / "cache")
    keys = [f"{n:02d}" + "0" * 62 for n in range(4)]
    for n, key in enumerate(keys):
        cache.put("voice", key, clip(tmp_path, b"x" * 1000))
        os.utime(cache.entry_dir("voice", key) / "entry.json", (1000 + n, 1000 + n))
    cache.get("voice", keys[0])  # used just now: the newest

    def size(key: str) -> int:  # entries differ by a byte or two (their records hold a timestamp)
        return sum(p.stat().st_size for p in cache.entry_dir("voice", key).iterdir())

    result = cache.prune(size(keys[0]) + size(keys[3]))  # room for exactly the two most recently used
    assert result["removed"] == 2
    assert [cache.entry_dir("voice", k).exists() for k in keys] == [True, False, False, True]
    assert cache.stats()["entries"] == 2


def test_one_walk_counts_the_complete_entries_and_every_file(tmp_path):
    """What a run's manifest reports of the cache, in one walk: complete entries and their bytes (a half-built
    one, an entry dir without its record, the lock and a link are not entries), and every regular file."""
    from renderer.ops.files import tree_stats

    cache = Cache(tmp_path / "cache")
    keys = [f"{n:02d}" + "a" * 62 for n in range(3)]
    for key in keys:
        cache.put("voice", key, clip(tmp_path, b"x" * (100 + len(key))))
    with cache.in_use():  # its lock file
        pass
    (cache.root / "tmp" / "renderer-host-1-half").mkdir(parents=True)
    (cache.root / "tmp" / "renderer-host-1-half" / "0.wav").write_bytes(b"y" * 50)
    orphan = cache.entry_dir("voice", "ff" + "b" * 62)  # an entry dir that lost its record
    orphan.mkdir(parents=True)
    (orphan / "0.wav").write_bytes(b"z" * 70)
    (cache.root / "voice" / "link").symlink_to(tmp_path)

    held = cache.usage()
    complete = cache.entries()
    walked = tree_stats(cache.root)
    assert held.entries == len(complete) == 3 and held.entry_bytes == sum(size for _, size, _ in complete)
    assert (held.bytes, held.files) == (walked.bytes, walked.files) and held.bytes > held.entry_bytes + 100
    assert cache.stats(held)["entries"] == cache.stats()["entries"] == 3
    assert Cache(tmp_path / "none").usage() == (0, 0, 0, 0)


def test_prune_refuses_while_a_run_uses_the_cache(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.put("voice", KEY, clip(tmp_path))
    with cache.in_use():
        with pytest.raises(RuntimeError, match="a run is using the cache"):
            Cache(cache.root).prune(0)
    assert Cache(cache.root).prune(0)["removed"] == 1


def test_staging_of_dead_processes_is_cleaned(tmp_path):
    cache = Cache(tmp_path / "cache")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    here = socket.gethostname()
    token = "0123456789abcdef" * 2
    (cache.root / "tmp" / f"renderer-{here}-{dead}-{token}").mkdir(parents=True)
    (cache.root / "tmp" / f"renderer-{here}-{os.getpid()}-{token}").mkdir()
    cache.clean_staging()
    assert sorted(p.name for p in (cache.root / "tmp").iterdir()) == [f"renderer-{here}-{os.getpid()}-{token}"]


def test_staging_of_other_hosts_and_of_others_is_left_alone(tmp_path):
    """A shared cache (a Dask cluster's): another host's pids mean nothing here, so its half-built entries go
    only once they are a day old; whatever is not named like the cache's own staging is never touched."""
    cache = Cache(tmp_path / "cache")
    staging = cache.root / "tmp"
    token = "0123456789abcdef" * 2
    young = staging / f"renderer-render-node-7.cluster-1-{token}"  # pid 1: alive here, meaningless there
    old = staging / f"renderer-other.host-999999-{token}"
    theirs = [staging / "1-abc", staging / "notes", staging / "999999-def"]  # a user's tmp/ (cache.dir=~)
    for path in [young, old, *theirs]:
        path.mkdir(parents=True)
        (path / "file").write_text("x")
    for path in [old, *theirs]:
        os.utime(path, (time.time() - 2 * STALE_STAGING_S,) * 2)
    (staging / "their-file.txt").write_text("x")
    with cache.in_use():  # what every batch does on start
        pass
    assert sorted(p.name for p in staging.iterdir()) == sorted([young.name, "their-file.txt",
                                                                *(p.name for p in theirs)])
    assert all((p / "file").exists() for p in [young, *theirs])


def test_a_write_stages_under_a_name_of_its_own(tmp_path):
    name = staging_name()
    match = STAGING.fullmatch(name)
    assert match and match["host"] == socket.gethostname() and match["pid"] == str(os.getpid())
    assert staging_name() != name


def _unprivileged(code: str) -> subprocess.CompletedProcess:
    """``code`` in a Python that file permissions bind (as root: without its capabilities)."""
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] if os.geteuid() == 0 else []
    return subprocess.run([*drop, sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def _chown_tree(root: Path, uid: int) -> None:
    for folder, dirs, files in os.walk(root):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, uid, uid)


GET = """
from renderer.engine.cache import STAGING, STALE_STAGING_S, Cache, staging_name
import renderer.providers.base  # the output type a reader of voice entries knows (its stage imports it)
cache = Cache({root!r})
with cache.in_use():
    hit = cache.get("voice", {key!r})
print("hit" if hit is not None and hit.path.read_bytes() == b"RIFF-not-really-audio" else "miss")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="makes another user's cache with chown")
def test_a_cache_this_user_cannot_write_still_serves_its_hits(tmp_path):
    """Another user's (or a read-only) cache: no traceback at the start, every hit a hit; only the caching of
    new outputs is lost."""
    cache = Cache(tmp_path / "cache")
    cache.put("voice", KEY, clip(tmp_path))
    with cache.in_use():  # the lock file exists, and is theirs
        pass
    _chown_tree(cache.root, 65534)
    done = _unprivileged(GET.format(root=str(cache.root), key=KEY))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hit", done.stderr
    assert "Traceback" not in done.stderr


def test_a_read_error_is_a_miss_that_keeps_the_entry(tmp_path):
    """An entry this process cannot read (a permission here; EMFILE, EIO elsewhere) may be healthy for every
    other reader of a shared cache: it is not deleted. Only a verified mismatch is."""
    cache = Cache(tmp_path / "cache")
    stored = cache.put("voice", KEY, clip(tmp_path))
    stored.path.chmod(0)
    done = _unprivileged(GET.format(root=str(cache.root), key=KEY))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "miss"
    assert "cannot be read" in done.stderr
    stored.path.chmod(0o644)
    assert cache.get("voice", KEY).path.read_bytes() == b"RIFF-not-really-audio"


def test_cli_stats_and_prune(tmp_path):
    cache = Cache(tmp_path / "cache")
    cache.put("voice", KEY, clip(tmp_path))
    run = lambda *a: subprocess.run([sys.executable, "-m", "renderer.cache", "--dir", str(cache.root), *a],
                                    capture_output=True, text=True)
    stats = run("stats")
    assert stats.returncode == 0 and "1 entries" in stats.stdout
    pruned = run("prune", "--max-size", "0")
    assert pruned.returncode == 0 and "removed 1 entries" in pruned.stdout
    assert run("prune", "--max-size", "lots").returncode == 2


@pytest.mark.parametrize("text, size", [("1024", 1024), ("5G", 5 * 1024**3), ("500M", 500 * 1024**2),
                                        ("1.5GB", int(1.5 * 1024**3)), ("2KiB", 2048)])
def test_parse_size(text, size):
    assert parse_size(text) == size


# --- a cache that cannot be written costs only the caching -------------------------------------------------
@pytest.mark.parametrize("where", ["other file system", "same file system"])
def test_a_failed_write_leaves_the_output_where_it_was(tmp_path, small_disk, where):
    cache = Cache(small_disk / "cache")
    if where == "other file system":  # the copy into the cache runs out of space
        payload, folder = os.urandom(200_000), tmp_path
    else:  # the file is renamed in, then the entry's record finds no room
        payload, folder = os.urandom(64 * 1024 - 100), small_disk  # all of the disk's pages
    output = clip(folder, payload)
    with pytest.raises(OSError) as info:
        cache.put("voice", KEY, output)
    assert info.value.errno == 28  # ENOSPC
    assert output.path.read_bytes() == payload  # still usable by the stages after it
    assert cache.get("voice", KEY) is None
    assert list((small_disk / "cache" / "tmp").iterdir()) == []  # no half entry left behind


def test_a_full_cache_still_renders_the_video_and_says_so(tmp_path, small_disk):
    from renderer.ops.files import RunLayout
    from renderer.pipeline.render import render_script
    from tests.conftest import TINY, TWO_SCENES, codecs, compose_cfg, ffprobe

    script = tmp_path / "tiny.txt"
    script.write_text(TWO_SCENES, encoding="utf-8")
    cfg = compose_cfg(*TINY, "cache.enabled=true", f"cache.dir={small_disk / 'cache'}")
    record = render_script(script, "tiny", cfg, RunLayout(tmp_path / "run"))
    assert record["status"] == "ok", record["error"]
    assert record["fallbacks"] == []  # no stand-in, no placeholder: only the caching failed
    assert {s["status"] for s in record["stages"]} == {"ok"}
    (warning,) = [w for w in record["warnings"] if "is full" in w]
    assert "prune" in warning
    assert any("free for the cache" in w for w in record["warnings"])  # said before the job started
    info = ffprobe(tmp_path / "run" / "tiny" / "tiny.mp4")
    assert codecs(info) == ["aac", "h264"]
    expected = record["timeline"][-1]["start"] + record["timeline"][-1]["duration"]
    assert abs(float(info["format"]["duration"]) - expected) <= 0.1
