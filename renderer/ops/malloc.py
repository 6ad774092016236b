"""glibc's malloc arenas capped in the renderer's Python processes, and what a burst freed given back.

glibc gives each thread that allocates while another holds the main heap an arena of its own (up to 8 per core),
and keeps what it freed there. A script's graph runs its nodes on a pool of threads (voices, pictures drawn with
numpy, the loudness of clips, records), so the orchestrator's resident memory grew with how many ran at once,
not with what it held: a 10-minute script at 320x180 peaked at 138 MB with 29 threads, 75 MB with two arenas,
in the same time (P6c). Two arenas serve threads that mostly wait on subprocesses. The tools those processes
run (ffmpeg, x264) are not touched: the cap is set in this process, not in the environment they inherit.

Its threshold for serving a block from its own mapping is fixed too. glibc raises it to the size of any such
block freed (up to 32 MB), after which blocks of that size come from the heaps, and a heap gives back only its
top: a background's arrays, a clip's measurement blocks left the heaps fragmented, and the orchestrator's memory
grew with the script's length (P6b: 67 MB for 1 minute, 75 MB for 10; 66 and 69 MB with the threshold fixed).
"""

from __future__ import annotations

import ctypes
from functools import cache

M_ARENA_MAX = -8  # mallopt's parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
ARENAS = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept: a block this large or larger is mapped alone


@cache
def _glibc(function: str):
    """``function`` of glibc's malloc, or None elsewhere (musl, macOS: no arenas of this kind)."""
    try:  # the symbols the process has loaded (its C library's among them): no ldconfig run to find it
        return getattr(ctypes.CDLL(None), function)
    except (OSError, AttributeError):
        return None


def configure() -> bool:
    """This process's arenas capped and its mmap threshold fixed (glibc only; elsewhere nothing happens)."""
    capped, fixed = cap_arenas(), fix_mmap_threshold()
    return capped and fixed


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Cap this process's malloc arenas. Whether it took."""
    mallopt = _glibc("mallopt")
    return bool(mallopt and mallopt(M_ARENA_MAX, arenas))


def fix_mmap_threshold(size: int = MMAP_THRESHOLD) -> bool:
    """Serve every block of ``size`` or more from a mapping of its own, returned whole when freed, whatever
    was freed before (setting it stops glibc's raising it). Whether it took."""
    mallopt = _glibc("mallopt")
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, size))


def trim() -> bool:
    """Give the memory freed in this process's heaps back to the system (glibc's ``malloc_trim``): a burst of
    large buffers (a voice synthesis) otherwise stays resident after it. Whether any was given back."""
    malloc_trim = _glibc("malloc_trim")
    return bool(malloc_trim and malloc_trim(0))
