"""The title card layer: placed beside the terminal panel in every format, burnt into the first scene only,
gone when its time is up."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from renderer.ops.files import RunLayout
from renderer.pipeline.render import render_script
from renderer.media.layout import frame_layout
from renderer.stages.title import band
from tests.conftest import CONF, TINY, compose_cfg

SCRIPT = """# The Long Night

*A story told in two scenes*

## Scene 1: Dusk [0:00]

*A dark harbour at dusk.*

**Narrator**: The lights came on one by one.

```
$ uptime
```

## Scene 2: Night [0:06]

*A black sea.*

**Narrator**: Then they went out.
"""

SIZE = ["format.width=320", "format.height=180"]


@pytest.mark.parametrize("fmt", ["landscape_720p", "portrait_1080", "square_1080"])
def test_the_card_never_covers_the_terminal_panel(fmt):
    f = OmegaConf.load(CONF / "format" / f"{fmt}.yaml")
    for fractions in (compose_cfg(f"format={fmt}").assembly.panel, OmegaConf.create({"y": 0.45, "h": 0.48})):
        where, panel = band(f, fractions), frame_layout(f.width, f.height, fractions).panel
        assert not where.overlaps(panel), (where, panel)
        assert 0 <= where.y and where.y + where.h <= f.height and where.h > 44 * 2


def test_without_room_beside_the_panel_the_card_is_centred():
    f = OmegaConf.load(CONF / "format" / "landscape_720p.yaml")
    full = compose_cfg("assembly=ui_only").assembly.panel  # the terminal fills the frame
    assert band(f, full).y == pytest.approx((720 - band(f, None).h) / 2)


def frame(video: Path, at: float) -> bytes:
    return subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{at}", "-i", str(video), "-frames:v", "1", "-f",
                           "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout


def difference(a: bytes, b: bytes) -> float:
    """Mean grey-level difference of two 320x180 frames over the rows of the card's band."""
    cfg = compose_cfg(*SIZE)
    where = band(cfg.format, cfg.assembly.panel)
    rows = slice(320 * round(where.y), 320 * round(where.y + where.h))
    a, b = a[rows], b[rows]
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def test_the_card_shows_over_the_first_scene_and_then_is_gone(tmp_path: Path):
    script = tmp_path / "night.md"
    script.write_text(SCRIPT, encoding="utf-8")
    videos = {}
    for card in ("false", "true"):
        cfg = compose_cfg(*TINY, *SIZE, "assembly=overlay", "voice=silent", f"assembly.title_card={card}",
                          "assembly.title_card_s=2.5", "cache.enabled=true", f"cache.dir={tmp_path / 'cache'}")
        record = render_script(script, "night", cfg, RunLayout(tmp_path / card))
        assert record["status"] == "ok", record["error"]
        videos[card] = (tmp_path / card / "night" / "night.mp4", record)
    plain, titled = videos["false"][0], videos["true"][0]
    assert difference(frame(plain, 1.2), frame(titled, 1.2)) > 6  # the card is there
    assert difference(frame(plain, 4.5), frame(titled, 4.5)) < 1  # and gone after 2.5 s
    assert difference(frame(plain, 7.0), frame(titled, 7.0)) < 1  # the second scene never had it
    reran = {s["name"] for s in videos["true"][1]["stages"] if s["status"] == "ok"}
    # scene 2 from the cache
    assert reran == {"title/0", "join", "mux", "thumbnails"} | {n for n in reran if n.startswith("segment/0.")}
    assert any(n.startswith("segment/0.") for n in reran)


def test_a_long_subtitle_is_set_smaller_to_fit_the_frame_never_cut():
    from renderer.stages.title import build_track

    cfg = compose_cfg("format=square_1080")
    subtitle = "Recovered AI Incident Log — quarantine capture, workstation OPS-7"
    track = build_track("HANDSHAKE", subtitle, duration_s=3, theme=cfg.theme, fmt=cfg.format, panel=cfg.assembly.panel)
    sizes = [int(e.text.split("\\fs", 1)[1].split("\\", 1)[0]) for e in track.events if e.style == "Term"]
    assert sizes[1] * 0.62 * len(subtitle) <= 0.9 * 1080 < 36 * 0.62 * len(subtitle)  # smaller than it would be
    assert sizes[0] == round(cfg.theme.font_size * 2 * 1.5)  # a short title keeps its size
