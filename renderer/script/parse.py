"""Reading a script file and choosing its parser: text in, a ``Script`` out, never an exception."""

from __future__ import annotations

import codecs
import os
import re
import stat
from dataclasses import replace
from os import PathLike
from pathlib import Path

from renderer.script.model import (
    ERROR,
    FORMATS,
    Options,
    Script,
    new_issue,
    title_from_path,
    validate,
)
from renderer.script.parsers import log, markdown

# --------------------------------------------------------------------------- reading


def read_text(path: str | PathLike) -> str:
    """The file's text: UTF-8 (BOM stripped), else cp1252; line endings normalised to LF."""
    return _normalise(_decode(Path(path).read_bytes()))


def _decode(data: bytes) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if data.startswith(codecs.BOM_UTF8):  # says UTF-8, has a few bad bytes
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    # cp1252, not latin-1: writers' smart quotes live at 0x91–0x94; 0x81 0x8D 0x8F 0x90 0x9D are undefined
    return data.decode("cp1252", errors="replace")


def _normalise(text: str) -> str:
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- parsing


def parse_file(path: str | PathLike, *, options: Options) -> Script:
    """read_text + parse_text. An unreadable file gives a Script with an error Issue, never an exception; so do a
    file that is not a regular file (a FIFO would block the read) and one over ``options.max_size_mb`` (unread)."""
    name = str(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return _failed(name, "unreadable_file", "cannot read the script: it is not a regular file")
        with open(path, "rb") as file:  # at most one byte past the limit is read
            data = file.read(_max_bytes(options) + 1 if options.max_size_mb else -1)
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported as data
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return _failed(name, "unreadable_file", f"cannot read the script: {reason}")
    return parse_text(data, name, options=options)


def parse_text(text: str | bytes, path: str = "<string>", *, options: Options) -> Script:
    """Parse a script in ``options.format`` ("auto": detected from the content); problems are ``Script.issues``."""
    path = str(path)
    try:
        if options.max_size_mb and _size(text) > _max_bytes(options):
            return _failed(path, "script_too_large", f"the script is over the limit of {options.max_size_mb:g} MB "
                           "(script.max_size_mb); it is not read")
        if isinstance(text, (bytes, bytearray)):
            text = _decode(bytes(text))
        text = _normalise(str(text))
        chosen = options.format.strip().lower()
        if chosen == "auto":
            chosen = detect_format(text)
        if chosen not in FORMATS:
            return _failed(path, "unknown_format",
                           f"unknown script format “{options.format}” (expected auto, log or markdown)")
        script = _parser(chosen)(text, path, options)
        validate(script, options)
        return script
    except Exception as exc:  # noqa: BLE001 - safety net: parsing must never raise
        return _failed(path, "internal_error", f"the script parser failed: {exc!r}")


def parse_log(text: str | bytes, path: str = "<string>", *, options: Options) -> Script:
    """Parse LOG-format text (see renderer/script/parsers/log.py)."""
    return parse_text(text, path, options=replace(options, format="log"))


def parse_markdown(text: str | bytes, path: str = "<string>", *, options: Options) -> Script:
    """Parse a Markdown screenplay (see renderer/script/parsers/markdown.py)."""
    return parse_text(text, path, options=replace(options, format="markdown"))


def _max_bytes(options: Options) -> int:
    return int(options.max_size_mb * 1_000_000)


def _size(text: str | bytes) -> int:
    """Bytes of the script (its UTF-8 length for text)."""
    return len(text) if isinstance(text, (bytes, bytearray)) else len(str(text).encode("utf-8", "replace"))


def _parser(name: str):
    return {"log": log.parse, "markdown": markdown.parse}[name]


_LOG_SIGN_RE = re.compile(r"^\s*(?:SCRIPT\s*:|\[\s*\d{1,4}:\d)", re.I)
_MARKDOWN_SCENE_RE = re.compile(r"^##\s")
_MARKDOWN_TITLE_RE = re.compile(r"^#\s")


def detect_format(text: str) -> str:
    """"log" or "markdown", from whichever comes first: a ``SCRIPT:`` line or ``[M:SS`` header (LOG), or a
    ``## `` heading (Markdown). Undecided text is Markdown if it opens with a ``# `` title, else LOG."""
    lines = text.split("\n")
    for line in lines:
        if _LOG_SIGN_RE.match(line):
            return "log"
        if _MARKDOWN_SCENE_RE.match(line):
            return "markdown"
    first = next((line for line in lines if line.strip()), "")
    return "markdown" if _MARKDOWN_TITLE_RE.match(first.lstrip()) else "log"


def _failed(path: str, code: str, what: str) -> Script:
    return Script(path, title_from_path(path), None, None, [], [new_issue(path, code, ERROR, None, what)])


