"""glibc's malloc arenas capped in the renderer's Python processes, and what a burst freed given back.

glibc gives each thread that allocates while another holds the main heap an arena of its own (up to 8 per core),
and keeps what it freed there. A script's graph runs its nodes on a pool of threads (voices, pictures drawn with
numpy, the loudness of clips, records), so the orchestrator's resident memory grew with how many ran at once,
not with what it held: a 10-minute script at 320x180 peaked at 138 MB with 29 threads, 75 MB with two arenas,
in the same time (P6c). Two arenas serve threads that mostly wait on subprocesses. The tools those processes
run (ffmpeg, x264) are not touched: the cap is set in this process, not in the environment they inherit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
ARENAS = 2


@cache
def _glibc(function: str):
    """``function`` of glibc's malloc, or None elsewhere (musl, macOS: no arenas of this kind)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return getattr(ctypes.CDLL(name), function)
    except (OSError, AttributeError):
        return None


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Cap this process's malloc arenas (glibc only; elsewhere nothing happens). Whether it took."""
    mallopt = _glibc("mallopt")
    return bool(mallopt and mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Give the memory freed in this process's heaps back to the system (glibc's ``malloc_trim``): a burst of
    large buffers (a voice synthesis) otherwise stays resident after it. Whether any was given back."""
    malloc_trim = _glibc("malloc_trim")
    return bool(malloc_trim and malloc_trim(0))
