"""renderer.stages.terminal: cell widths, wrapping, the typing schedule, and golden frames through libass."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from renderer.config import FormatConfig, PanelConfig, TerminalConfig
from renderer.media import ass
from renderer.stages import terminal
from renderer.stages.terminal import (
    CHAR_WIDTH_EM,
    CURSOR,
    build_track,
    cells,
    display_text,
    expand_tabs,
    geometry,
    truncate,
    wrap,
)

CONF = Path(__file__).resolve().parent.parent / "conf"
THEME = OmegaConf.load(CONF / "theme" / "dark.yaml")
FMT = FormatConfig("t", 640, 360, 25)
W, H = FMT.width, FMT.height


def track(lines, duration_s=10.0, *, always_show=False, timing=None, theme=THEME, panel=None):
    return build_track(lines, title="Test — scene", duration_s=duration_s, theme=theme,
                       timing=timing or TerminalConfig(), fmt=FMT, panel=panel or PanelConfig(),
                       always_show=always_show)


def cmd(text: str, prompt: str = "$") -> dict:
    return {"kind": "command", "text": text, "prompt": prompt}


def out(text: str) -> dict:
    return {"kind": "output", "text": text, "prompt": ""}


def comment(text: str) -> dict:
    return {"kind": "comment", "text": text, "prompt": ""}


OVERRIDE_BLOCK = re.compile(r"(?<!\\)\{[^}]*\}")


def visible(event_text: str) -> str:
    """The characters libass draws for an event's text: override blocks dropped, escapes undone."""
    text = OVERRIDE_BLOCK.sub("", event_text)
    text = text.replace("\\{", "{").replace("\\}", "}").replace(ass.WORD_JOINER, "")
    return text.replace(ass.NO_BREAK_SPACE, " ")


def row_y(event) -> int:
    return int(re.search(r"\\pos\(\d+,(\d+)\)", event.text).group(1))


def screen_at(t, cs: int) -> list[str]:
    """The terminal's rows (top to bottom) at ``cs`` centiseconds, the cursor shown as CURSOR."""
    active = [e for e in t.events if e.layer == 2 and e.start <= cs and (e.end is None or cs < e.end)]
    return [visible(e.text) for e in sorted(active, key=row_y)]


def commands(n: int, text: str = "echo abcdefghij") -> list[dict]:
    return [{"kind": "command", "text": f"{text} {i:04d}", "prompt": "$"} for i in range(n)]


def outputs(n: int) -> list[dict]:
    return [{"kind": "output", "text": f"line-{i:02d}", "prompt": ""} for i in range(n)]


# --------------------------------------------------------------------------- text on the grid


def test_cells_counts_wide_characters_twice_and_combining_marks_not_at_all():
    """As a terminal counts them (wcwidth)."""
    assert cells("a") == 1
    assert cells("$") == 1
    assert cells("日") == 2
    assert cells("한") == 2
    assert cells("Ａ") == 2  # fullwidth
    assert cells("\u0301") == 0  # combining acute
    assert cells("\u200d") == 0  # zero-width joiner
    assert cells("ب") == 1
    assert cells("\x07") == 0  # a control character shows nothing
    assert sum(cells(c) for c in "\u1112\u1161\u11ab") == 2  # 한 in conjoining jamo: one wide syllable
    assert cells("\U0001fae8") == 2  # an emoji newer than Python's own Unicode tables (15.0)


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


def test_tabs_expand_to_the_next_tab_stop_counted_from_where_the_text_starts():
    assert expand_tabs("a\tb") == "a" + " " * 7 + "b"
    assert expand_tabs("\tx") == " " * 8 + "x"
    assert expand_tabs("abcdefgh\tx") == "abcdefgh" + " " * 8 + "x"
    assert expand_tabs("x\ty", start_col=2) == "x" + " " * 5 + "y"  # after a "$ " prompt
    assert expand_tabs("日\tx") == "日" + " " * 6 + "x"  # the wide char takes two cells


def test_display_text_drops_control_characters_and_keeps_everything_else():
    assert display_text("\x1b[31mred\x1b[0m\x07\x00") == "[31mred[0m"
    assert display_text("a\u202eb") == "ab"  # a bidi override would reorder the row
    assert display_text("line\nbreak\r") == "line break"
    hostile = "{\\b1} %{pts} \\N ' \" ; , [] 😀 日本 مرحبا"
    assert display_text(hostile) == hostile


