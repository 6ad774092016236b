"""visual=stock against the local Pexels and Pixabay doubles (real HTTP, real files, ffmpeg fit): the query of a
Visual line, the ranking, the rendition picked, no clip twice, the search cache, the rate limits, faults, credits."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest

from renderer.config import StockVisualConfig
from renderer.devtools.stock_fakes import FakeStock, colour_of
from renderer.media import ffmpeg
from renderer.ops.ratelimit import RateBudget, RateLimited, reading
from renderer.ops.reliability import ServiceError, build_guard
from renderer.providers.chain import make
from renderer.providers.http import MissingAPIKey
from renderer.providers.stock import (
    NoStockMatch,
    StockVisual,
    credits_text,
    rendition_for,
    want_of,
)
from renderer.providers.stock_api import Candidate, Rendition
from tests.conftest import mean_rgb

PEXELS_KEY, PIXABAY_KEY = "px-SECRET-test-key-1", "pb-SECRET-test-key-2"
FAST_RETRY = {"attempts": 3, "wait_s": 0.01, "max_wait_s": 0.5, "exponential": True, "jitter_s": 0}
HELDOUT = Path(__file__).parent / "stock" / "heldout_catalogue.json"
FRAME = {"width": 1280, "height": 720}


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("PEXELS_API_KEY", PEXELS_KEY)
    monkeypatch.setenv("PIXABAY_API_KEY", PIXABAY_KEY)


@pytest.fixture
def api():
    with FakeStock(pexels_key=PEXELS_KEY, pixabay_key=PIXABAY_KEY, hang_s=3, slow_s=3) as server:
        yield server


def stock(api: FakeStock, tmp_path: Path, *, retry: dict | None = None, timeout_s: float = 5, **settings
          ) -> StockVisual:
    visual = make(StockVisualConfig, pexels_url=api.url, pixabay_url=api.url, **settings)
    guards = {s: build_guard(s, {"fail_max": 50, "reset_timeout_s": 60}, retry or FAST_RETRY,
                             state_dir=tmp_path / "state", timeout_s=timeout_s) for s in visual.services}
    visual.connect(guards, state=tmp_path / "state", cache_dir=tmp_path / "cache")
    return visual


def scene(prompt: str, title: str = "", duration: float = 4.0, shots: int = 1) -> dict:
    return {"prompt": prompt, "title": title, "duration": duration, "shots": shots}


def first_shots(picks: tuple) -> list[dict]:
    """Each scene's pick for its first shot (a plan gives one per shot)."""
    return [shots[0] for shots in picks]


# --------------------------------------------------------------------------- the query of a Visual line
def test_a_query_is_a_few_keywords_not_the_sentence():
    want = want_of("Close-up of a sonar display, a faint amber pulse repeating against the trench floor.")
    assert want.keywords == ("sonar", "display", "trench")  # camera talk, stop words, describing words go last
    assert want.queries() == ["sonar display trench", "sonar display", "sonar", "display", "trench"]
    assert {"pulse", "floor", "amber", "repeat"} <= want.words  # every content word (and its stem) still ranks


def test_the_title_is_a_hint_and_a_hand_written_query_wins():
    assert want_of("Boats rock at anchor.", "Harbour at dawn").hints == {"harbour", "dawn"}
    hand = want_of("stock: harbour fog at night", "Ignored title")
    assert hand.written and hand.keywords == ("harbour", "fog", "night") and not hand.hints


# --------------------------------------------------------------------------- the rendition
def candidate(*sizes: tuple[int, int, int]) -> Candidate:
    return Candidate("pixabay", "1", "video", frozenset({"sea"}), "sea", 10.0,
                     tuple(Rendition(w, h, f"u{w}", size) for w, h, size in sizes), "", "", "", 0)


def test_the_rendition_nearest_above_the_frame_is_picked_never_4k_for_720p():
    c = candidate((3840, 2160, 0), (1920, 1080, 0), (1280, 720, 0), (640, 360, 0))
    assert rendition_for(c, 1280, 720, 10**9).width == 1280
    assert rendition_for(c, 1920, 1080, 10**9).width == 1920
    assert rendition_for(c, 192, 108, 10**9).width == 640
    assert rendition_for(candidate((960, 540, 0), (640, 360, 0)), 1920, 1080, 10**9).width == 960  # the largest
    assert rendition_for(candidate((1920, 1080, 900), (1280, 720, 400)), 1920, 1080, 500).width == 1280  # limit
    assert rendition_for(candidate((1920, 1080, 900)), 1280, 720, 500) is None


