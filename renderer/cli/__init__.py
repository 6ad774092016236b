"""The command-line tools, each also ``python -m renderer.<name>``: check, clean, watch, themes, cache; and the
sweep summary callback."""

from __future__ import annotations

import os
import signal
import sys
from typing import Callable, NoReturn


def run(main: Callable[[], int]) -> NoReturn:
    """A tool's command-line entry: ``main()``'s exit code, quiet when its output is cut short (``... | head``
    ends it as it ends a Unix tool, 128 + SIGPIPE). Only the tool's own output counts: SIGPIPE keeps Python's
    default, so a media tool stopped mid-stream (frames fed to ffmpeg) is an error of that tool, not the end."""
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="replace")  # a terminal that cannot show “ ” … still gets the report
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to say, nowhere to say it
        code = 128 + signal.SIGPIPE
    sys.exit(code)