def test_truncate_by_cells_with_an_ellipsis():
    assert truncate("short", 10) == "short"
    assert truncate("abcdefghij", 6) == "abcde…"
    assert truncate("日本語のテキスト", 7) == "日本語…"


# --------------------------------------------------------------------------- the schedule


def test_every_event_ends_after_it_starts():
    for t in (track(commands(30), 5.0), track(outputs(25) + commands(3), 20.0), track([], 3.0, always_show=True),
              track([cmd("ls"), out("a"), comment("# note"), out("b"), cmd("x")], 6.0)):
        assert t.events
        for e in t.events:
            assert e.end is None or e.end > e.start, e
            assert e.start >= 0


def test_typing_cost_grows_linearly_with_text():
    """Ten times the lines (with time to type them) gives roughly ten times the events, not a hundred."""
    per_line_s = 1.7  # one command of ~20 chars at 50 ms/char, the prompt coming back and a pause fit in this
    small = track(commands(10), 10 * per_line_s + 1)
    large = track(commands(100), 100 * per_line_s + 1)
    assert small.speed_scale == large.speed_scale == 1.0
    ratio = len(large.events) / len(small.events)
    assert 5 <= ratio <= 15, ratio


def test_each_typed_character_gets_its_own_step():
    text = "abcdefghij"
    t = track([cmd(text)], 10.0)
    shown = {visible(e.text).removeprefix("$ ").rstrip(CURSOR) for e in t.events if e.layer == 2}
    assert shown == {text[:k] for k in range(len(text) + 1)}


