"""renderer.stages.title: the script's title card over the first scene, read back by OCR."""

from __future__ import annotations

import shutil

import pytest
from omegaconf import OmegaConf

from renderer.stages.title import build
from tests.test_caption_layer import frame, render

THEME = OmegaConf.create({"font_family": "DejaVu Sans Mono", "foreground": "#e0e0e0", "background": "#1e1e1e",
                          "prompt": "#4ec9b0"})
SETTINGS = OmegaConf.create({"seconds": 4.0, "font_size": 64, "box_opacity": 0.6})


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr (apt-get install tesseract-ocr)")
def test_the_title_card_shows_title_and_subtitle_then_goes(tmp_path):
    pytesseract = pytest.importorskip("pytesseract")
    from PIL import Image

    mp4 = render(tmp_path, "titled", "format.width=960", "format.height=540", "assembly=visual_only",
                 "title.card=true", "title.seconds=1.5")
    during = pytesseract.image_to_string(Image.fromarray(frame(mp4, 0.8))).lower()
    after = pytesseract.image_to_string(Image.fromarray(frame(mp4, 2.5))).lower()
    assert "tiny" in during and "test script" in during, during
    assert "tiny" not in after and "test script" not in after, after


def test_the_card_lasts_at_most_the_first_scene_and_escapes_its_text():
    fmt = OmegaConf.create({"width": 1280, "height": 720})
    card = build("{Big} \\N Title", "sub", seconds=4.0, scene_s=2.5, fmt=fmt, theme=THEME, settings=SETTINGS)
    veil, text = card.events
    assert (veil.start, veil.end) == (0, 250) and (text.start, text.end) == (0, 250)
    assert "\\{Big\\}" in text.text and "\\\u2060N" in text.text and text.text.endswith("sub")
    assert "\\p1" in veil.text and "m 0 0 l 1280 0 1280 720 0 720" in veil.text  # the whole frame veiled
    assert build("", "", seconds=4.0, scene_s=2.5, fmt=fmt, theme=THEME, settings=SETTINGS).events == []
