"""Writes that never leave a half-written file or folder: write beside, then rename."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path


def temp_beside(path: Path) -> Path:
    """A hidden temp name in ``path``'s folder (same file system, so the rename is atomic)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    tmp = temp_beside(path)
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def replace_dir(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out``; an old ``out`` is moved aside first and
    removed after, so ``out`` is always either the old or the new folder, never a mix."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