def test_characters_typed_at_a_given_time():
    """Typing starts after start_delay_ms; the k-th character shows k * command_ms_per_char later."""
    timing = TerminalConfig()
    t = track([cmd("hello world")], 5.0)
    for k in (0, 1, 5, 11):
        cs = (timing.start_delay_ms + k * timing.command_ms_per_char) // 10
        assert screen_at(t, cs) == ["$ " + "hello world"[:k] + CURSOR], k
    assert screen_at(t, (timing.start_delay_ms + 6 * timing.command_ms_per_char) // 10 - 1) == ["$ hello" + CURSOR]
    assert screen_at(t, timing.start_delay_ms // 10 - 1) == []  # nothing before the delay


def test_comments_type_faster_than_commands_and_output_appears_at_once():
    timing = TerminalConfig()
    t = track([comment("# abcdefghij"), out("all of this at once")], 5.0)
    typed_cs = (timing.start_delay_ms + 12 * timing.comment_ms_per_char) // 10
    assert screen_at(t, typed_cs) == ["# abcdefghij" + CURSOR]
    assert screen_at(t, typed_cs - 3) == ["# abcdefghi" + CURSOR]  # 30 ms per character
    shown_cs = typed_cs + timing.line_pause_ms // 10 + timing.output_pause_ms // 10
    assert screen_at(t, shown_cs - 1)[1:] == []
    assert screen_at(t, shown_cs) == ["# abcdefghij", "all of this at once" + CURSOR]


def test_a_fresh_prompt_waits_after_a_commands_output_and_takes_the_next_command():
    timing = TerminalConfig()
    t = track([cmd("ls"), out("a.txt"), out("b.txt"), cmd("cat a.txt")], 6.0)
    typed = timing.start_delay_ms + 2 * timing.command_ms_per_char
    first_output = typed + timing.line_pause_ms + timing.output_pause_ms
    prompt_back = first_output + timing.output_pause_ms  # with the last output line
    assert screen_at(t, prompt_back // 10 - 1) == ["$ ls", "a.txt" + CURSOR]
    assert screen_at(t, prompt_back // 10) == ["$ ls", "a.txt", "b.txt", "$ " + CURSOR]
    typing = prompt_back + timing.line_pause_ms
    assert screen_at(t, typing // 10 + 15)[3] == "$ cat" + CURSOR  # typed into the waiting prompt's row
    assert len(screen_at(t, 599)) == 4  # the last command has no output: no prompt after it
    assert screen_at(t, 599)[3].startswith("$ cat a.txt")


def test_a_prompt_follows_a_silent_command_and_the_last_commands_output():
    timing = TerminalConfig()
    t = track([cmd("cd /tmp", ">"), cmd("ls"), out("x")], 8.0)
    typed = timing.start_delay_ms + 7 * timing.command_ms_per_char
    back = typed + timing.line_pause_ms
    assert screen_at(t, back // 10) == ["> cd /tmp", "$ " + CURSOR]  # the next command's prompt symbol
    end = screen_at(t, 790)
    assert end[:3] == ["> cd /tmp", "$ ls", "x"]
    assert end[3] in ("$ ", "$ " + CURSOR)  # waiting for more, cursor blinking


def test_the_cursor_blinks_at_a_waiting_prompt_and_is_solid_while_typing():
    timing = TerminalConfig(line_pause_ms=2000)
    t = track([cmd("ls"), out("x"), cmd("pwd")], 10.0, timing=timing)
    prompt_back = (timing.start_delay_ms + 2 * timing.command_ms_per_char + timing.line_pause_ms
                   + timing.output_pause_ms) // 10  # with the output line
    blink = timing.cursor_blink_ms // 10
    assert screen_at(t, prompt_back + 1)[-1] == "$ " + CURSOR
    assert screen_at(t, prompt_back + blink + 1)[-1] == "$ "
    assert screen_at(t, prompt_back + 2 * blink + 1)[-1] == "$ " + CURSOR
    typing = prompt_back + timing.line_pause_ms // 10
    for cs in range(typing, typing + 3 * timing.command_ms_per_char // 10):
        assert screen_at(t, cs)[-1].endswith(CURSOR), cs


def test_a_comment_after_a_command_is_typed_at_the_prompt():
    t = track([cmd("make"), out("done"), comment("# now test")], 8.0)
    assert [row.rstrip(CURSOR) for row in screen_at(t, 790)] == ["$ make", "done", "$ # now test"]


def test_speed_scale_is_one_when_text_fits_and_above_one_when_it_cannot():
    fits = track(commands(2), 10.0)
    assert fits.speed_scale == 1.0
    crowded = track(commands(40), 4.0)
    assert crowded.speed_scale > 1.0
    # sped up to fit: every character is typed before the scene ends
    last = "$ echo abcdefghij 0039"
    fully_typed = min(e.start for e in crowded.events if visible(e.text).startswith(last))
    assert fully_typed <= 400 - terminal.END_RESERVE_MS // 10


def test_speed_scale_is_how_much_faster_than_configured():
    timing = TerminalConfig()
    lines = [cmd("x" * 100)]
    needed_s = 100 * timing.command_ms_per_char / 1000
    room_s = needed_s / 2  # half the time it needs
    t = track(lines, room_s + (timing.start_delay_ms + terminal.END_RESERVE_MS) / 1000)
    assert t.speed_scale == pytest.approx(2.0, rel=0.01)


def test_empty_scene_has_no_events_unless_always_show():
    assert track([], 5.0).events == []
    shown = track([], 5.0, always_show=True)
    assert shown.events
    assert any(CURSOR in e.text for e in shown.events)  # an idle prompt with its cursor
    assert any("\\p1" in e.text for e in shown.events)  # the window chrome


def test_terminal_only_frame_draws_no_panel_body():
    """On its own background (ui_only) a panel body of the same colour would change nothing but cost a
    full-frame blend per frame: it is left out; over a visual (overlay) it is drawn."""
    def panel_bodies(t):
        return [e for e in t.events if e.layer == 0 and ass.fill(THEME.background, THEME.panel_opacity) in e.text]

    lines = [{"kind": "command", "text": "ls", "prompt": "$"}]
    assert len(panel_bodies(track(lines, 5.0))) == 1
    assert panel_bodies(track(lines, 5.0, always_show=True)) == []


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
    ys = {row_y(e) for e in events_of("line-10")}
    assert len(ys) > 1  # line 10 moved up as later lines arrived
    final = screen_at(t, 2999)
    assert len(final) == t.rows and final[-1] == "line-19" + CURSOR or final[-1] == "line-19"


def test_track_reports_grid_from_geometry():
    t = track(commands(1))
    geo = geometry(THEME, FMT, PanelConfig())
    assert (t.rows, t.cols) == (geo.rows, geo.cols)
    assert t.cols == int((geo.w - 2 * geo.pad) // (geo.font_size * CHAR_WIDTH_EM))
    assert f"PlayResX: {W}" in t.header and f"PlayResY: {H}" in t.header


def test_long_command_wraps_into_rows_of_at_most_cols():
    t = track([cmd("x" * 150)], 20.0)
    rows = [row.rstrip(CURSOR) for row in screen_at(t, 1999)]
    assert rows[0] == "$ " + "x" * (t.cols - 2)
    assert all(len(row) <= t.cols for row in rows)
    assert "".join(rows).removeprefix("$ ") == "x" * 150


def test_title_is_escaped_and_truncated_to_the_bar():
    title = "{\\b1}LOG — " + "x" * 200
    t = build_track([cmd("ls")], title=title, duration_s=3, theme=THEME, timing=TerminalConfig(), fmt=FMT,
                    panel=PanelConfig(), always_show=False)
    label = [visible(e.text) for e in t.events if e.layer == 1 and "\\an8" in e.text]
    assert len(label) == 1
    assert label[0].startswith("{\\b1}LOG — x") and label[0].endswith("…") and len(label[0]) < 80


HOSTILE = [
    "quotes 'single' \"double\" `back`",
    "colons a:b::c, percent 100% %{pts} %d",
    "backslashes C:\\Users\\x \\N \\n \\h \\\\",
    "braces {\\b1}bold?{\\i1} {} [] [x]",
    "semicolons; commas, = & | > < $HOME",
    "tab\tseparated\tcolumns",
    "    indented four spaces, trailing   ",
    "emoji 😀 ✔ ★",
    "CJK 日本語のテキスト 漢字",
    "Arabic مرحبا بالعالم",
    "very long " + "0123456789" * 12,
]


def test_hostile_text_comes_out_verbatim_on_the_grid():
    lines = [out(text) for text in HOSTILE] + [cmd(HOSTILE[3]), cmd(HOSTILE[2])]
    panel = PanelConfig(x=0, y=0, w=1, h=1)
    t = track(lines, 60.0, panel=panel, timing=TerminalConfig(output_pause_ms=10))
    everything: list[str] = []
    for cs in range(0, 6000, 5):  # collect every row ever shown, in order, fully drawn
        for row in screen_at(t, cs):
            if row not in everything:
                everything.append(row)
    finals = "\n".join(everything)
    # each event stays one Dialogue line of the file; its text is the last of the ten fields
    written = ass.document(t.header, [e.shifted(0, 10**6) for e in t.events])
    dialogues = [line for line in written.split("\n") if line.startswith("Dialogue:")]
    assert len(dialogues) == len(t.events)
    for line, e in zip(dialogues, t.events):
        assert "\r" not in line and line.split(",", 9)[9] == e.text
    for text in HOSTILE:
        expected = expand_tabs(text) if "\t" in text else text
        rows = wrap(expected, t.cols)
        for row in rows:
            assert row in finals, (row, text)


# --------------------------------------------------------------------------- golden frames through libass

BASE = (0x20, 0x40, 0x60)
TYPED = "abcdefghijklmnopqrstuvwxyz"


def hex_rgb(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))


def burn(tmp_path: Path, t, duration_s: float, times: list[float]) -> list[bytes]:
    """Burn the track onto a flat BASE colour; return raw RGB frames at ``times`` (seconds, on frame times)."""
    end_cs = round(duration_s * 100)
    ass.write(tmp_path / "t.ass", t.header, [e for e in (ev.shifted(0, end_cs) for ev in t.events) if e])
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
    beyond_shadow = round(geo.x + geo.w + 4 * geo.shadow) + 2
    for outside in ((W - 20, 20), (beyond_shadow, round(geo.y + geo.h / 2)), (10, H - 5)):
        assert pixel(frame, *outside) == BASE, outside
    # a soft shadow falls right of and below the panel, darker next to it than further off
    mid_y, mid_x = round(geo.y + geo.h / 2), round(geo.x + geo.w / 2)
    right = [sum(pixel(frame, round(geo.x + geo.w + d), mid_y)) for d in (geo.shadow, 3 * geo.shadow)]
    below = [sum(pixel(frame, mid_x, round(geo.y + geo.h + d))) for d in (geo.shadow, 3 * geo.shadow)]
    for near, far in (right, below):
        assert near < far - 10 and far <= sum(BASE), (near, far)
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


def test_golden_fresh_prompt_after_output_holds_the_cursor(tmp_path):
    """After `ls` and its output, a new "$ " row waits with the cursor; the command row lost its cursor."""
    t = track([cmd("ls"), out("abc")], 3.0)
    # typed at 0.5 s, Enter pause 0.35 s, output pause 0.25 s: output and prompt at 1.10 s, cursor on until 1.63 s
    (frame,) = burn(tmp_path, t, 3.0, [1.2])
    geo = geometry(THEME, FMT, PanelConfig())
    cw = geo.font_size * CHAR_WIDTH_EM
    right = round(geo.x + geo.w)
    spans = []
    for slot in range(4):
        x0, y0 = geo.row_xy(slot)
        spans.append(ink_columns(frame, y0, y0 + round(geo.line_h), x0 - 2, right))
    x0 = geo.row_xy(0)[0]
    assert max(spans[0]) <= x0 + 4 * cw + 2  # "$ ls", no cursor after it
    assert max(spans[1]) <= x0 + 3 * cw + 2  # "abc"
    assert min(spans[2]) < x0 + cw  # the prompt symbol ...
    assert x0 + 2.5 * cw - 1 <= max(spans[2]) <= x0 + 3 * cw + 2  # ... and the cursor block in cell 2
    assert spans[3] == []  # nothing below


@pytest.mark.parametrize("theme_name", ["light", "matrix", "hacker"])
def test_golden_theme_colours(tmp_path, theme_name):
    """Panel, title bar, prompt and text come out in the theme's colours."""
    theme = OmegaConf.load(CONF / "theme" / f"{theme_name}.yaml")
    t = track([cmd("ls"), out("\u2588\u2588\u2588\u2588 full blocks")], 2.0, theme=theme)
    (frame,) = burn(tmp_path, t, 2.0, [1.5])
    geo = geometry(theme, FMT, PanelConfig())

    def near(got, want, tol=4):
        return all(abs(a - b) <= tol for a, b in zip(got, want))

    bg = hex_rgb(theme.background)
    body = tuple(b * theme.panel_opacity + base * (1 - theme.panel_opacity) for b, base in zip(bg, BASE))
    assert near(pixel(frame, round(geo.x + geo.w * 0.75), round(geo.y + geo.h * 0.8)), body)
    assert near(pixel(frame, round(geo.x + geo.w * 0.9), round(geo.y + geo.chrome_h / 2)), hex_rgb(theme.title_bar))
    x0, y0 = geo.row_xy(1)
    cw = geo.font_size * CHAR_WIDTH_EM
    block = pixel(frame, round(x0 + 1.5 * cw), round(y0 + geo.line_h * 0.5))  # inside the first full block
    assert near(block, hex_rgb(terminal.readable_theme(theme, theme.panel_opacity).foreground), tol=8), block
    x0, y0 = geo.row_xy(2)  # the fresh prompt: the cursor block in cell 2, in the cursor colour
    cursor = pixel(frame, round(x0 + 2.5 * cw), round(y0 + geo.line_h * 0.5))
    assert near(cursor, hex_rgb(theme.cursor), tol=8), cursor


def test_golden_hostile_text_renders_with_ink_on_every_row(tmp_path):
    """Every hostile line renders (libass does not choke on any of it) and puts ink where its characters are."""
    panel = PanelConfig(x=0, y=0, w=1, h=1)
    lines = [out(text) for text in HOSTILE] + [cmd(HOSTILE[3])]
    t = track(lines, 3.0, panel=panel, timing=TerminalConfig(output_pause_ms=0))
    (frame,) = burn(tmp_path, t, 3.0, [2.8])
    geo = geometry(THEME, FMT, panel)
    cw = geo.font_size * CHAR_WIDTH_EM
    rows = [r for text in HOSTILE for r in wrap(display_text(text), t.cols)]
    rows += wrap(display_text(HOSTILE[3], 2), t.cols, first_indent=2)
    assert len(rows) < t.rows  # all on screen at once
    for slot, text in enumerate(rows):
        x0, y0 = geo.row_xy(slot)
        ink = ink_columns(frame, y0, y0 + round(geo.line_h), x0 - 2, W)
        assert ink, (slot, text)
        if text.isascii():
            prefix = 2 if slot == len(rows) - 1 else 0  # "$ " before the typed command
            first, last = len(text) - len(text.lstrip()), len(text.rstrip()) + prefix
            if not prefix:
                assert min(ink) >= x0 + first * cw - 2, (text, min(ink))  # leading spaces kept
            assert x0 + (last - 1) * cw <= max(ink) <= x0 + (last + 1) * cw + 2, (text, max(ink))  # nothing lost


# --------------------------------------------------------------------------- ANSI colour codes in on-screen text

ESC = "\x1b"


def test_ansi_colour_codes_colour_their_characters_in_the_theme_palette():
    t = track([cmd(f"run {ESC}[1mtests"), out(f"{ESC}[31mFAIL{ESC}[0m one {ESC}[32mPASS{ESC}[39m two")], 4.0)
    assert screen_at(t, 390)[:2] == ["$ run tests", "FAIL one PASS two"]  # the codes themselves show nothing
    final = [e.text for e in t.events if e.layer == 2 and visible(e.text).startswith("FAIL")][-1]
    shown = terminal.readable_theme(THEME, THEME.panel_opacity)
    red, green, fg = (ass.tag_colour(shown[c]) for c in ("red", "green", "foreground"))
    assert f"{red}F" in final and f"{fg}{ass.NO_BREAK_SPACE}one" in final and f"{green}P" in final
    assert final.count(red) == 1  # one tag where the colour changes, not one per character


def test_ansi_codes_split_across_wrapped_rows_keep_their_colour():
    t = track([out(f"{ESC}[34m" + "b" * 120)], 4.0)
    rows = [e.text for e in t.events if e.layer == 2]
    assert len({row_y(e) for e in t.events if e.layer == 2}) >= 2  # it wrapped
    blue = terminal.readable_theme(THEME, THEME.panel_opacity).blue
    assert all(ass.tag_colour(blue) in text for text in rows)


def test_golden_ansi_colours_are_the_themes(tmp_path):
    theme = OmegaConf.load(CONF / "theme" / "dracula.yaml")
    block = "\u2588" * 4
    t = track([out(f"{ESC}[31m{block}{ESC}[0m{block}{ESC}[1;32m{block}")], 2.0, theme=theme)
    (frame,) = burn(tmp_path, t, 2.0, [1.5])
    geo = geometry(theme, FMT, PanelConfig())
    x0, y0 = geo.row_xy(0)
    cw = geo.font_size * CHAR_WIDTH_EM
    y = round(y0 + geo.line_h * 0.5)
    shown = terminal.readable_theme(theme, theme.panel_opacity)  # the theme's, as readable on the panel
    for cell, colour in ((1.5, shown.red), (5.5, shown.foreground), (9.5, shown.brightGreen)):
        got = pixel(frame, round(x0 + cell * cw), y)
        assert all(abs(a - b) <= 8 for a, b in zip(got, hex_rgb(colour))), (colour, got)


@pytest.mark.parametrize("theme_path", sorted((CONF / "theme").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_colour_text_is_typed_in_reads_at_4_5_to_1_on_the_panel_over_any_picture(theme_path):
    """WCAG 2.x AA: a colour that misses it on the panel (at its opacity, over white or black) is moved toward
    white (or black on a light panel) just far enough; one that reaches it is kept as the theme has it."""
    from renderer.config import PALETTE
    from renderer.media import contrast

    theme = OmegaConf.load(theme_path)
    shown = terminal.readable_theme(theme, theme.panel_opacity)
    for name in ("foreground", "prompt", *PALETTE, *(["comment"] if theme.get("comment") else [])):
        assert contrast.worst_ratio(shown[name], theme.background, theme.panel_opacity) >= 4.5, name
        if contrast.worst_ratio(theme[name], theme.background, theme.panel_opacity) >= 4.5:
            assert shown[name] == theme[name], name


def test_dark_theme_comments_were_too_faint_and_are_lifted():
    from renderer.media import contrast

    assert contrast.worst_ratio(THEME.brightBlack, THEME.background, THEME.panel_opacity) < 4.5
    t = track([comment("# a note")], 3.0)
    lifted = terminal.readable_theme(THEME, THEME.panel_opacity).brightBlack
    assert lifted != THEME.brightBlack and any(ass.tag_colour(lifted) in e.text for e in t.events if e.layer == 2)
