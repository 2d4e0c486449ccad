"""raygym.allocator: with keep_freed_memory, a large block freed and asked for again is reused
(no page faults once the heap has settled); without it glibc maps and faults it every time.

Each process runs in a subprocess: the setting is process-wide and must not leak into pytest."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

SIZE = 80 << 20  # above glibc's largest mmap threshold (32 MiB): always mmap'd by default
PAGES = SIZE // 4096

SCRIPT = textwrap.dedent(f"""
    import ctypes, json, resource, sys
    from raygym.allocator import keep_freed_memory

    applied = keep_freed_memory() if sys.argv[1] == "keep" else False
    libc = ctypes.CDLL(None)
    libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t,
                                    ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    faults = []
    for _ in range(30):  # like PyTorch's CPU allocator: 64-byte aligned, then touched
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = ctypes.c_void_p()
        assert libc.posix_memalign(ctypes.byref(block), 64, {SIZE}) == 0
        ctypes.memset(block, 1, {SIZE})
        small = libc.malloc(256)  # something newer than the block, as in a real step
        libc.free(block)
        libc.free(small)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(json.dumps({{"applied": applied, "faults": faults}}))
""")


def faults_per_round(mode: str) -> tuple[bool, list[int]]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, timeout=120, check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return got["applied"], got["faults"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_memory_is_reused_only_with_the_setting() -> None:
    applied, kept = faults_per_round("keep")
    if not applied:
        pytest.skip("this libc has no working mallopt (not glibc)")
    _, default = faults_per_round("default")
    assert all(f >= PAGES // 2 for f in default)  # glibc maps and faults the block each time
    assert all(f < 64 for f in kept[-10:]), kept  # settled: the same memory again


def test_keep_freed_memory_is_idempotent_and_says_whether_it_applies() -> None:
    proc = subprocess.run([sys.executable, "-c", "from raygym.allocator import "
                           "keep_freed_memory as k; print(k(), k())"],
                          capture_output=True, text=True, timeout=60, check=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert proc.stdout.split() == [str(glibc)] * 2