# --------------------------------------------------------------------------- planning against the doubles
def test_each_scene_gets_a_relevant_clip_and_none_twice(api, keys, tmp_path):
    visual = stock(api, tmp_path)
    picks = first_shots(visual.plan([scene("Rows of servers blinking in a data center."),
                         scene("A server room, racks of blinking lights."),
                                     scene("stock: harbour fog")], **FRAME))
    assert [p.get("error") for p in picks] == [None, None, None]
    assert len({(p["service"], p["id"]) for p in picks}) == 3  # the second server scene gets the other clip
    assert all("server" in p["text"] for p in picks[:2]) and "harbour" in picks[2]["text"]
    assert picks[2]["query"] == "harbour fog"
    assert {p["width"] for p in picks} == {1280}  # nearest above 1280x720
    assert all(p["creator"] and p["page_url"].startswith("https://") for p in picks)


def test_a_scene_in_shots_gets_a_clip_per_shot_none_twice_in_the_video(api, keys, tmp_path):
    picks = stock(api, tmp_path).plan([scene("Rows of servers blinking in a data center.", shots=2),
                                       scene("A server room, racks of blinking lights.", shots=1),
                                       scene("stock: harbour fog", shots=3)], **FRAME)
    assert [len(p) for p in picks] == [2, 1, 3]
    assert all("error" not in p for shots in picks for p in shots)
    servers = [(p["service"], p["id"]) for shots in picks[:2] for p in shots]
    assert len(set(servers)) == 2 and all("server" in p["text"] for shots in picks[:2] for p in shots)
    assert picks[0][1]["id"] == picks[0][0]["id"] and picks[0][1]["start"] > 0  # one clip left: it goes on
    harbour = picks[2]  # the catalogue's one harbour clip, shown on from where it was, never an unrelated one
    assert {p["id"] for p in harbour} == {harbour[0]["id"]} and "harbour" in harbour[0]["text"]
    assert len({p.get("start", 0) for p in harbour}) == 3


def test_the_next_service_is_asked_only_for_what_the_first_could_not_match(api, keys, tmp_path):
    visual = stock(api, tmp_path)
    picks = first_shots(visual.plan([scene("Harbour with boats in the fog."), scene("A sonar radar screen with a pulse.")],
                                     **FRAME))
    assert (picks[0]["service"], picks[1]["service"]) == ("pexels", "pixabay")
    assert api.stats()["counts"].get("pixabay_videos", 0) <= 3  # the harbour scene was never asked of Pixabay


def test_a_still_with_a_ken_burns_move_fills_in_where_no_clip_matches(api, keys, tmp_path):
    visual = stock(api, tmp_path)
    pick = visual.plan([scene("Crew silhouettes frozen in a doorway.")], **FRAME)[0][0]
    assert pick["kind"] == "photo" and "silhouette" in pick["text"]
    clip = visual.render("Crew silhouettes frozen in a doorway.", tmp_path / "v.mp4", width=192, height=108,
                         duration=2.0, pick=pick)
    info = ffmpeg.probe(clip.path)
    assert info.duration == pytest.approx(2.0, abs=0.15) and (info.first("video").width, info.first("video").height) \
        == (192, 108)
    assert clip.credits[0]["kind"] == "photo"


def test_no_match_anywhere_says_why_service_by_service(api, keys, tmp_path):
    visual = stock(api, tmp_path)
    pick = visual.plan([scene("Quantum zebra origami.")], **FRAME)[0][0]
    assert "pexels videos" in pick["error"] and "pixabay photos" in pick["error"]
    with pytest.raises(NoStockMatch):
        visual.render("Quantum zebra origami.", tmp_path / "v.mp4", width=192, height=108, duration=2)


