"""Text from input files made safe to show on a terminal.

A script's title, a theme's name or a log message quoting either could hold escape sequences a terminal acts on:
OSC 52 writes the clipboard, ``ESC[2J`` clears the screen, a title-setting OSC rewrites the window's name.
``for_terminal`` removes them wherever such text reaches one (``renderer.check``, the batch's log, watch mode).
"""

from __future__ import annotations

import re

# ESC-introduced sequences, whole: CSI (ESC [ … final byte), the string commands OSC/DCS/SOS/PM/APC (up to BEL or
# ST, or to the end of the text when unterminated), any other two-byte ESC sequence. Each part matches a run once
# (no nested repeats over the same characters): linear in the text.
_ESCAPE_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
# whatever control characters are left, C0 (but tab and newline), DEL and C1 (8-bit CSI, OSC …)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def for_terminal(text: str) -> str:
    """``text`` without control characters and escape sequences; tabs and newlines kept.

    >>> for_terminal("Title\\x1b]52;c;SGVsbG8=\\x07\\x1b[2J!")
    'Title!'
    """
    return _CONTROL_RE.sub("", _ESCAPE_RE.sub("", text))
