"""renderer.stages.terminal: cell widths, wrapping, the typing schedule and a golden frame through libass."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from renderer.config import FormatConfig, PanelConfig, TerminalConfig
from renderer.stages import terminal
from renderer.stages.terminal import CHAR_WIDTH_EM, build_track, cells, geometry, wrap

CONF = Path(__file__).resolve().parent.parent / "conf"
THEME = OmegaConf.load(CONF / "theme" / "dark.yaml")
FMT = FormatConfig("t", 640, 360, 25)
W, H = FMT.width, FMT.height


def track(lines, duration_s=10.0, *, always_show=False, timing=None):
    return build_track(lines, title="Test — scene", duration_s=duration_s, theme=THEME,
                       timing=timing or TerminalConfig(), fmt=FMT, panel=PanelConfig(), always_show=always_show)


def commands(n: int, text: str = "echo abcdefghij") -> list[dict]:
    return [{"kind": "command", "text": f"{text} {i:04d}", "prompt": "$"} for i in range(n)]


def outputs(n: int) -> list[dict]:
    return [{"kind": "output", "text": f"line-{i:02d}", "prompt": ""} for i in range(n)]


# --------------------------------------------------------------------------- cells / wrap


def test_cells_counts_wide_characters_twice_and_combining_marks_not_at_all():
    assert cells("a") == 1
    assert cells("$") == 1
    assert cells("日") == 2
    assert cells("한") == 2
    assert cells("Ａ") == 2  # fullwidth
    assert cells("\u0301") == 0  # combining acute


def test_wrap_breaks_at_cols_cells():
    assert wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    assert wrap("", 10) == [""]
    assert wrap("short", 10) == ["short"]


def test_wrap_counts_wide_characters_as_two_cells():
    rows = wrap("日本語のテキスト", 6)
    assert rows == ["日本語", "のテキ", "スト"]
    assert wrap("a日本", 4) == ["a日", "本"]  # a wide char never straddles the edge
    for row in wrap("漢字とlatinが混ざる文章です" * 3, 9):
        assert sum(cells(c) for c in row) <= 9


def test_wrap_first_indent_shortens_only_the_first_row():
    assert wrap("abcdefghij", 4, first_indent=2) == ["ab", "cdef", "ghij"]
    assert "".join(wrap("abcdefghij", 4, first_indent=2)) == "abcdefghij"


def test_wrap_keeps_combining_marks_with_their_letter():
    rows = wrap("e\u0301" * 5, 5)
    assert rows == ["e\u0301" * 5]


# --------------------------------------------------------------------------- the schedule


def test_every_event_ends_after_it_starts():
    for t in (track(commands(30), 5.0), track(outputs(25) + commands(3), 20.0), track([], 3.0, always_show=True)):
        assert t.events
        for e in t.events:
            assert e.end is None or e.end > e.start, e
            assert e.start >= 0


def test_typing_cost_grows_linearly_with_text():
    """Ten times the lines (with time to type them) gives roughly ten times the events, not a hundred."""
    per_line_s = 1.4  # one command of ~20 chars at 50 ms/char plus its pause fits in this
    small = track(commands(10), 10 * per_line_s + 1)
    large = track(commands(100), 100 * per_line_s + 1)
    assert small.speed_scale == large.speed_scale == 1.0
    ratio = len(large.events) / len(small.events)
    assert 5 <= ratio <= 15, ratio


def test_each_typed_character_gets_its_own_step():
    text = "abcdefghij"
    t = track([{"kind": "command", "text": text, "prompt": "$"}], 10.0)
    shown = set()
    for e in t.events:
        m = re.search(r"\$ \{[^}]*\}(\w*)", e.text)
        if m:
            shown.add(m.group(1))
    assert shown == {text[:k] for k in range(len(text) + 1)}


def test_speed_scale_is_one_when_text_fits_and_above_one_when_it_cannot():
    fits = track(commands(2), 10.0)
    assert fits.speed_scale == 1.0
    crowded = track(commands(40), 4.0)
    assert crowded.speed_scale > 1.0
    # sped up to fit: every character is typed before the scene ends
    fully_typed = min(e.start for e in crowded.events if "echo abcdefghij 0039" in e.text)
    assert fully_typed <= 400


def test_empty_scene_has_no_events_unless_always_show():
    assert track([], 5.0).events == []
    shown = track([], 5.0, always_show=True)
    assert shown.events
    assert any(terminal.CURSOR in e.text for e in shown.events)  # an idle prompt with its cursor
    assert any("\\p1" in e.text for e in shown.events)  # the panel itself


def test_scrolling_removes_early_rows_and_moves_rows_up():
    t = track(outputs(20), 30.0)
    assert t.rows < 20

    def events_of(label):
        return [e for e in t.events if label in e.text]

    first, last = events_of("line-00"), events_of("line-19")
    assert first and last
    assert all(e.end is not None for e in first)  # scrolled off: ends before the scene does
    assert max(e.end for e in first) <= min(e.start for e in last)
    assert any(e.end is None for e in last)  # still on screen at the scene's end
    ys = sorted({int(m.group(1)) for e in events_of("line-10") for m in [re.search(r"\\pos\(\d+,(\d+)\)", e.text)]})
    assert len(ys) > 1  # line 10 moved up as later lines arrived


def test_track_reports_grid_from_geometry():
    t = track(commands(1))
    geo = geometry(THEME, FMT, PanelConfig())
    assert (t.rows, t.cols) == (geo.rows, geo.cols)
    assert t.cols == int((geo.w - 2 * geo.pad) // (geo.font_size * CHAR_WIDTH_EM))
    assert f"PlayResX: {W}" in t.header and f"PlayResY: {H}" in t.header


def test_long_command_wraps_into_rows_of_at_most_cols():
    t = track([{"kind": "command", "text": "x" * 150, "prompt": "$"}], 20.0)
    finals = {}
    for e in t.events:
        m = re.search(r"\\pos\((\d+),(\d+)\).*?\}(x+)", e.text)
        if m:
            finals[e.start] = m.group(3)
    longest = max(len(v) for v in finals.values())
    assert longest == t.cols  # continuation rows use the full width
    assert longest <= t.cols


# --------------------------------------------------------------------------- golden frames through libass

BASE = (0x20, 0x40, 0x60)
TYPED = "abcdefghijklmnopqrstuvwxyz"


def hex_rgb(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))


def burn(tmp_path: Path, t, duration_s: float, times: list[float]) -> list[bytes]:
    """Burn the track onto a flat BASE colour; return raw RGB frames at ``times`` (seconds, on frame times)."""
    end_cs = round(duration_s * 100)
    lines = [e.line() for e in (ev.shifted(0, end_cs) for ev in t.events) if e]
    (tmp_path / "t.ass").write_text(t.header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    frames = [round(s * FMT.fps) for s in times]
    select = "+".join(f"eq(n\\,{n})" for n in frames)
    colour = "0x%02x%02x%02x" % BASE
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi",
         "-i", f"color=c={colour}:s={W}x{H}:r={FMT.fps}:d={duration_s},format=rgb24",
         "-vf", f"ass=t.ass,select='{select}'", "-vsync", "0",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        cwd=tmp_path, capture_output=True, timeout=60, check=True)
    size = W * H * 3
    assert len(result.stdout) == size * len(frames), result.stderr
    return [result.stdout[i * size:(i + 1) * size] for i in range(len(frames))]


def pixel(frame: bytes, x: int, y: int) -> tuple[int, int, int]:
    i = (y * W + x) * 3
    return frame[i], frame[i + 1], frame[i + 2]


def ink_columns(frame: bytes, y0: int, y1: int, x0: int, x1: int, threshold: int = 110) -> list[int]:
    """Columns in the box holding a bright (text or cursor) pixel."""
    return [x for x in range(x0, x1) if any(max(pixel(frame, x, y)) > threshold for y in range(y0, y1))]


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """One command typed on the dark theme; frames while typing (11 and 19 chars), then blink on / off."""
    t = track([{"kind": "command", "text": TYPED, "prompt": "$"}], 4.0)
    timing = TerminalConfig()
    # char k (1-based) shows at start_delay + k * 50 ms: 11 chars at 0.96 s, 19 chars at 1.36 s;
    # typing ends at 1.70 s, then the cursor blinks every 0.53 s: on at 2.00 s, off at 2.40 s
    assert timing.start_delay_ms == 400 and timing.command_ms_per_char == 50 and timing.cursor_blink_ms == 530
    times = [0.96, 1.36, 2.00, 2.40]
    frames = burn(tmp_path_factory.mktemp("golden"), t, 4.0, times)
    return dict(zip(times, frames))


def test_golden_panel_background_is_blended_over_the_visual(golden):
    frame = golden[0.96]
    geo = geometry(THEME, FMT, PanelConfig())
    opacity = THEME.panel_opacity
    bg = hex_rgb(THEME.background)
    expected = tuple(b * opacity + base * (1 - opacity) for b, base in zip(bg, BASE))
    inside = (round(geo.x + geo.w * 0.75), round(geo.y + geo.h * 0.8))  # panel body, away from text rows
    assert all(abs(got - want) <= 3 for got, want in zip(pixel(frame, *inside), expected)), pixel(frame, *inside)
    for outside in ((W - 20, 20), (round(geo.x + geo.w) + 10, round(geo.y + geo.h / 2)), (10, H - 5)):
        assert pixel(frame, *outside) == BASE, outside
    title = (round(geo.x + geo.w * 0.9), round(geo.y + geo.chrome_h / 2))
    assert all(abs(a - b) <= 3 for a, b in zip(pixel(frame, *title), hex_rgb(THEME.title_bar)))


def text_row_box(geo):
    x0, y0 = geo.row_xy(0)
    return x0, y0, y0 + round(geo.line_h)


def test_golden_typed_text_is_drawn_up_to_the_cursor_and_no_further(golden):
    geo = geometry(THEME, FMT, PanelConfig())
    cw = geo.font_size * CHAR_WIDTH_EM
    x0, y0, y1 = text_row_box(geo)
    right_edge = round(geo.x + geo.w)
    for when, typed in ((0.96, 11), (1.36, 19)):
        ink = ink_columns(golden[when], y0, y1, x0 - 2, right_edge)
        assert ink, f"no text at {when}s"
        cells_used = 2 + typed + 1  # "$ " + typed characters + cursor block
        # the typed characters (cells 2 .. 2+typed) are inked ...
        typed_span = [x for x in ink if x0 + 2 * cw <= x < x0 + (2 + typed) * cw]
        assert len(typed_span) > typed * cw * 0.4, (when, typed_span)
        # ... the cursor fills the cell after them, and nothing lies beyond it
        assert max(ink) >= x0 + (cells_used - 0.5) * cw - 1, (when, max(ink))
        assert max(ink) <= x0 + cells_used * cw + 2, (when, max(ink))


def test_golden_typed_text_is_foreground_coloured(golden):
    geo = geometry(THEME, FMT, PanelConfig())
    cw = geo.font_size * CHAR_WIDTH_EM
    x0, y0, y1 = text_row_box(geo)
    fg, prompt = hex_rgb(THEME.foreground), hex_rgb(THEME.prompt)
    frame = golden[1.36]
    typed_box = [pixel(frame, x, y) for x in range(round(x0 + 2 * cw), round(x0 + 20 * cw)) for y in range(y0, y1)]
    assert any(all(abs(c - f) <= 12 for c, f in zip(p, fg)) for p in typed_box)  # full-strength glyph pixels
    # the thin "$" never reaches full strength at this size: check its hue (teal), not its exact value
    prompt_box = [pixel(frame, x, y) for x in range(x0, round(x0 + cw)) for y in range(y0, y1)]
    r, g, b = max(prompt_box, key=sum)
    assert g - r > 0.5 * (prompt[1] - prompt[0]) and b - r > 0.5 * (prompt[2] - prompt[0]), (r, g, b)
    assert max(typed_box, key=sum)[1] - max(typed_box, key=sum)[0] < 10  # foreground is grey, not teal


def test_golden_cursor_blinks_after_typing(golden):
    geo = geometry(THEME, FMT, PanelConfig())
    cw = geo.font_size * CHAR_WIDTH_EM
    x0, y0, y1 = text_row_box(geo)
    done = 2 + len(TYPED)
    on = ink_columns(golden[2.00], y0, y1, x0 - 2, round(geo.x + geo.w))
    off = ink_columns(golden[2.40], y0, y1, x0 - 2, round(geo.x + geo.w))
    assert max(on) >= x0 + (done + 0.5) * cw  # cursor block after the full command
    assert max(off) <= x0 + done * cw + 2  # blinked off: only the text remains
    assert max(off) >= x0 + (done - 1) * cw  # ... all of it
