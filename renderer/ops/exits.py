"""The exit codes of every command, one set, so scripts can trust them."""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0  # everything asked for was done
    FAILED = 1  # some of it failed (the rest was done): a script, an input pattern, a file to check or remove
    CANNOT_START = 2  # nothing was started: no input, no usable ffmpeg, a bad setting or argument
    INTERRUPTED = 130  # Ctrl-C or SIGTERM: work stopped, temp files removed
