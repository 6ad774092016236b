"""renderer.media.ass: escaping hostile text for libass, colours, events, the files pysubs2 writes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pysubs2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from renderer.media import ass

HOSTILE = r"""{\b1}bold? %{pts} \N C:\Users\x {} [] ; , 'quote' "dq" """.strip()


def libass_tokens(text: str) -> list[tuple[str, str]]:
    """How libass reads dialogue text: override blocks, escapes (\\N \\n \\h \\{ \\}) and plain characters."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "{":
            end = text.find("}", i)
            out.append(("override", text[i:end + 1 if end >= 0 else len(text)]))
            i = end + 1 if end >= 0 else len(text)
        elif ch == "\\" and i + 1 < len(text) and text[i + 1] in "Nnh{}":
            out.append(("escape", text[i:i + 2]))
            i += 2
        else:
            out.append(("char", ch))
            i += 1
    return out


def shown(text: str) -> str:
    """The characters libass would draw for ``text`` (zero-width joiners dropped)."""
    result = []
    for kind, tok in libass_tokens(text):
        if kind == "override":
            continue
        if kind == "escape":
            result.append({"\\{": "{", "\\}": "}", "\\h": "\u00a0"}.get(tok, "\n"))
        else:
            result.append(tok)
    return "".join(result).replace(ass.WORD_JOINER, "").replace(ass.NO_BREAK_SPACE, " ")


# --------------------------------------------------------------------------- escape, structurally


def test_escape_hostile_text_has_no_override_blocks_or_line_breaks():
    out = ass.escape(HOSTILE)
    kinds = {kind for kind, _ in libass_tokens(out)}
    assert "override" not in kinds
    assert [tok for kind, tok in libass_tokens(out) if kind == "escape"] == ["\\{", "\\}"] * 3
    for i, ch in enumerate(out):
        if ch in "{}":
            assert i > 0 and out[i - 1] == "\\", (i, out)
    for seq in ("\\N", "\\n", "\\h"):
        assert seq not in out
    assert shown(out) == HOSTILE


def test_escape_flattens_newlines_and_tabs():
    out = ass.escape("a\nb\r\nc\td")
    assert "\n" not in out and "\r" not in out and "\t" not in out
    assert shown(out) == "a b c    d"


def test_escape_keeps_every_space_as_a_no_break_space():
    """libass trims plain spaces at the ends of a line: indentation would be lost."""
    out = ass.escape("  two  ")
    assert " " not in out
    assert out == ass.NO_BREAK_SPACE * 2 + "two" + ass.NO_BREAK_SPACE * 2


def test_printable_drops_control_characters_and_reordering_marks():
    assert ass.printable("\x00a\x07b\x1b[1mc\x7f\x9bd") == "ab[1mcd"
    assert ass.printable("x\u2028y\u2029z\x0cw\x85v") == "x y z w v"  # line breaks of any kind
    assert ass.printable("abc\u202edef\u2066g") == "abcdefg"
    assert ass.printable("\ud800x") == "x"  # a lone surrogate cannot even be written as UTF-8
    kept = "emoji 😀 CJK 日本 Arabic مرحبا zwj 👩\u200d💻 combining e\u0301"
    assert ass.printable(kept) == kept


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("\\{}Nnh \t\n\rab%:'\"") + ["日", "\u2060"]), max_size=40))
def test_escape_makes_any_text_literal(text):
    out = ass.escape(text)
    assert all(kind != "override" for kind, _ in libass_tokens(out))
    assert all(tok in ("\\{", "\\}") for kind, tok in libass_tokens(out) if kind == "escape")
    assert "\n" not in out and "\r" not in out
    expected = text.replace("\t", "    ").replace("\r", "").replace("\n", " ").replace(ass.WORD_JOINER, "")
    assert shown(out) == expected
    assert " " not in out  # all spaces are no-break spaces


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_escape_of_any_unicode_is_one_line_without_override_blocks(text):
    out = ass.escape(text)
    assert all(kind != "override" for kind, _ in libass_tokens(out))
    assert all(tok in ("\\{", "\\}") for kind, tok in libass_tokens(out) if kind == "escape")
    assert len(out.splitlines()) <= 1
    out.encode("utf-8")  # writable to the .ass file


