"""Video scripts: the ``Script`` model and the LOG / Markdown parsers.

Pure data: text in, a ``Script`` out, every problem an ``Issue`` naming file, line and fix. The model lives in
``model.py``, reading and format detection in ``parse.py``, one parser per format in ``parsers/``.
"""

from renderer.script.model import (
    ERROR,
    FORMATS,
    HINTS,
    WARNING,
    Issue,
    NarrationLine,
    OnScreenLine,
    Options,
    Scene,
    Script,
    clip,
    estimated_duration,
    format_time,
    sentences,
    speaking_seconds,
    split_text,
    title_from_path,
    validate,
)
from renderer.script.parse import (
    detect_format,
    parse_file,
    parse_log,
    parse_markdown,
    parse_text,
    read_text,
)

__all__ = [
    "ERROR", "FORMATS", "HINTS", "WARNING", "Issue", "NarrationLine", "OnScreenLine", "Options", "Scene", "Script",
    "clip", "detect_format", "estimated_duration", "format_time", "parse_file", "parse_log", "parse_markdown",
    "parse_text", "read_text", "sentences", "speaking_seconds", "split_text", "title_from_path", "validate",
]
