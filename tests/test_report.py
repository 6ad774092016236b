"""report.html: built from the manifest, the script records and metrics.json, every value escaped; checked in
headless Chromium after a real batch."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from renderer import batch
from renderer.ops import report
from tests.conftest import (
    BACKWARDS,
    THREE_SCENES,
    TINY,
    TWO_SCENES,
    compose_cfg,
    ffprobe,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_escapes_everything_it_shows(tmp_path: Path):
    manifest = {
        "started": "2026-11-25T10:00:00+00:00", "finished": "2026-11-25T10:05:00+00:00", "seconds": 300,
        "settings": {"theme": "dark"}, "unmatched_inputs": ["missing/*.txt"],
        "cache": {"hits": 3, "misses": 7},
        "scripts": {
            "good": {"script": "/s/good.txt", "status": "ok", "duration": 65.0, "seconds": 20.0,
                     "outputs": {"mp4": "/run/good/good.mp4"}, "fallbacks": [
                         {"node": "voice/0", "to": "espeak", "reason": "ServiceError: <b>429</b>"}],
                     "warnings": [], "issues": []},
            "bad": {"script": "/s/bad.txt", "status": "failed", "error": "bad.txt:3: <script>alert(1)</script>",
                    "fallbacks": [], "warnings": [], "issues": []},
        },
    }
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "good.mp4").write_bytes(b"")
    (tmp_path / "metrics.json").write_text(json.dumps({"services": {"<svc>": {
        "kind": "api", "calls": 2, "failures": 1, "failure_rate": 0.5,
        "latency_s": {"p50": 0.1, "p95": 0.2, "p99": 0.3},
        "breaker": "open", "last_error": "<img src=x onerror=alert(1)>"}}}))
    page = report.write(manifest, tmp_path).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;429&lt;/b&gt;" in page and "&lt;img src=x" in page and "&lt;svc&gt;" in page
    assert '<video controls preload="none" src="good/good.mp4">' in page
    assert "1 / 2" in page and "1:05" in page and "3 / 10" in page
    assert "no file matches missing/*.txt" in page
    assert page.index('data-slug="bad"') < page.index('data-slug="good"')  # scripts in name order
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing from the network


def test_the_template_compiles_once_per_machine_and_a_cache_dir_that_cannot_be_written_costs_only_that(
        tmp_path: Path, monkeypatch):
    """The report's template is compiled once and its bytecode kept in the user's cache dir (a later run loads
    it); where that dir cannot be made, the report is written all the same."""
    manifest = {"started": "2026-11-25T10:00:00+00:00", "seconds": 1, "scripts": {}}
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def written(run: Path) -> str:
        return report.write(manifest, run).read_text().replace(str(run), "RUN")

    report._env.cache_clear()
    try:
        first = written(tmp_path / "one" / "run")
        kept = list((tmp_path / "cache" / "renderer" / "templates").glob("__jinja2_*.cache"))
        assert len(kept) == 1
        report._env.cache_clear()
        assert written(tmp_path / "two" / "run") == first  # from the kept bytecode
        (tmp_path / "blocked").write_text("a file where the cache dir would be")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "blocked"))
        report._env.cache_clear()
        assert written(tmp_path / "three" / "run") == first
    finally:
        report._env.cache_clear()


def test_waterfall_places_each_node_on_its_stage_row():
    stages = [{"name": "voice/0", "stage": "voice", "status": "ok", "started": 0.0, "seconds": 1.0},
              {"name": "segment/0.0", "stage": "segment", "status": "ok", "started": 1.0, "seconds": 3.0},
              {"name": "mux", "stage": "mux", "status": "cached", "started": 4.0, "seconds": 0.0},
              {"name": "visual/0", "stage": "visual", "status": "skipped", "started": 0.0, "seconds": 0.0}]
    w = report.waterfall(stages)
    assert w["rows"] == ["voice", "segment", "mux"] and w["total"] == 4.0
    seg = w["bars"][1]
    scale = (report.WATERFALL_W - report.LABEL_W) / 4.0
    assert seg["x"] == pytest.approx(report.LABEL_W + scale) and seg["w"] == pytest.approx(3 * scale)
    assert seg["y"] == report.ROW_H + 2 and w["bars"][2]["w"] == 1.0  # an instant node is still visible


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_report_of_a_real_batch_in_headless_chromium(tmp_path: Path):
    """Three scripts (one fails to parse, one falls back from a missing voice): every script has its card
    with the right status, thumbnails (one per scene, real JPEGs) and links; the page renders in Chromium."""
    assert CHROMIUM, "chromium is needed for this test: .ci/setup installs it (apt-get install chromium)"
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "three.txt").write_text(THREE_SCENES, encoding="utf-8")
    (inputs / "two.txt").write_text(TWO_SCENES, encoding="utf-8")
    (inputs / "bad.txt").write_text(BACKWARDS, encoding="utf-8")
    run_dir = tmp_path / "run"
    cfg = compose_cfg(*TINY, "voice=espeak", f"batch.inputs=[{inputs}/*.txt]")
    batch.run_batch(cfg, run_dir)
    page = (run_dir / "report.html").read_text()

    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          (run_dir / "report.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    cards = dict(re.findall(r'data-slug="([^"]+)" data-status="([^"]+)"', dom))
    assert cards == {"bad": "failed", "three": "ok", "two": "ok"}
    assert 'id="totals"' in dom and 'data-service="ffmpeg"' in dom and 'data-service="espeak"' in dom
    for slug, scenes in (("three", 3), ("two", 2)):
        card = dom[dom.index(f'id="script-{slug}"'):]
        card = card[:card.index("</article>")]
        thumbs = re.findall(r'<img src="([^"]+)"', card)
        assert thumbs == [f"{slug}/thumbs/scene-{n:02d}.jpg" for n in range(1, scenes + 1)]
        for src in thumbs:
            info = ffprobe(run_dir / src)
            assert info["streams"][0]["codec_name"] == "mjpeg" and info["streams"][0]["width"] == 160
        assert "<svg" in card and card.count("<rect") >= 2 * scenes  # the waterfall: a bar per node
        for ext in ("mp4", "srt", "vtt", "json", "log"):
            assert f'href="{slug}/{slug}.{ext}"' in card and (run_dir / slug / f"{slug}.{ext}").exists()
        assert f'poster="{slug}/thumbs/scene-01.jpg"' in card  # no black box before the video plays
        assert "voice: espeak" in card and "visual: procedural" in card
    bad = dom[dom.index('id="script-bad"'):]
    assert "out of order" in bad[:bad.index("</article>")].lower() or "before" in bad[:bad.index("</article>")]
    # scenes of one script differ (a frame from each scene, not one frame three times)
    three = [(run_dir / f"three/thumbs/scene-{n:02d}.jpg").read_bytes() for n in (1, 2, 3)]
    assert len(set(three)) == 3

    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1280,1600", (run_dir / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert _png_size(shot) == (1280, 1600) and shot.stat().st_size > 20_000
    assert "<script" not in page.lower()  # nothing runs in the page
