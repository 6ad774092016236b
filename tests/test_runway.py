"""renderer.providers.runway against the local Runway double (real HTTP, tasks polled, real mp4s, ffmpeg fit)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pybreaker
import pytest
from hydra.utils import instantiate

from renderer.config import RunwayVisualConfig
from renderer.devtools.fakes import FakeAPI
from renderer.media import ffmpeg
from renderer.ops.reliability import Cancelled, ServiceError, build_guard
from renderer.providers.chain import make
from renderer.providers.http import MissingAPIKey
from renderer.providers.runway import RunwayVisual, nearest_ratio, truncate_at_word

KEY = "rw-SECRET-test-key-0001"
FAST_RETRY = {"attempts": 3, "wait_s": 0.01, "max_wait_s": 1, "exponential": True, "jitter_s": 0}
SIZE = {"width": 160, "height": 90}


@pytest.fixture
def api():
    with FakeAPI(runway_key=KEY, task_seconds=0.3, retry_after_s=0.05, hang_s=5) as server:
        yield server


@pytest.fixture
def visual(api: FakeAPI, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("RUNWAY_API_KEY", KEY)
    monkeypatch.delenv("RUNWAY_CINEMATIC_MODE", raising=False)
    provider = make(RunwayVisualConfig, base_url=api.url, poll_interval_s=0.05, poll_jitter_s=0.01)
    provider.guard = build_guard("runway", {"fail_max": 3, "reset_timeout_s": 60}, FAST_RETRY,
                                 state_dir=tmp_path / "state", timeout_s=2)
    return provider


def seconds(path: Path) -> float:
    return ffmpeg.probe(path).duration


# --------------------------------------------------------------------------- happy path


def test_renders_a_clip_fitted_to_the_scene(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    clip = visual.render("A red sky over a server farm.", tmp_path / "v.mp4", duration=12.5, **SIZE)
    assert clip.provider == "runway" and clip.duration == 12.5
    info = ffmpeg.probe(clip.path)
    assert info.first("video").codec_name == "h264" and info.first("audio") is None
    assert info.duration == pytest.approx(12.5, abs=0.1)  # a 10 s generation looped to the scene
    body = api.received[0]["json"]
    assert body == {"model": "gen4.5", "promptText": "A red sky over a server farm.", "ratio": "1280:720",
                    "duration": 10}
    assert api.count("create") == 1 and api.count("task") >= 2 and api.count("download") == 1
    assert api.deleted == []
    assert visual.stats["tasks"] == {"created": 1, "succeeded": 1, "failed": 0, "cancelled": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "v.mp4"]  # the download is gone


def test_short_scene_asks_for_the_minimum_and_is_trimmed(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    clip = visual.render("Rain.", tmp_path / "v.mp4", width=1080, height=1920, duration=1.2)
    assert api.received[0]["json"]["duration"] == 2 and api.received[0]["json"]["ratio"] == "720:1280"
    assert seconds(clip.path) == pytest.approx(1.2, abs=0.1)


def test_extend_holds_the_last_frame(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    visual.fit = "extend"
    clip = visual.render("Rain.", tmp_path / "v.mp4", duration=3.5, **SIZE)
    assert api.received[0]["json"]["duration"] == 4 and seconds(clip.path) == pytest.approx(3.5, abs=0.1)


def test_throttled_tasks_keep_polling(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    seen: list[str] = []
    visual.on_poll = lambda task: seen.append(task["status"])
    api.script("create", "throttled")
    visual.render("Rain.", tmp_path / "v.mp4", duration=2, **SIZE)
    assert seen[-1] == "SUCCEEDED" and "RUNNING" in seen
    assert "PENDING" not in seen and api.count("create") == 1


def test_image_to_video_when_an_image_is_given(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    visual.render("Zoom in.", tmp_path / "v.mp4", duration=2, image_url="https://example.com/a.png", **SIZE)
    sent = api.received[0]
    assert sent["path"] == "image_to_video"
    assert sent["json"]["promptImage"] == "https://example.com/a.png" and sent["json"]["model"] == "gen4_turbo"


@pytest.mark.parametrize("line, text", [
    ("https://example.com/harbour.JPG slow push in on the boats", "slow push in on the boats"),
    ("Slow push in — https://example.com/a/harbour.webp?v=2", "Slow push in"),
    ("https://example.com/harbour.png", None),  # the image alone: no prompt text is sent
])
def test_an_image_url_in_the_visual_line_starts_image_to_video(visual: RunwayVisual, api: FakeAPI, tmp_path: Path,
                                                              line: str, text: str | None):
    visual.render(line, tmp_path / "v.mp4", duration=2, **SIZE)
    sent = api.received[0]
    assert sent["path"] == "image_to_video" and sent["json"]["model"] == "gen4_turbo"
    assert sent["json"]["promptImage"].startswith("https://example.com/") and "harbour." in sent["json"]["promptImage"]
    assert sent["json"].get("promptText") == text


def test_a_link_that_is_not_an_image_stays_in_the_prompt(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    visual.render("A page like https://example.com/docs/index.html glowing", tmp_path / "v.mp4", duration=2, **SIZE)
    assert api.received[0]["path"] == "text_to_video"
    assert "https://example.com/docs/index.html" in api.received[0]["json"]["promptText"]


def test_built_from_the_hydra_config(api: FakeAPI, monkeypatch, tmp_path: Path):
    from tests.conftest import compose_cfg

    monkeypatch.setenv("RUNWAY_API_KEY", KEY)
    monkeypatch.delenv("RUNWAY_CINEMATIC_MODE", raising=False)
    cfg = compose_cfg("visual=runway", f"visual.base_url={api.url}", "visual.poll_interval_s=0.05",
                      "visual.poll_jitter_s=0", "visual.cinematic=true", "format=portrait_1080")
    provider = instantiate(cfg.visual)
    assert isinstance(provider, RunwayVisual) and provider.guard is None and provider.version == "2-cinematic"
    provider.render("Neon city.", tmp_path / "v.mp4", width=cfg.format.width, height=cfg.format.height,
                    duration=2)
    body = api.received[0]["json"]
    assert body["ratio"] == "720:1280" and body["promptText"].startswith("Neon city., cinematic")


# --------------------------------------------------------------------------- request shaping


def test_prompt_is_cut_at_a_word_under_the_limit(visual: RunwayVisual, monkeypatch):
    prompt = "word " * 400
    _, body = visual.request_body(prompt, duration=5, **SIZE)
    assert len(body["promptText"]) <= 1000 and body["promptText"].endswith("word")
    assert truncate_at_word("abcdefghij", 4) == "abcd"
    monkeypatch.setenv("RUNWAY_CINEMATIC_MODE", "true")
    cinematic = make(RunwayVisualConfig, base_url="http://127.0.0.1:9")
    _, body = cinematic.request_body(prompt, duration=5, **SIZE)
    assert len(body["promptText"]) <= 1000 and body["promptText"].endswith(cinematic.cinematic_style)
    assert cinematic.version != visual.version  # the environment changes the output: the cache key knows


def test_each_shot_of_a_scene_asks_with_a_seed_of_its_own_as_the_api_documents_it(visual: RunwayVisual):
    from tests.test_contracts import load, schema_drift

    bodies = [visual.request_body("Neon city.", duration=5, shot=k, **SIZE)[1] for k in range(3)]
    assert "seed" not in bodies[0]  # a scene in one shot asks as it always has
    assert len({b["seed"] for b in bodies[1:]}) == 2
    assert bodies[1] == visual.request_body("Neon city.", duration=5, shot=1, **SIZE)[1]  # the same shot: the same ask
    schema = load("runway_text_to_video")["request"]["json_schema"]
    assert [schema_drift(schema, body, "body") for body in bodies] == [[], [], []]


def test_ratio_follows_the_format():
    ratios = ["1280:720", "720:1280", "960:960", "1584:672"]
    assert nearest_ratio(1920, 1080, ratios) == "1280:720"
    assert nearest_ratio(1080, 1920, ratios) == "720:1280"
    assert nearest_ratio(1080, 1080, ratios) == "960:960"
    assert nearest_ratio(2560, 1080, ratios) == "1584:672"


# --------------------------------------------------------------------------- failures and cancellation


def test_missing_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("RUNWAY_API_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="set RUNWAY_API_KEY in the environment"):
        make(RunwayVisualConfig)


def test_safety_failure_is_not_retried(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    api.script("create", "safety")
    with pytest.raises(ServiceError) as err:
        visual.render("Something unacceptable.", tmp_path / "v.mp4", duration=2, **SIZE)
    assert err.value.code == "SAFETY.INPUT.TEXT" and not err.value.retryable
    assert api.count("create") == 1 and api.deleted == []
    assert visual.guard.breaker_state == "closed" and visual.guard.breaker.fail_counter == 0
    assert not (tmp_path / "v.mp4").exists()


def test_internal_failure_and_transient_errors_are_retried(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    api.script("create", "internal", "429")
    api.script("task", "500", "malformed")  # tolerated between polls
    api.script("download", "truncated")
    clip = visual.render("Rain.", tmp_path / "v.mp4", duration=2, **SIZE)
    assert seconds(clip.path) == pytest.approx(2, abs=0.1)
    assert api.count("create") == 3  # the INTERNAL failure, the 429, then the task that succeeded
    assert api.count("download") == 2  # the truncated download was fetched again, no new task
    assert visual.stats["tasks"]["succeeded"] == 1 and visual.stats["tasks"]["failed"] == 1


def test_interrupt_while_polling_deletes_the_task(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    def interrupt(task):
        raise KeyboardInterrupt

    visual.on_poll = interrupt
    with pytest.raises(KeyboardInterrupt):
        visual.render("Rain.", tmp_path / "v.mp4", duration=2, **SIZE)
    assert api.count("create") == 1 and len(api.deleted) == 1
    assert api.stats()["tasks"][api.deleted[0]] == "CANCELLED"
    assert visual.guard.breaker.fail_counter == 0


def test_timeout_deletes_the_task(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    api.task_seconds = 30
    with pytest.raises(ServiceError) as err:
        visual.render("Rain.", tmp_path / "v.mp4", duration=2, timeout=0.4, **SIZE)
    assert err.value.code == "deadline"
    assert api.count("create") == 1 and len(api.deleted) == 1


def render_until_polled(visual: RunwayVisual, api: FakeAPI, tmp_path: Path
                        ) -> tuple[threading.Thread, list[BaseException]]:
    """A render of a long task in another thread, returned once its task has been polled; and its errors."""
    api.task_seconds = 30
    polled = threading.Event()
    visual.on_poll = lambda task: polled.set()
    errors: list[BaseException] = []

    def run():
        try:
            visual.render("Rain.", tmp_path / "v.mp4", duration=2, **SIZE)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert polled.wait(10)
    return worker, errors


def test_cancel_from_another_thread_deletes_the_task(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    worker, errors = render_until_polled(visual, api, tmp_path)
    visual.cancel()
    worker.join(10)
    assert len(errors) == 1 and isinstance(errors[0], Cancelled)
    assert len(api.deleted) == 1 and api.count("create") == 1


def test_cancel_deletes_running_tasks_at_once_and_starts_nothing_new(visual: RunwayVisual, api: FakeAPI,
                                                                      tmp_path: Path):
    """cancel() DELETEs the running task itself (an interrupted worker has seconds, not a poll's timeout):
    even while its thread waits on a slow poll; that thread then gives up without a second DELETE."""
    worker, errors = render_until_polled(visual, api, tmp_path)
    api.latency = {"task": 1.5}  # the next poll is answered late
    time.sleep(0.2)
    started = time.monotonic()
    visual.cancel()
    took = time.monotonic() - started
    assert len(api.deleted) == 1 and took < 1.0, f"cancel() took {took:.2f} s and left DELETEs {api.deleted}"
    worker.join(10)
    assert len(errors) == 1 and isinstance(errors[0], Cancelled)
    assert len(api.deleted) == 1 and visual.stats["tasks"]["cancelled"] == 1
    with pytest.raises(Cancelled):  # once cancelled, no new task
        visual.render("Rain.", tmp_path / "v.mp4", duration=2, **SIZE)
    assert api.count("create") == 1


def test_breaker_opens_after_failed_tasks_and_stops_calling(visual: RunwayVisual, api: FakeAPI, tmp_path: Path):
    visual.guard = build_guard("runway", {"fail_max": 3, "reset_timeout_s": 60}, {**FAST_RETRY, "attempts": 1})
    api.fault_rate, api.faults = 1.0, ("500",)
    for _ in range(3):
        with pytest.raises(ServiceError):
            visual.render("Rain.", tmp_path / "v.mp4", duration=2, **SIZE)
    with pytest.raises(pybreaker.CircuitBreakerError):
        visual.render("Rain.", tmp_path / "v.mp4", duration=2, **SIZE)
    assert api.count("create") == 3
    assert visual.guard.last_call["breaker_state"] == "open"


def test_wrong_key_is_not_retried_and_never_shown(api: FakeAPI, monkeypatch, tmp_path: Path):
    wrong = "rw-WRONG-secret-key-9999"
    monkeypatch.setenv("RUNWAY_API_KEY", wrong)
    visual = make(RunwayVisualConfig, base_url=api.url, poll_interval_s=0.05)
    visual.guard = build_guard("runway", None, FAST_RETRY)
    with pytest.raises(ServiceError) as err:
        visual.render("Rain.", tmp_path / "v.mp4", duration=2, **SIZE)
    assert err.value.status == 401 and api.count("create") == 1
    for text in [str(err.value), repr(visual), repr(visual.client), str(visual.guard.last_call), str(visual.stats)]:
        assert wrong not in text


def test_an_output_over_max_download_mb_is_refused_not_retried(api: FakeAPI, monkeypatch, tmp_path: Path):
    """visual.max_download_mb (stock's setting, one default in the schema) bounds Runway's download too: the
    double's clip is more than a kilobyte."""
    monkeypatch.setenv("RUNWAY_API_KEY", KEY)
    visual = make(RunwayVisualConfig, base_url=api.url, poll_interval_s=0.05, max_download_mb=0.001)
    visual.guard = build_guard("runway", None, FAST_RETRY)
    with pytest.raises(ServiceError) as err:
        visual.render("Rain.", tmp_path / "v.mp4", duration=2, **SIZE)
    assert err.value.code == "too_large" and not err.value.retryable and api.count("download") == 1
    assert "larger than 0.001 MB (visual.max_download_mb)" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


# --------------------------------------------------------------------------- its stand-in


@pytest.mark.parametrize("key", [None, KEY], ids=["no key", "started"])
def test_the_procedural_stand_in_is_built_with_the_configured_look(api: FakeAPI, monkeypatch, tmp_path: Path, key):
    """visual.sources, scale and fps hold for the procedural stand-in of runway too: it used to be built with no
    arguments, so a Runway fallback drew from ``gradients`` whatever the config said."""
    from renderer.providers import chain
    from tests.conftest import compose_cfg

    if key:
        monkeypatch.setenv("RUNWAY_API_KEY", key)
    else:
        monkeypatch.delenv("RUNWAY_API_KEY", raising=False)
    cfg = compose_cfg("visual=runway", f"visual.base_url={api.url}", "visual.sources=[life]", "visual.fps=5",
                      "visual.scale=0.5")
    providers = chain.build(cfg, groups=["visual"], state_dir=tmp_path / "state")
    stand_in = providers.backups["visual"][0] if key else providers.primary["visual"]
    assert providers.stand_in["visual"] is not bool(key)
    assert (stand_in.name, stand_in.sources, stand_in.fps, stand_in.scale) == ("procedural", ["life"], 5, 0.5)
    assert [b.name for b in providers.backups["visual"]] == (["procedural", "backdrop"] if key else ["backdrop"])
    assert stand_in.render("Rain.", tmp_path / "v.mp4", duration=1, **SIZE).provider == "procedural:life"


def test_scenes_runway_fails_are_drawn_from_the_configured_sources(api: FakeAPI, monkeypatch, tmp_path: Path):
    from renderer.ops.files import RunLayout
    from renderer.pipeline.render import render_script
    from tests.conftest import TINY, TWO_SCENES, compose_cfg

    monkeypatch.setenv("RUNWAY_API_KEY", KEY)
    monkeypatch.delenv("RUNWAY_CINEMATIC_MODE", raising=False)
    api.script("create", "safety", "safety")  # both scenes' tasks refused, not retried
    script = tmp_path / "tiny.txt"
    script.write_text(TWO_SCENES, encoding="utf-8")
    cfg = compose_cfg(*TINY, "visual=runway", f"visual.base_url={api.url}", "visual.sources=[life]",
                      "assembly=visual_only", "visual.poll_interval_s=0.05", "visual.poll_jitter_s=0")  # the refusal
    # is seen at the first poll: at once, not after the default 5-6 s
    record = render_script(script, "tiny", cfg, RunLayout(tmp_path / "run"))
    assert record["status"] == "ok", record["error"]
    assert [f["to"] for f in record["fallbacks"]] == ["procedural:life"] * 2
    assert record["providers"]["visual"] == ["procedural:life"]
    assert ffmpeg.probe(tmp_path / "run" / "tiny" / "tiny.mp4").first("video") is not None