# --------------------------------------------------------------------------- escape, rendered by libass

W, H = 640, 120
FONT_SIZE = 11


def render_line(tmp_path: Path, text: str, name: str) -> bytes:
    head = ass.header(W, H, ass.plain_styles("DejaVu Sans Mono", FONT_SIZE, "#ffffff"))
    ass.write(tmp_path / f"{name}.ass", head, [ass.Event(0, 200, 0, "Term", "{\\pos(10,50)}" + text)])
    result = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-f", "lavfi",
         "-i", f"color=c=black:s={W}x{H}:r=25:d=1,format=rgb24", "-vf", f"ass={name}.ass",
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        cwd=tmp_path, capture_output=True, timeout=60, check=True)
    assert len(result.stdout) == W * H * 3, result.stderr
    return result.stdout


def ink_box(frame: bytes) -> tuple[int, int, int, int] | None:
    xs, ys = [], []
    for y in range(H):
        row = frame[y * W * 3:(y + 1) * W * 3]
        for x in range(W):
            if max(row[3 * x:3 * x + 3]) > 100:
                xs.append(x)
                ys.append(y)
    return (min(xs), max(xs), min(ys), max(ys)) if xs else None


def test_escaped_hostile_text_renders_verbatim_on_one_line(tmp_path: Path):
    box = ink_box(render_line(tmp_path, ass.escape(HOSTILE), "escaped"))
    assert box is not None  # text appears
    x0, x1, y0, y1 = box
    advance = FONT_SIZE * 0.515  # DejaVu Sans Mono
    # every one of the characters takes its cell: nothing was swallowed as an override tag
    assert abs((x1 - 10) - len(HOSTILE) * advance) < 2 * advance, (x1, len(HOSTILE) * advance)
    assert y1 - y0 < FONT_SIZE * 1.5  # one line: "\N" did not break it


def test_escaped_leading_spaces_indent_the_text(tmp_path: Path):
    plain = ink_box(render_line(tmp_path, ass.escape("abc"), "plain"))
    indented = ink_box(render_line(tmp_path, ass.escape("    abc"), "indented"))
    advance = FONT_SIZE * 0.515
    assert abs((indented[0] - plain[0]) - 4 * advance) < 1.5, (plain, indented)


def test_unescaped_hostile_text_is_mangled_by_libass(tmp_path: Path):
    """Control for the test above: without escape, libass eats the tags and breaks the line."""
    x0, x1, y0, y1 = ink_box(render_line(tmp_path, HOSTILE, "raw"))
    advance = FONT_SIZE * 0.515
    assert (x1 - 10) < (len(HOSTILE) - 8) * advance or y1 - y0 > FONT_SIZE * 1.5


# --------------------------------------------------------------------------- colours


@pytest.mark.parametrize("hex_rgb, alpha, expected", [
    ("#112233", 0.5, "&H80332211"),
    ("#112233", 1.0, "&H00332211"),
    ("#112233", 0.0, "&HFF332211"),
    ("#ff5f56", 1.0, "&H00565FFF"),
    ("#abc", 1.0, "&H00CCBBAA"),
    ("1e1e1e", 0.9, "&H191E1E1E"),  # (1 - 0.9) * 255 == 25.4999... -> 0x19
    ("#000000", 2.0, "&H00000000"),  # clamped
    ("#000000", -1.0, "&HFF000000"),
])
def test_colour_is_ass_aabbggrr(hex_rgb, alpha, expected):
    assert ass.colour(hex_rgb, alpha) == expected


def test_fill_and_tag_colour():
    assert ass.fill("#112233") == "\\1c&H332211&"
    assert ass.fill("#112233", 0.5) == "\\1c&H332211&\\1a&H80&"
    assert ass.tag_colour("#4ec9b0") == "{\\1c&HB0C94E&}"


def test_style_colours_and_tag_colours_are_one_conversion():
    """A style's colour (pysubs2 writes it) and an override tag's say the same for the same theme colour."""
    style = ass.plain_styles("DejaVu Sans Mono", 11, "#1e1e1e")["Term"]
    line = next(line for line in ass.header(640, 360, {"Term": style}).splitlines() if line.startswith("Style: Term"))
    assert line.split(",")[3] == ass.colour("#1e1e1e") == "&H001E1E1E"
    assert ass.rgba("#1e1e1e", 0.9) == pysubs2.Color(0x1E, 0x1E, 0x1E, 0x19)


