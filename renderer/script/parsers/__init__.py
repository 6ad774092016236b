"""Script parsers, one module per format; each turns normalised text into a ``renderer.script.Script``.

Use them through ``renderer.script`` (``parse_file``, ``parse_text``), which detects the format, guards
against exceptions and runs the format-independent validation.
"""
