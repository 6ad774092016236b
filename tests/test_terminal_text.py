"""renderer.ops.terminal_text: input text made safe to show on a terminal."""

from __future__ import annotations

import time

import pytest

from renderer.ops.terminal_text import for_terminal

OSC52 = "\x1b]52;c;ZWNobyBvd25lZA==\x07"  # writes "echo owned" to the clipboard
CLEAR = "\x1b[2J\x1b[H"


@pytest.mark.parametrize("text, shown", [
    (f"The Descent{OSC52}{CLEAR}", "The Descent"),
    ("a\x1b[31mred\x1b[0m", "ared"),
    ("title\x1b]0;window title\x1b\\ end", "title end"),  # OSC ended by ST
    ("unterminated \x1b]0;swallows the rest", "unterminated "),
    ("a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),  # DCS (sixel)
    ("8-bit \x9b2J csi \x9d52;c;x\x9c", "8-bit 2J csi 52;c;x"),  # C1 controls gone, their harmless text left
    ("bell\x07 bs\x08 cr\r del\x7f nul\x00", "bell bs cr del nul"),
    ("tab\tand\nnewline kept, “quotes” and ☃ too", "tab\tand\nnewline kept, “quotes” and ☃ too"),
])
def test_escape_sequences_and_control_characters_are_removed(text, shown):
    assert for_terminal(text) == shown


def test_linear_in_the_text():
    for unit in ("\x1b[", "\x1b]", "\x1b", "\x1b[0;"):
        start = time.perf_counter()
        assert for_terminal(unit * 200_000) == ""
        assert time.perf_counter() - start < 2
