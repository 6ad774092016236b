"""renderer/ops/malloc.py: the renderer's processes cap glibc's malloc arenas; real processes, real threads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# threads that allocate at once, then the heaps glibc made for them (malloc_info's XML, one <heap> per arena)
ARENAS_PROBE = """
import ctypes, ctypes.util, os, sys, tempfile, threading
if sys.argv[1] == "renderer":
    import renderer
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fdopen.restype = ctypes.c_void_p
libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
start = threading.Barrier(16)
def churn():
    start.wait()
    kept = [bytearray(4096) for _ in range(2000)]
    del kept
threads = [threading.Thread(target=churn) for _ in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
fd, path = tempfile.mkstemp()
stream = libc.fdopen(fd, b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
print(open(path).read().count("<heap nr="))
os.unlink(path)
"""


def test_the_renderers_processes_cap_their_malloc_arenas():
    """glibc gave every thread that allocated at once an arena of its own and kept what it freed there, so the
    orchestrator's memory grew with its stage threads (P6c at 10 minutes with espeak-ng: 138 MB, 75 MB capped).
    Importing the renderer caps them; the environment the tools inherit is left alone."""
    from renderer.ops.malloc import ARENAS, cap_arenas

    if not cap_arenas():
        pytest.skip("not glibc: no mallopt")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}

    def heaps(imports: str) -> int:
        run = subprocess.run([sys.executable, "-c", ARENAS_PROBE, imports], capture_output=True, text=True, env=env,
                             cwd=ROOT, check=True)
        return int(run.stdout.strip())

    assert heaps("renderer") <= ARENAS < heaps("nothing")
    assert "MALLOC_ARENA_MAX" not in os.environ


# a large block freed, then a smaller one: is it mapped alone (given back whole when freed) or cut from a heap?
MAPPED_PROBE = """
import ctypes, ctypes.util, sys
if sys.argv[1] == "renderer":
    import renderer
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
big = bytearray(8 << 20)
del big
block = bytearray(2 << 20)
print(int(libc.mallinfo2().hblkhd >= 2 << 20))
"""


def test_a_large_block_is_mapped_alone_whatever_was_freed_before():
    """glibc raised its mmap threshold to the size of any mapped block freed, so later blocks of that size were
    cut from its heaps, which give back only their top: the orchestrator grew with the script's length (P6b at
    10 minutes 75 MB, 69 MB with the threshold fixed). Importing the renderer fixes it."""
    from renderer.ops import malloc

    if not malloc.fix_mmap_threshold():
        pytest.skip("not glibc: no mallopt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def mapped(imports: str) -> bool:
        run = subprocess.run([sys.executable, "-c", MAPPED_PROBE, imports], capture_output=True, text=True, env=env,
                             cwd=ROOT)
        if "mallinfo2" in run.stderr:
            pytest.skip("glibc older than 2.33: no mallinfo2")
        assert run.returncode == 0, run.stderr
        return run.stdout.strip() == "1"

    assert mapped("renderer") and not mapped("nothing")
