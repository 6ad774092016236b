"""The command-line tools, each also ``python -m renderer.<name>``: check, clean, watch, themes, cache; and the
sweep summary callback."""

from __future__ import annotations

import signal
import sys
from typing import Callable, NoReturn


def run(main: Callable[[], int]) -> NoReturn:
    """A tool's command-line entry: ``main()``'s exit code, quiet when its output is cut short."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly, as Unix tools do
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="replace")  # a terminal that cannot show “ ” … still gets the report
    sys.exit(main())