# --------------------------------------------------------------------------- the download
def test_the_picked_rendition_is_downloaded_fitted_and_credited(api, keys, tmp_path):
    visual = stock(api, tmp_path)
    clip = visual.render("stock: harbour fog", tmp_path / "v.mp4", width=1280, height=720, duration=3.0)
    assert clip.provider == "stock:pexels:1031"
    assert api.stats()["downloads"] == [["pexels", "1031", "1280x720"]]  # not the 1920 or 4K one
    expected = bytes.fromhex(colour_of("pexels", 1031, "1280x720"))
    assert all(abs(a - b) <= 12 for a, b in zip(mean_rgb(clip.path, 1.0), expected))  # its picture, looped
    assert ffmpeg.probe(clip.path).duration == pytest.approx(3.0, abs=0.15)
    assert clip.credits == ({"service": "pexels", "id": "1031", "kind": "video", "creator": "Kelly",
                             "creator_url": "https://www.pexels.com/@kelly",
                             "page_url": "https://www.pexels.com/video/harbour-with-boats-in-the-fog-1031/"},)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "state", "v.mp4"]  # the download is gone


def test_a_truncated_download_is_retried(api, keys, tmp_path):
    visual = stock(api, tmp_path)
    api.script("file", "truncated", "ok")
    clip = visual.render("stock: harbour fog", tmp_path / "v.mp4", width=192, height=108, duration=1.0)
    assert clip.path.exists() and len(api.stats()["downloads"]) == 2
    assert visual.guards["pexels"].summary()["retries"] == 1


def test_a_download_over_the_size_limit_or_too_slow_is_refused(api, keys, tmp_path):
    visual = stock(api, tmp_path, max_download_mb=0.0001)
    with pytest.raises(ServiceError, match="larger than"):
        visual.render("stock: harbour fog", tmp_path / "v.mp4", width=192, height=108, duration=1.0)
    slow = stock(api, tmp_path, retry={**FAST_RETRY, "attempts": 1}, timeout_s=1)
    api.script("file", "slow")
    started = time.monotonic()
    with pytest.raises(ServiceError, match="stalled|no answer"):
        slow.render("stock: harbour fog", tmp_path / "w.mp4", width=192, height=108, duration=1.0, timeout=1.5)
    assert time.monotonic() - started < 3


# --------------------------------------------------------------------------- the services' rules
def test_searches_are_cached_as_json_without_the_key(api, keys, tmp_path):
    scenes = [scene("Rows of servers blinking in a data center."), scene("stock: harbour fog")]
    stock(api, tmp_path).plan(scenes, **FRAME)
    asked = sum(api.stats()["counts"].values())
    again = first_shots(stock(api, tmp_path).plan(scenes, **FRAME))  # a new run, the same cache dir
    assert sum(api.stats()["counts"].values()) == asked and all("error" not in p for p in again)
    files = list((tmp_path / "cache" / "stock-search").rglob("*.json"))
    assert files and all(json.loads(f.read_text())["body"] for f in files)
    assert not any(key in f.read_text() for f in files for key in (PEXELS_KEY, PIXABAY_KEY))
    for f in files:  # a day later
        entry = json.loads(f.read_text())
        f.write_text(json.dumps({**entry, "stored": entry["stored"] - 24 * 3600 - 1}))
    stock(api, tmp_path).plan(scenes, **FRAME)
    assert sum(api.stats()["counts"].values()) > asked


def test_a_429_storm_on_one_service_moves_its_scenes_to_the_next(api, keys, tmp_path):
    api.fault_rate, api.faults = 1.0, ("429",)
    api.script("pixabay_videos", *["ok"] * 50)  # Pexels storms, Pixabay answers
    visual = stock(api, tmp_path, rate_wait_s=0.5, rate_cooldown_s=60)
    started = time.monotonic()
    picks = first_shots(visual.plan([scene("Rows of servers in a data center."), scene("A sonar radar screen pulse.")],
                                    **FRAME))
    assert [p["service"] for p in picks] == ["pixabay", "pixabay"]
    assert api.stats()["injected"]["pexels_videos"] == 1  # one 429, then the budget says: rest, ask the next
    assert time.monotonic() - started < 5
    assert visual.clients["pexels"].budget.snapshot()["remaining"] == 0


def test_the_rate_limit_headers_are_kept_under_concurrent_processes(keys, tmp_path):
    """Three processes plan side by side against a Pixabay limit of 6 requests per 2 s: they wait for the
    window to reset instead of crossing it, and every scene is filled."""
    with FakeStock(pixabay_key=PIXABAY_KEY, limits={"pixabay": (6, 2.0)}) as api:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(3) as pool:
            results = pool.starmap(_plan_in_a_process, [(api.url, str(tmp_path), n) for n in range(3)])
        stats = api.stats()
    assert stats["refused"] == {}, stats
    assert all(error is None for errors in results for error in errors), results
    assert stats["counts"]["pixabay_videos"] > 6  # more than one window's worth: they waited for resets


