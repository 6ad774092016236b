"""visual=stock in real renders against the local doubles: every clip credited (record, credits file, report),
nothing fetched twice, the configured fallback chain with each step's reason, no key or a 429 storm never
failing a script."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from renderer.devtools.stock_fakes import FakeStock
from renderer.ops import report
from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from tests.conftest import TINY, compose_cfg, mean_rgb
from tests.test_library import make_clip

PEXELS_KEY, PIXABAY_KEY = "px-SECRET-pipeline-key", "pb-SECRET-pipeline-key"
SCRIPT = """SCRIPT: STOCK_0001 — HARBOUR LOG
[0:00 – Night Shift | Data Centre]
Visual: Rows of servers in a data center, status lights blinking.
Narration: “One.”

[0:02 – Fog]
Visual: stock: harbour fog
Narration: “Two.”

[0:04 – Contact]
Visual: Quantum zebra origami.
Narration: “Three.”
END STOCK_0001
"""


@pytest.fixture
def api():
    with FakeStock(pexels_key=PEXELS_KEY, pixabay_key=PIXABAY_KEY) as server:
        yield server


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("PEXELS_API_KEY", PEXELS_KEY)
    monkeypatch.setenv("PIXABAY_API_KEY", PIXABAY_KEY)


def cfg_for(api: FakeStock, tmp_path: Path, *extra: str):
    return compose_cfg(*[o for o in TINY if not o.startswith("cache.")], "visual=stock",
                       f"visual.pexels_url={api.url}", f"visual.pixabay_url={api.url}", "assembly=visual_only",
                       f"cache.dir={tmp_path / 'cache'}", "retry.api.wait_s=0.01", "retry.api.max_wait_s=0.1",
                       "retry.api.jitter_s=0", "visual.rate_wait_s=0.5", *extra)


def render(tmp_path: Path, cfg, run: str = "run") -> dict:
    script = tmp_path / "stock.txt"
    script.write_text(SCRIPT, encoding="utf-8")
    return render_script(script, "stock", cfg, RunLayout(tmp_path / run))


def test_every_clip_is_credited_and_nothing_is_fetched_twice(api, keys, tmp_path):
    record = render(tmp_path, cfg_for(api, tmp_path))
    assert record["status"] == "ok", record["error"]
    providers = {s["name"]: s["provider"] for s in record["stages"] if s["stage"] == "visual"}
    assert providers["visual/0"].startswith("stock:") and providers["visual/1"] == "stock:pexels:1031"
    assert providers["visual/2"].startswith("procedural")  # nothing matches: the configured chain, recorded
    (fallback,) = record["fallbacks"]
    assert fallback["node"] == "visual/2" and "pexels videos" in fallback["reason"]
    assert [c["scene"] for c in record["credits"]] == [0, 1]
    assert record["credits"][1]["page_url"] == "https://www.pexels.com/video/harbour-with-boats-in-the-fog-1031/"
    credits = (tmp_path / "run" / "stock" / "stock.credits.txt").read_text()
    assert "Scene 2: Video by Kelly on Pexels: https://www.pexels.com/video/harbour-with-boats-in-the-fog-1031/" \
        in credits
    assert record["outputs"]["credits.txt"].endswith("stock.credits.txt")
    page = report.render({"scripts": {"stock": {"status": "ok", "fallbacks": record["fallbacks"]}}},
                         tmp_path / "run")
    assert "Footage credits (2)" in page and "harbour-with-boats-in-the-fog-1031" in page
    assert PEXELS_KEY not in json.dumps(record) and PIXABAY_KEY not in credits
    fetched, asked = len(api.stats()["downloads"]), sum(api.stats()["counts"].values())

    again = render(tmp_path, cfg_for(api, tmp_path), run="run2")  # the same cache: searches and clips kept
    statuses = {s["name"]: s["status"] for s in again["stages"] if s["stage"] == "visual"}
    assert statuses["visual/0"] == statuses["visual/1"] == "cached" and statuses["visual.plan"] == "ok"
    assert len(api.stats()["downloads"]) == fetched and sum(api.stats()["counts"].values()) == asked
    assert again["credits"] == record["credits"]


def test_shots_of_a_scene_show_different_clips_each_credited(api, keys, tmp_path):
    record = render(tmp_path, cfg_for(api, tmp_path, "visual.shot_s=1"))
    assert record["status"] == "ok", record["error"]
    providers = {s["name"]: s["provider"] for s in record["stages"] if s["stage"] == "visual"}
    assert {providers["visual/0.0"], providers["visual/0.1"]} == {"stock:pexels:1001", "stock:pixabay:5002"}
    assert providers["visual/1.0"] == providers["visual/1.1"] == "stock:pexels:1031"  # the one harbour clip, going on
    assert [(c["scene"], c["id"]) for c in record["credits"]] == [(0, "1001"), (0, "5002"), (1, "1031")]
    credits = (tmp_path / "run" / "stock" / "stock.credits.txt").read_text()
    assert credits.count("Scene 1: Video by") == 2 and credits.count("Scene 2: Video by") == 1


def test_the_credits_card_closes_the_video_with_whose_footage_it_shows(api, keys, tmp_path):
    from renderer.stages.credits import build_track, lines_of

    record = render(tmp_path, cfg_for(api, tmp_path, "assembly.credits_card=true", "assembly.credits_card_s=1",
                                      "format.width=384", "format.height=216"))
    assert record["status"] == "ok", record["error"]
    assert {s["name"]: s["status"] for s in record["stages"]}["credits/2"] == "ok"
    render(tmp_path, cfg_for(api, tmp_path, "format.width=384", "format.height=216"), run="plain")
    with_card, without = tmp_path / "run" / "stock" / "stock.mp4", tmp_path / "plain" / "stock" / "stock.mp4"
    end = record["duration"] - 0.2
    assert mean_rgb(with_card, 0.5) == mean_rgb(without, 0.5)  # the first scenes are untouched
    # a band in the title's slot (a sixth of the frame), not the whole frame
    assert sum(abs(a - b) for a, b in zip(mean_rgb(with_card, end), mean_rgb(without, end))) > 6
    assert lines_of(record["credits"]) == [f"{c['creator']} on Pexels" for c in record["credits"]]

    theme, fmt = compose_cfg().theme, compose_cfg().format  # a long list: what fits, then how many more
    many = [{"service": "pixabay", "creator": f"Creator {n}"} for n in range(60)]
    track = build_track(many, scene_s=10.0, card_s=4.0, theme=theme, fmt=fmt)
    texts = [e.text.replace("\xa0", " ") for e in track.events]
    assert texts[-1].endswith(" more") and len(texts) < 40 and "Creator 0 on Pixabay" in texts[2]
    assert {(e.start, e.end) for e in track.events} == {(600, 1000)}  # the last 4 s of the scene
    assert build_track([], scene_s=10.0, card_s=4.0, theme=theme, fmt=fmt).events == []


def test_a_scene_no_service_fills_goes_down_the_configured_chain_each_step_recorded(api, keys, tmp_path):
    make_clip(tmp_path / "footage" / "waves.mp4", "blue")
    record = render(tmp_path, cfg_for(api, tmp_path, "visual.then=[library,procedural]",
                                      f"visual.library_dir={tmp_path / 'footage'}"))
    assert record["status"] == "ok", record["error"]
    (fallback,) = record["fallbacks"]
    assert fallback["to"].startswith("procedural")
    assert "NoStockMatch" in fallback["reason"] and "library failed too: NoMatch" in fallback["reason"]


def test_library_in_the_chain_without_its_folder_is_the_fix_not_a_fallback(api, keys, tmp_path):
    record = render(tmp_path, cfg_for(api, tmp_path, "visual.then=[library,procedural]"))
    assert record["status"] == "failed" and "visual.library_dir" in record["error"]


def test_no_key_means_the_next_source_recorded_never_a_failed_script(api, monkeypatch, tmp_path):
    monkeypatch.delenv("PEXELS_API_KEY", raising=False)
    monkeypatch.delenv("PIXABAY_API_KEY", raising=False)
    record = render(tmp_path, cfg_for(api, tmp_path))
    assert record["status"] == "ok", record["error"]
    (fallback,) = record["fallbacks"]
    assert fallback["node"] == "visual" and fallback["to"] == "procedural"
    assert "PEXELS_API_KEY" in fallback["reason"] and "PIXABAY_API_KEY" in fallback["reason"]
    assert sum(api.stats()["counts"].values()) == 0
    monkeypatch.setenv("PIXABAY_API_KEY", PIXABAY_KEY)  # one key: the other service is skipped, recorded
    record = render(tmp_path, cfg_for(api, tmp_path), run="run2")
    assert record["status"] == "ok"
    assert {"node": "visual", "from": "stock:pexels", "to": "stock:pixabay"}.items() <= record["fallbacks"][0].items()


def test_a_429_storm_on_both_services_degrades_without_failing_the_script(api, keys, tmp_path):
    api.fault_rate, api.faults = 1.0, ("429",)
    started = time.monotonic()
    record = render(tmp_path, cfg_for(api, tmp_path))
    assert record["status"] == "ok", record["error"]
    assert {f["node"] for f in record["fallbacks"]} == {"visual/0", "visual/1", "visual/2"}
    assert all(f["to"].startswith("procedural") for f in record["fallbacks"])
    reasons = [f["reason"] for f in record["fallbacks"]]  # scenes are searched side by side: any may meet the 429
    assert all("HTTP 429" in reason for reason in reasons)
    assert "pexels: too many requests" in " ".join(reasons) and "pixabay: too many requests" in " ".join(reasons)
    assert time.monotonic() - started < 60
    injected = api.stats()["injected"]
    assert injected.get("pexels_videos") == 1 and injected.get("pixabay_videos") == 1  # then they rest
    assert record["services"]["pexels"]["failed_calls"] >= 1
