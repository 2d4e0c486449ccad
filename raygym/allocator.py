"""Keep freed memory in the process for reuse (glibc), instead of mapping every large tensor
afresh.

PyTorch's CPU allocator is plain ``malloc``. glibc serves blocks above its mmap threshold (at
most 32 MiB) with a fresh ``mmap`` and returns them with ``munmap`` on free, so every large
activation of every training step - gym_unet f8 at batch 8 and 256 px has many of 33-84 MiB -
is page-faulted and zeroed by the kernel again: ~250,000 page faults per step, and e.g. 55 ms
instead of 12 ms for one BatchNorm + ReLU on ``(8, 40, 256, 256)``. TensorFlow keeps its own
pool, so this alone cost raygym ~12 % of a training step (1 thread, CPU seconds per step:
4.57 -> 4.04; ``bench/bench_step.py --keep-freed-memory``).

:func:`keep_freed_memory` sets glibc's ``mallopt``: no mmap for large blocks (they come from
the heap and are reused after free) and no trimming of the heap top; the same as starting the
process with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<huge>``, but for a process already
running (a Ray worker, the CLI). The cost: the process keeps what its heap grew to until it
exits. Measured on that training step: page faults per step reach 0 after ~3 steps, and RSS
settles after ~12 steps at 1.81 GiB against a 1.64 GiB peak without it (+11 %), then stays.
Call it in processes that train or predict, not at import.
"""

from __future__ import annotations

import ctypes
import sys

# glibc <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_applied = False


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory instead of unmapping it; once per process.

    Returns True when the setting is in effect (glibc on Linux), False elsewhere (macOS,
    Windows, musl: nothing changes there).
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the symbols already in the process: libc's own mallopt
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0. -1 as a trim threshold converts to
    # SIZE_MAX inside glibc: never trim.
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, -1) == 1
    return _applied
