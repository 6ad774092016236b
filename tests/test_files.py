"""renderer.ops.files: slugs, input expansion, atomic writes, the run-dir layout."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from renderer.ops.files import (
    RunLayout,
    atomic_path,
    expand_inputs,
    fsync_dir,
    is_slug,
    slugify,
    unique_slugs,
    write_json_atomic,
    write_text_atomic,
)

# --------------------------------------------------------------------------- slugs


@pytest.mark.parametrize("name, slug", [
    ("The Descent (v2)", "the-descent-v2"),
    ("LOG_0002 — THE DESCENT", "log-0002-the-descent"),
    ("  --Hello,   World!!--  ", "hello-world"),
    ("Café Müller naïve", "cafe-muller-naive"),
    ("ÅNGSTRÖM ﬁle", "angstrom-file"),  # NFKD folds the ligature
    ("a/b\\c:d*e?f\"g<h>i|j", "a-b-c-d-e-f-g-h-i-j"),
    ("../../etc/passwd", "etc-passwd"),
    ("日本語", "script"),
    ("", "script"),
    ("!!!", "script"),
])
def test_slugify(name, slug):
    assert slugify(name) == slug


def test_slugify_is_filesystem_safe_and_bounded():
    for name in ("x" * 500, "A b " * 100, "..", "." * 5, "\x00\n\t"):
        slug = slugify(name)
        assert slug and len(slug) <= 80
        assert set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
        assert not slug.startswith("-")


def test_unique_slugs_number_collisions_in_input_order():
    paths = [Path("a/Intro.txt"), Path("b/intro.md"), Path("c/INTRO!.txt"), Path("d/other.txt"), Path("e/日本.txt"),
             Path("f/中文.txt")]
    slugs = unique_slugs(paths)
    assert [slugs[p] for p in paths] == ["intro", "intro-2", "intro-3", "other", "script", "script-2"]


def test_is_slug_takes_every_slug_the_batch_makes_and_no_path():
    """What a resume checks a manifest's slugs by: the batch's own slugs pass, however long or numbered."""
    names = ["x" * 500, "x" * 500, "Intro", "intro", "日本", "中文", "../../etc/passwd", "a-2", "a-2"]
    assert all(is_slug(slug) for slug in unique_slugs([Path(f"{n}/{name}.txt") for n, name in enumerate(names)]
                                                      ).values())
    for text in ["../../etc", "..", ".", "", "a/b", "/abs", "Intro", "a b", "-a", "a-", "a--b", "a-²", "x" * 81, 7,
                 None]:
        assert not is_slug(text), text


def test_unique_slugs_never_reuses_a_slug_even_when_a_name_looks_numbered():
    paths = [Path("x/foo.txt"), Path("x/foo-2.txt"), Path("y/foo.txt")]
    slugs = unique_slugs(paths)
    assert len(set(slugs.values())) == 3
    assert slugs[paths[0]] == "foo" and slugs[paths[1]] == "foo-2"


# --------------------------------------------------------------------------- inputs


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ("scripts/b.txt", "scripts/a.txt", "scripts/c.md", "scripts/sub/d.txt", "extra/e.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel, encoding="utf-8")
    return tmp_path


def test_expand_inputs_globs_in_pattern_order_sorted_within_a_pattern(tree: Path):
    files, unmatched = expand_inputs([str(tree / "extra/*.txt"), str(tree / "scripts/*.txt")])
    assert files == [tree / "extra/e.txt", tree / "scripts/a.txt", tree / "scripts/b.txt"]
    assert unmatched == []
    assert all(p.is_absolute() for p in files)


def test_expand_inputs_recursive_glob(tree: Path):
    files, _ = expand_inputs([str(tree / "scripts/**/*.txt")])
    assert files == [tree / "scripts/a.txt", tree / "scripts/b.txt", tree / "scripts/sub/d.txt"]


def test_expand_inputs_dedupes_across_patterns_and_spellings(tree: Path, monkeypatch):
    monkeypatch.chdir(tree)
    files, unmatched = expand_inputs(["scripts/b.txt", "scripts/*.txt", str(tree / "scripts/./a.txt"),
                                      "scripts/sub/../a.txt"])
    assert files == [tree / "scripts/b.txt", tree / "scripts/a.txt"]
    assert unmatched == []


def test_expand_inputs_reports_patterns_that_match_no_file(tree: Path):
    files, unmatched = expand_inputs([str(tree / "scripts/*.txt"), str(tree / "nope/*.txt"),
                                      str(tree / "missing.txt"), str(tree / "scripts")])  # a directory is no file
    assert files == [tree / "scripts/a.txt", tree / "scripts/b.txt"]
    assert unmatched == [str(tree / "nope/*.txt"), str(tree / "missing.txt"), str(tree / "scripts")]


def test_expand_inputs_takes_an_existing_literal_path_as_is(tmp_path: Path):
    script = tmp_path / "LOG_0002 [final].txt"
    script.write_text("x", encoding="utf-8")
    files, unmatched = expand_inputs([str(script)])
    assert (files, unmatched) == ([script], [])


# --------------------------------------------------------------------------- atomic writes


def test_atomic_path_success_leaves_only_the_target(tmp_path: Path):
    target = tmp_path / "out" / "video.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        assert not target.exists()  # nothing visible under the final name while writing
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert sorted(p.name for p in target.parent.iterdir()) == ["video.mp4"]


def test_atomic_path_exception_leaves_neither_target_nor_part(tmp_path: Path):
    target = tmp_path / "video.mp4"
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_failure_keeps_the_previous_version(tmp_path: Path):
    target = tmp_path / "manifest.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new but incomplete", encoding="utf-8")
            raise KeyboardInterrupt
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_atomic_path_replaces_an_existing_target(tmp_path: Path):
    target = tmp_path / "a.txt"
    target.write_text("old", encoding="utf-8")
    write_text_atomic(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_write_json_atomic_round_trips_unicode_and_paths(tmp_path: Path):
    target = tmp_path / "m.json"
    write_json_atomic(target, {"title": "Café — 日本", "path": Path("/x/y")})
    text = target.read_text(encoding="utf-8")
    assert "Café — 日本" in text  # not \u-escaped
    assert json.loads(text) == {"title": "Café — 日本", "path": "/x/y"}


def test_atomic_write_gives_the_usual_file_mode(tmp_path: Path):
    """mkstemp makes private (0600) files; outputs must be ordinary, readable files like open() makes."""
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "report.html", "<html></html>")
        (tmp_path / "plain.html").write_text("<html></html>")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "report.html").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.html").stat().st_mode) == 0o644


# --------------------------------------------------------------------------- layout


def test_run_layout(tmp_path: Path):
    layout = RunLayout(tmp_path)
    assert layout.manifest == tmp_path / "manifest.json"
    assert layout.output("descent", ".mp4") == tmp_path / "descent" / "descent.mp4"
    work = layout.workdir("descent")
    assert work == tmp_path / "tmp" / f"descent.{os.getpid()}" and work.is_dir()
    (work / "scratch.wav").write_bytes(b"x")
    layout.clean_workdir("descent")
    assert not work.exists()
    assert layout.tmp.is_dir()


def test_run_layout_names_every_file_of_a_run(tmp_path: Path):
    """The run dir as people, scripts (clean, resume=, a sweep's summary) and the report find it."""
    layout = RunLayout(tmp_path)
    assert (layout.metrics, layout.report, layout.log, layout.log_json) == (
        tmp_path / "metrics.json", tmp_path / "report.html", tmp_path / "renderer.log", tmp_path / "renderer.jsonl")
    assert (layout.hydra, layout.saved_config, layout.overrides) == (
        tmp_path / ".hydra", tmp_path / ".hydra" / "config.yaml", tmp_path / ".hydra" / "overrides.yaml")
    assert (layout.health, layout.breakers) == (tmp_path / "tmp" / "health", tmp_path / "tmp" / ".breakers")
    assert layout.outputs("descent") == {ext: tmp_path / "descent" / f"descent.{ext}"
                                         for ext in ("mp4", "srt", "vtt", "json", "log")}
    assert (layout.video("descent"), layout.record("descent"), layout.credits("descent")) == (
        tmp_path / "descent" / "descent.mp4", tmp_path / "descent" / "descent.json",
        tmp_path / "descent" / "descent.credits.txt")
    assert layout.thumbnail("descent", 0) == tmp_path / "descent" / "thumbs" / "scene-01.jpg"


def test_fsync_dir_is_best_effort(tmp_path: Path):
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "gone")  # nothing to sync: no error either


