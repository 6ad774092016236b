"""ANSI escape sequences read as a terminal reads them: SGR colours kept, everything else consumed."""

from __future__ import annotations

from renderer.media import sgr

ESC = "\x1b"


def test_text_without_escapes_is_untouched():
    text = "plain [31m text \\e[0m with a literal backslash-e"
    assert sgr.parse(text) == (text, [None] * len(text))
    assert not sgr.has_escapes(text)


def test_basic_and_bright_colours_and_reset():
    plain, styles = sgr.parse(f"{ESC}[31mERR{ESC}[0m ok {ESC}[92mPASS{ESC}[39m.")
    assert plain == "ERR ok PASS."
    assert styles == ["red"] * 3 + [None] * 4 + ["brightGreen"] * 4 + [None]


def test_bold_brightens_a_basic_colour_until_reset_or_22():
    plain, styles = sgr.parse(f"{ESC}[1;34mA{ESC}[22mB{ESC}[1mC{ESC}[mD")
    assert plain == "ABCD" and styles == ["brightBlue", "blue", "brightBlue", None]


def test_256_and_truecolour():
    plain, styles = sgr.parse(f"{ESC}[38;5;1ma{ESC}[38;5;208mb{ESC}[38;5;244mc{ESC}[38;2;1;2;300md")
    assert plain == "abcd"
    assert styles == ["red", "#ff8700", "#808080", "#0102ff"]


def test_backgrounds_and_other_attributes_change_no_foreground():
    plain, styles = sgr.parse(f"{ESC}[33m{ESC}[4;41;48;5;17;48;2;9;9;9mx")
    assert plain == "x" and styles == ["yellow"]


def test_other_sequences_show_nothing():
    text = f"{ESC}]0;window title\x07a{ESC}[2Kb{ESC}[10;20Hc{ESC}[?25ld{ESC}]8;;https://x\x1b\\e{ESC}7f\x9b31mg"
    plain, styles = sgr.parse(text)
    assert plain == "abcdefg" and styles[-1] == "red"  # 8-bit CSI too


def test_palette_used_names_only_colours_that_show():
    assert sgr.palette_used([f"{ESC}[31m{ESC}[32mgreen{ESC}[0m", "plain", f"{ESC}[1;35mx"]) == [
        "green", "brightPurple"]
    assert sgr.palette_used([f"{ESC}[38;2;1;2;3mtrue colour only"]) == []