# --------------------------------------------------------------------------- events and files


def dialogue_times(events: list[ass.Event]) -> list[tuple[str, str]]:
    """(start, end) of each Dialogue line of the file ``events`` make."""
    head = ass.header(640, 360, ass.plain_styles("DejaVu Sans Mono", 11, "#d4d4d4"))
    return [tuple(line.split(",")[1:3]) for line in ass.document(head, events).splitlines()
            if line.startswith("Dialogue:")]


@pytest.mark.parametrize("cs, expected", [
    (0, "0:00:00.00"),
    (5, "0:00:00.05"),
    (123, "0:00:01.23"),
    (6000, "0:01:00.00"),
    (6543, "0:01:05.43"),
    (360000, "1:00:00.00"),
    (360000 + 59 * 6000 + 5999, "1:59:59.99"),
    (-10, "0:00:00.00"),
])
def test_times_are_written_in_centiseconds(cs, expected):
    assert dialogue_times([ass.Event(cs, max(cs, 0) + 5, 0, "Term", "x")])[0][0] == expected


def test_event_shifted_onto_timeline_and_clipped_to_the_scene():
    e = ass.Event(10, 50, 2, "Term", "x")
    assert ass.Event(110, 150, 2, "Term", "x") == e.shifted(100, 1000)
    assert e.shifted(100, 130).end == 130  # clipped at the scene end
    assert e.shifted(100, 110) is None  # nothing left
    assert ass.Event(0, None, 0, "Shape", "p").shifted(200, 700).end == 700  # open-ended = until scene end


def test_a_file_is_its_header_then_one_dialogue_line_per_event_in_order():
    head = ass.header(640, 360, ass.plain_styles("DejaVu Sans Mono", 11, "#d4d4d4"))
    events = [ass.Event(150, 6543, 2, "Term", "{\\pos(1,2)}hi"), ass.Event(0, 100, 0, "Shape", "m 0 0 l 1 1")]
    written = ass.document(head, events)
    assert written == head + "\n" + (
        "Dialogue: 2,0:00:01.50,0:01:05.43,Term,,0,0,0,,{\\pos(1,2)}hi\n"
        "Dialogue: 0,0:00:00.00,0:00:01.00,Shape,,0,0,0,,m 0 0 l 1 1\n")
    assert ass.document(head, []) == head + "\n"


def test_header_declares_play_res_and_styles():
    head = ass.header(640, 360, ass.plain_styles("DejaVu Sans Mono", 11, "#d4d4d4"))
    assert "PlayResX: 640" in head and "PlayResY: 360" in head and "WrapStyle: 2" in head
    for name in ("Term", "Shape"):  # text and drawings: top-left anchored, no outline, shadow or margins
        assert f"Style: {name},DejaVu Sans Mono,11,&H00D4D4D4,&H00D4D4D4,&H00000000,&H00000000,0,0,0,0,100,100,0,0," \
               "1,0,0,7,0,0,0,1" in head
    assert head.rstrip().endswith("Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text")


def test_rect_drawing_spans_its_size():
    square = ass.rect(100, 40)
    assert square == "m 0 0 l 100 0 100 40 0 40"
    for rounded in (ass.rect(100, 40, 8), ass.rect(100, 40, 8, top=False), ass.rect(100, 40, 8, bottom=False)):
        nums = [float(t) for t in rounded.split() if t not in ("m", "l", "b")]
        assert min(nums) == 0 and max(nums[0::2]) == 100 and max(nums[1::2]) == 40


def test_rect_rounds_only_the_corners_asked_for():
    assert ass.rect(100, 40, 8, top=False, bottom=False) == ass.rect(100, 40)
    top_only = ass.rect(100, 40, 8, bottom=False)
    assert top_only.startswith("m 8 0 ")  # rounded top-left
    assert "l 100 40 " in top_only and "l 0 40 " in top_only  # square bottom corners
    bottom_only = ass.rect(100, 40, 8, top=False)
    assert bottom_only.startswith("m 0 0 ") and "l 100 32 " in bottom_only