def _plan_in_a_process(url: str, tmp: str, n: int) -> list:
    import os

    os.environ["PIXABAY_API_KEY"] = PIXABAY_KEY
    visual = make(StockVisualConfig, services=["pixabay"], pixabay_url=url, pexels_url=url, photos=False,
                  rate_wait_s=10)
    tmp_path = Path(tmp)
    guard = build_guard("pixabay", {"fail_max": 50, "reset_timeout_s": 60}, FAST_RETRY, state_dir=tmp_path / "state",
                        timeout_s=10, max_concurrency=2)
    visual.connect({"pixabay": guard}, state=tmp_path / "state", cache_dir=tmp_path / f"cache{n}")
    lines = ["radio telescope dish at night", "glitch text on a cracked screen", "underwater station lights",
             "red emergency light corridor", "helmet lamp in a cave", "3d terrain map glacier"]
    return [p.get("error") for p in first_shots(visual.plan([scene(line) for line in lines], **FRAME, timeout=60))]


def test_the_budget_waits_for_a_near_reset_and_refuses_a_far_one(tmp_path):
    budget = RateBudget("pixabay", tmp_path)
    budget.acquire(max_wait_s=1)  # nothing known: one request may go (a probe)
    budget.release(reading({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1"}, reset_is_epoch=False))
    started = time.monotonic()
    budget.acquire(max_wait_s=5)  # spent, resets in 1 s: wait for it
    assert 0.5 < time.monotonic() - started < 2.5
    budget.release(reading({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "3600"}, reset_is_epoch=False))
    with pytest.raises(RateLimited, match="resets in"):
        budget.acquire(max_wait_s=5)
    other = RateBudget("pixabay", tmp_path)  # another process of the run sees the same budget
    assert other.snapshot()["remaining"] == 0


def test_a_late_answer_from_an_earlier_window_gives_no_room_back(tmp_path):
    budget = RateBudget("pixabay", tmp_path)
    now = time.time()
    budget.acquire(max_wait_s=1)
    budget.release(reading({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "30"}, reset_is_epoch=False, now=now))
    budget.release(reading({"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "2"}, reset_is_epoch=False,
                           now=now - 60))  # answered in the window before, read only now
    assert budget.snapshot()["remaining"] == 0 and budget.snapshot()["reset_at"] == pytest.approx(now + 30)


def test_answers_of_one_window_out_of_order_never_raise_the_room(tmp_path):
    budget = RateBudget("pexels", tmp_path)
    budget.acquire(max_wait_s=1)
    budget.release(reading({"X-Ratelimit-Remaining": "9", "X-Ratelimit-Reset": "1900000000"}, reset_is_epoch=True))
    budget.acquire(max_wait_s=1)
    budget.acquire(max_wait_s=1)
    budget.release(reading({"X-Ratelimit-Remaining": "6", "X-Ratelimit-Reset": "1900000000"}, reset_is_epoch=True))
    budget.release(reading({"X-Ratelimit-Remaining": "7", "X-Ratelimit-Reset": "1900000000"}, reset_is_epoch=True))
    assert budget.snapshot()["remaining"] == 5  # the later-counted answer came first: 6 less the one in flight


# --------------------------------------------------------------------------- keys
def test_keys_come_from_the_environment_and_a_missing_one_skips_its_service(api, monkeypatch, tmp_path):
    monkeypatch.delenv("PEXELS_API_KEY", raising=False)
    monkeypatch.delenv("PIXABAY_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="PEXELS_API_KEY.*PIXABAY_API_KEY"):
        make(StockVisualConfig, pexels_url=api.url, pixabay_url=api.url)
    monkeypatch.setenv("PIXABAY_API_KEY", PIXABAY_KEY)
    visual = make(StockVisualConfig, pexels_url=api.url, pixabay_url=api.url)
    assert visual.services == ("pixabay",)
    assert visual.start_fallbacks() == [{"node": "visual", "from": "stock:pexels", "to": "stock:pixabay",
                                         "reason": visual.skipped[0][1]}]


def test_the_stock_keys_are_redacted_from_errors(keys):
    """Pixabay's key travels in the query string, so a failed request's URL may hold it."""
    err = ServiceError("pixabay", 500, "x", f"GET /api/?key={PIXABAY_KEY} failed; {PEXELS_KEY}", True)
    assert PIXABAY_KEY not in str(err) and PEXELS_KEY not in str(err)


def test_credits_read_like_a_video_description():
    text = credits_text([{"scene": 0, "service": "pexels", "kind": "video", "creator": "Kelly",
                          "page_url": "https://www.pexels.com/video/harbour-1/"},
                         {"scene": 2, "service": "pixabay", "kind": "photo", "creator": "",
                          "page_url": "https://pixabay.com/photos/x-2/"}], "The Descent")
    assert text.splitlines() == ["Footage in The Descent:",
                                 "Scene 1: Video by Kelly on Pexels: https://www.pexels.com/video/harbour-1/",
                                 "Scene 3: Photo on Pixabay: https://pixabay.com/photos/x-2/", "",
                                 "Videos and photos provided by Pexels (https://www.pexels.com) and Pixabay "
                                 "(https://pixabay.com)."]


# --------------------------------------------------------------------------- relevance on a held-out catalogue
HELDOUT_SCRIPT = [  # (Visual line, scene title, the topic a relevant clip shows)
    ("A striker curls the ball into the top corner as the stadium erupts.", "The Goal", "football"),
    ("Fishing boats rock at anchor in a grey harbour at dawn.", "Morning", "harbour"),
    ("Neon signs reflect in wet streets as taxis pass through the city at night.", "Downtown", "city_night"),
    ("Sunlight filters through tall pine trees in a quiet forest.", "The Woods", "forest"),
    ("Rows of servers hum in a cold data centre, status lights blinking.", "Infrastructure", "server_room"),
    ("Waves roll onto an empty beach under a pink sunset.", "Evening", "beach"),
    ("A chef chops onions on a wooden board in a busy restaurant kitchen.", "Service", "kitchen"),
    ("Snow falls on a mountain village, chimneys smoking.", "Winter", "mountain_snow"),
    ("Students raise their hands in a bright classroom.", "Lesson", "classroom"),
    ("Rain streaks down a window while a candle flickers inside.", "Night In", "rain_window"),
]


def test_ten_visual_lines_get_ten_relevant_distinct_clips_from_a_held_out_catalogue(keys, tmp_path):
    """Precision: the share of scenes whose clip shows the scene's topic (the catalogue's own label, which the
    double never serves); distinctness: different clips."""
    catalogue = json.loads(HELDOUT.read_text())
    topics = {(i["service"], str(i["id"])): i["topic"] for i in catalogue}
    with FakeStock(pexels_key=PEXELS_KEY, pixabay_key=PIXABAY_KEY, catalogue=catalogue) as api:
        picks = first_shots(stock(api, tmp_path).plan([scene(v, t, 6.0) for v, t, _ in HELDOUT_SCRIPT], **FRAME))
    chosen = [(p.get("service"), p.get("id")) for p in picks]
    relevant = [topics.get(c) == want for c, (_, _, want) in zip(chosen, HELDOUT_SCRIPT)]
    precision = sum(relevant) / len(relevant)
    print(f"held-out catalogue: precision {precision:.2f}, {len(set(chosen))} distinct of {len(chosen)}")
    assert len(set(chosen)) == len(chosen) == 10
    assert precision >= 0.9, [(v[:30], topics.get(c)) for c, (v, _, _) in zip(chosen, HELDOUT_SCRIPT)]
    with FakeStock(pexels_key=PEXELS_KEY, pixabay_key=PIXABAY_KEY, catalogue=catalogue) as api:  # in two shots each
        shots = stock(api, tmp_path).plan([scene(v, t, 12.0, shots=2) for v, t, _ in HELDOUT_SCRIPT], **FRAME)
    every = [((p.get("service"), p.get("id")), want) for pair, (_, _, want) in zip(shots, HELDOUT_SCRIPT) for p in pair]
    precision = sum(topics.get(c) == want for c, want in every) / len(every)
    print(f"held-out catalogue in shots: precision {precision:.2f}, {len({c for c, _ in every})} distinct of 20")
    assert precision >= 0.9 and len({c for c, _ in every}) >= 12  # a later shot: another clip of the topic, or again