# --------------------------------------------------------------------------- disk use

import shutil  # noqa: E402  (these imports are kept beside the tests that use them)

from renderer.ops.files import free_bytes, storage, tree_stats  # noqa: E402


@pytest.fixture
def known_tree(tmp_path):
    root = tmp_path / "run"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.bin").write_bytes(b"a" * 100)
    (root / "sub" / "b.bin").write_bytes(b"b" * 50)
    (root / "sub" / "deeper" / "c.txt").write_text("seven!!")
    (root / "empty").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "big.bin").write_bytes(b"x" * 10_000)
    (root / "big-link").symlink_to(tmp_path / "outside" / "big.bin")  # links are not followed nor counted
    (root / "dir-link").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    return root


def test_storage_totals_a_known_tree(known_tree, tmp_path):
    free = shutil.disk_usage(tmp_path).free
    result = storage({"run_dir": known_tree, "cache_dir": tmp_path / "no" / "cache"})
    assert set(result) == {"run_dir", "cache_dir"}
    run = result["run_dir"]
    assert (run["path"], run["bytes"], run["files"]) == (str(known_tree), 157, 3)
    assert abs(run["free_bytes"] - free) < 256 * 1024**2  # the same file system, give or take other writers
    missing = result["cache_dir"]
    assert (missing["bytes"], missing["files"]) == (0, 0)
    assert abs(missing["free_bytes"] - free) < 256 * 1024**2
    json.dumps(result)  # fit for the manifest as it is


def test_tree_stats_walks_without_following_links(known_tree, tmp_path):
    t = 1_700_000_000
    for path in [*known_tree.rglob("*"), known_tree]:
        os.utime(path, (t, t), follow_symlinks=False)
    os.utime(known_tree / "sub" / "deeper" / "c.txt", (t + 50, t + 50))
    stats = tree_stats(known_tree)
    assert (stats.bytes, stats.files, stats.newest_mtime) == (157, 3, t + 50)
    assert tree_stats(known_tree / "a.bin") == (100, 1, t)
    assert tree_stats(tmp_path / "missing") == (0, 0, None)


def test_free_bytes_of_a_path_not_made_yet(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    assert abs(free_bytes(tmp_path / "not" / "made" / "yet.mp4") - free) < 256 * 1024**2
    assert free_bytes("relative/not/there") > 0  # from the working directory's file system
