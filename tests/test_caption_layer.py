"""renderer.stages.captions: narration burnt onto the video — read back by OCR, kept off the terminal panel
(measured on rendered pixels), laid out afresh for portrait and square frames."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from renderer.config import PanelConfig
from renderer.media.captions import Cue
from renderer.media.layout import Box, frame_layout
from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from renderer.stages.captions import build_track, layout
from tests.conftest import TWO_SCENES, compose_cfg

FAST = ["encode.preset=ultrafast", "visual.fps=5", "batch.backend=sequential", "cache.enabled=false",
        "format.fps=10", "voice=espeak", "captions.burn=false", "assembly.title_card=false"]  # each test adds them
SAY = "“Seven green lanterns drift over the harbour.”"
SCRIPT = TWO_SCENES.replace("“Short line one.”", SAY)


def render(tmp_path: Path, name: str, *overrides: str) -> Path:
    script = tmp_path / "tiny.txt"
    script.write_text(SCRIPT, encoding="utf-8")
    record = render_script(script, name, compose_cfg(*FAST, *overrides), RunLayout(tmp_path))
    assert record["status"] == "ok", record["error"]
    return tmp_path / name / f"{name}.mp4"


def frame(mp4: Path, at: float) -> np.ndarray:
    info = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                           "-of", "csv=p=0", str(mp4)], capture_output=True, text=True, check=True).stdout
    w, h = map(int, info.strip().split(","))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", str(at), "-i", str(mp4), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)


def changed(a: np.ndarray, b: np.ndarray) -> Box | None:
    """The bounding box of the pixels that differ clearly between two frames."""
    ys, xs = np.nonzero(np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 40)
    if xs.size == 0:
        return None
    return Box(float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1))


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr (apt-get install tesseract-ocr)")
def test_ocr_reads_the_caption_words_in_a_captioned_frame(tmp_path):
    pytesseract = pytest.importorskip("pytesseract")
    from PIL import Image

    mp4 = render(tmp_path, "ocr", "format.width=960", "format.height=540", "captions.burn=true")
    text = pytesseract.image_to_string(Image.fromarray(frame(mp4, 1.2))).lower()
    found = [w for w in ("seven", "green", "lanterns", "drift", "harbour") if w in text]
    assert len(found) >= 4, text
    plain = pytesseract.image_to_string(Image.fromarray(frame(render(tmp_path, "plain", "format.width=960",
                                                                      "format.height=540"), 1.2))).lower()
    assert not any(w in plain for w in ("lanterns", "harbour"))  # the words come from the captions


@pytest.mark.parametrize("size", ["270x480", "360x360"], ids=["portrait", "square"])
def test_captions_and_the_terminal_panel_do_not_overlap(tmp_path, size):
    w, h = size.split("x")
    fmt = [f"format.width={w}", f"format.height={h}", "encode.crf=0"]
    both = frame(render(tmp_path, "both", *fmt, "captions.burn=true"), 1.0)
    terminal = frame(render(tmp_path, "terminal", *fmt), 1.0)
    bare = frame(render(tmp_path, "bare", *fmt, "assembly=visual_only"), 1.0)
    caption, panel = changed(both, terminal), changed(terminal, bare)
    assert caption is not None and panel is not None
    assert not caption.overlaps(panel), (caption, panel)
    assert caption.x >= 0 and caption.x + caption.w <= int(w) and caption.y + caption.h <= int(h)


def _fmt(w: int, h: int):
    return OmegaConf.create({"width": w, "height": h})


THEME = OmegaConf.create({"font_family": "DejaVu Sans Mono", "foreground": "#e0e0e0", "background": "#1e1e1e",
                          "prompt": "#4ec9b0"})
SETTINGS = OmegaConf.create({"font_size": 34, "max_lines": 3, "box_opacity": 0.7, "highlight": ""})
PANEL = OmegaConf.create({"x": 0.05, "y": 0.45, "w": 0.6, "h": 0.48})  # placed by hand
RULE = OmegaConf.structured(PanelConfig())  # where the layout rule puts it
LONG = Cue(0.0, 4.0, "The first red flag was a loop that nobody could explain, gone again by every morning.")


@pytest.mark.parametrize("fractions", [RULE, PANEL], ids=["rule", "by-hand"])
@pytest.mark.parametrize("w,h", [(1280, 720), (1080, 1920), (1080, 1080), (1920, 1080), (640, 360)])
def test_every_format_gets_captions_clear_of_the_panel_and_inside_the_frame(w, h, fractions):
    fmt = _fmt(w, h)
    panel = frame_layout(w, h, fractions).panel
    track = build_track([LONG], style="sentence", fmt=fmt, theme=THEME, settings=SETTINGS, panel=fractions)
    (box,) = track.boxes
    assert not box.overlaps(panel) and track.warnings == ()
    assert box.x >= 0 and box.y >= 0 and box.x + box.w <= w and box.y + box.h <= h
    place = layout(fmt, 34, 3, fractions, len(LONG.text))
    assert len(LONG.text) <= place.cols * place.rows


def test_without_a_terminal_captions_sit_at_the_bottom():
    fmt = _fmt(1280, 720)
    (box,) = build_track([LONG], style="sentence", fmt=fmt, theme=THEME, settings=SETTINGS, panel=None).boxes
    assert box.y > 720 * 0.7


def test_a_full_frame_terminal_leaves_no_room_and_says_so():
    fmt = _fmt(1280, 720)
    full = OmegaConf.create({"x": 0, "y": 0, "w": 1, "h": 1})
    track = build_track([LONG], style="sentence", fmt=fmt, theme=THEME, settings=SETTINGS, panel=full)
    assert track.events and "cover the terminal panel" in track.warnings[0]


def test_words_style_highlights_each_spoken_word_in_turn():
    cue = Cue(1.0, 2.0, "Hello {brave} world", ((1.0, 1.3), (1.4, 1.7), (1.75, 2.0)))
    track = build_track([cue], style="words", fmt=_fmt(1280, 720), theme=THEME, settings=SETTINGS, panel=None)
    assert [(e.start, e.end) for e in track.events] == [(100, 140), (140, 175), (175, None)]  # the last: held
    highlight = "{\\1c&HB0C94E&}"
    for event, word in zip(track.events, ["Hello", "\\{brave\\}", "world"]):
        assert f"{highlight}{word}" in event.text  # that word in the prompt colour, braces kept as text
        assert event.text.count(highlight) == 1


def test_a_cue_holds_until_the_next_and_the_last_until_the_scene_ends():
    cues = [Cue(0.5, 1.5, "One sentence."), Cue(3.0, 4.0, "Another one.")]
    track = build_track(cues, style="sentence", fmt=_fmt(1280, 720), theme=THEME, settings=SETTINGS, panel=None)
    assert [(e.start, e.end) for e in track.events] == [(50, 300), (300, None)]  # words on screen through pauses
    assert track.words() == [(50, 300), (300, None)]


def test_an_unknown_style_stops_the_script_with_the_setting_named(tmp_path, two_scenes):
    record = render_script(two_scenes, "tiny", compose_cfg(*FAST, "captions.burn=true", "captions.style=karaoke"),
                           RunLayout(tmp_path))
    assert record["status"] == "failed" and "captions.style='karaoke'" in record["error"]


def test_the_record_says_how_long_the_video_shows_words_to_read(tmp_path):
    """From what the layers drew: the typed lines of scene 1 (not its window's title), the captions held through
    the pauses, the title card."""
    import json

    shares = {}
    for name, overrides in {"plain": ("format.width=320", "format.height=180"),
                            "captioned": ("format.width=320", "format.height=180", "captions.burn=true"),
                            "titled": ("format.width=320", "format.height=180", "captions.burn=true",
                                       "assembly.title_card=true")}.items():
        render(tmp_path, name, *overrides)
        record = json.loads((tmp_path / name / f"{name}.json").read_text())
        words, total = record["words_on_screen"], record["duration"]
        assert 0 <= words["seconds"] <= total and words["share"] == round(words["seconds"] / total, 4)
        shares[name] = words["share"]
    assert shares["plain"] < 0.6 < shares["captioned"] <= shares["titled"]  # scene 2 has no terminal: captions fill it
    assert shares["titled"] > 0.9


@pytest.mark.parametrize("fmt_name", ["landscape_720p", "landscape_1080p", "portrait_1080", "square_1080"])
def test_the_first_scene_s_captions_the_title_card_and_the_panel_never_overlap(fmt_name):
    from renderer.stages import title
    from renderer.stages.captions import title_card

    cfg = compose_cfg(f"format={fmt_name}", "assembly.title_card=true", "captions.burn=true")
    fmt, theme, fractions = cfg.format, cfg.theme, cfg.assembly.panel
    panel, card = frame_layout(fmt.width, fmt.height, fractions).panel, title_card(fmt, fractions)
    assert card == title.band(fmt, fractions)  # where the title stage draws it
    for text in ("Short.", "A much longer line of narration that needs two lines or even three of them to fit."):
        track = build_track([Cue(0.0, 2.0, text)], style="sentence", fmt=fmt, theme=theme,
                            settings=cfg.captions, panel=fractions, card=card)
        assert track.boxes and not any(b.overlaps(card) or b.overlaps(panel) for b in track.boxes), fmt_name
    assert not card.overlaps(panel)


HELD_OUT = Path(__file__).with_name("lighthouse.txt")  # not a sample script: narration-heavy, one typed line


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr (apt-get install tesseract-ocr)")
@pytest.mark.parametrize("size", ["640x360", "360x640"], ids=["landscape", "portrait"])
def test_ocr_reads_each_scene_s_own_words_on_a_frame_of_it(tmp_path, size):
    """A script none of the layout was tuned on, its captions burnt word by word (and its title card on): one
    frame per scene, read by tesseract, carries words of that scene's narration or on-screen text."""
    import json

    from renderer.script import parse_file
    from tests.conftest import OPTIONS

    w, h = size.split("x")
    script = parse_file(HELD_OUT, options=OPTIONS)
    record = render_script(HELD_OUT, "keeper", compose_cfg(*FAST, f"format.width={w}", f"format.height={h}",
                                                           "captions.burn=true", "captions.style=words",
                                                           "assembly.title_card=true"), RunLayout(tmp_path))
    assert record["status"] == "ok", record["error"]
    mp4 = tmp_path / "keeper" / "keeper.mp4"
    spans = json.loads((tmp_path / "keeper" / "keeper.json").read_text())["timeline"]
    assert len(spans) == len(script.scenes) == 3
    for scene, span in zip(script.scenes, spans):
        png = tmp_path / f"scene{scene.index}.png"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{span['start'] + span['duration'] * 0.6:.2f}",
                        "-i", str(mp4), "-frames:v", "1", "-vf", "scale=iw*2:ih*2:flags=lanczos,format=gray",
                        str(png)], check=True)
        read = subprocess.run(["tesseract", str(png), "-", "--psm", "11"], capture_output=True, text=True,
                              check=True).stdout.lower()
        own = {w.strip(".,;:!?“”\"'").lower() for line in [*scene.narration, *scene.on_screen]
               for w in line.text.split()}
        found = {w for w in own if len(w) >= 4 and re.search(rf"\b{re.escape(w)}\b", read)}
        assert len(found) >= 2, (scene.index, sorted(own), read)
