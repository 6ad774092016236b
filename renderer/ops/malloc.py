"""glibc's malloc arenas capped in the renderer's Python processes.

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

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
ARENAS = 2


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Cap this process's malloc arenas (glibc only; elsewhere nothing happens). Whether it took."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): no mallopt, and no arenas of this kind
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
