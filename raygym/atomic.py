"""Writes that never leave a half-written file or folder: write beside, then rename; and
scratch folders that a killed process does not leave behind for ever."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def temp_beside(path: Path) -> Path:
    """A hidden temp name in ``path``'s folder (same file system, so the rename is atomic);
    it carries this process's pid, so a killed writer's leftover is known
    (:func:`sweep_temp_files`)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def intended_path(path: Path) -> Path:
    """The file or folder a :func:`temp_beside` / :func:`temp_dir_beside` name stands for
    (``path`` itself when it is not one), for messages about the path a user gave."""
    match = re.fullmatch(r"\.(.+)\.tmp-\d+(?:-\d+)?(\.[^.]*)?", path.name)
    return path.with_name(match.group(1) + (match.group(2) or "")) if match else path


def sweep_temp_files(folder: Path) -> list[Path]:
    """Remove the :func:`temp_beside` files that processes no longer running left in
    ``folder`` (a writer killed between write and rename); returns what was removed."""
    removed = []
    for path in folder.glob(".*.tmp-*"):
        match = re.search(r"\.tmp-(\d+)(\.[^.]*)?$", path.name)
        if path.is_file() and match and not pid_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def remove_if_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first, as :func:`created_on_success` lists them) while
    they are empty; the first that is not stops it, so nothing written is ever removed."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # something was written there (or it is gone): kept
            break


@contextlib.contextmanager
def created_on_success(out: Path) -> Iterator[list[Path]]:
    """For a body that creates and fills folder ``out``: when the body fails or is
    interrupted, the folders it created (``out`` and missing parents, innermost first, the
    list yielded) are removed again while still empty, so a refused or stopped run leaves
    nothing behind. A folder that existed before is never touched."""
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        yield created
    except BaseException:
        remove_if_empty(created)
        raise


def temp_dir_beside(out: Path) -> Path:
    """A new hidden folder beside ``out`` to build its replacement in (then
    :func:`replace_dir`). First recovers from a killed earlier run: its temp folders are
    removed and, if it died between the two renames of :func:`replace_dir`, the previous
    ``out`` (moved aside) is put back."""
    sweep_beside(out)
    path = out.with_name(f".{out.name}.tmp-{os.getpid()}-{time.time_ns()}")
    path.mkdir(parents=True)
    return path


def sweep_beside(out: Path) -> list[Path]:
    """Clean up what killed runs left beside ``out``: temp folders of dead processes go; an
    old ``out`` moved aside comes back when ``out`` is missing, else goes. Returns what was
    removed or restored."""
    touched: list[Path] = []
    for path in out.parent.glob(f".{out.name}.tmp-*-*"):
        pid = path.name.rsplit(".tmp-", 1)[1].split("-")[0]
        if path.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            touched.append(path)
    olds = sorted(out.parent.glob(f".{out.name}.old-*"))
    if olds and not out.exists():
        olds.pop().rename(out)  # the newest previous version: nothing newer was completed
        touched.append(out)
    for path in olds:
        shutil.rmtree(path, ignore_errors=True)
        touched.append(path)
    return touched


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    tmp = temp_beside(path)
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def replace_dir(tmp: Path, out: Path, *, owned: Callable[[Path], bool] | None = None) -> None:
    """Rename the finished folder ``tmp`` to ``out``; an old ``out`` is moved aside first and
    removed after, so ``out`` is always either the old or the new folder, never a mix.

    ``owned(out)`` says whether an existing ``out`` is one raygym made (its own card or
    layout): anything else but an empty folder is refused, never deleted, whatever the user
    asked for.
    """
    from raygym.errors import DataError

    old = None
    if out.exists():
        empty = out.is_dir() and not any(out.iterdir())
        if owned is not None and not empty and not owned(out):
            raise DataError("exists and was not made by raygym (or is damaged): refusing to "
                            "replace it", file=out, fix="move it away, or choose another "
                            "output path")
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """A process with this pid runs (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_scratch(kind: str, root: Path | None = None) -> list[Path]:
    """Remove the ``raygym-<kind>-<pid>-*`` scratch folders of processes that no longer run
    (a SIGKILLed trial never reaches its clean-up); returns what was removed."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    for path in root.glob(f"raygym-{kind}-*-*"):
        pid = path.name.split("-")[2]
        if path.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


_swept: set[tuple[str, Path | None]] = set()


@contextlib.contextmanager
def scratch_dir(kind: str, root: Path | None = None) -> Iterator[Path]:
    """A temp folder ``raygym-<kind>-<pid>-XXXX`` removed on exit; the ones that killed
    processes left are swept (:func:`sweep_scratch`) on this process's first use: a
    checkpoint per epoch need not list the temp folder every time."""
    if (kind, root) not in _swept:
        sweep_scratch(kind, root)
        _swept.add((kind, root))
    path = Path(tempfile.mkdtemp(prefix=f"raygym-{kind}-{os.getpid()}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
