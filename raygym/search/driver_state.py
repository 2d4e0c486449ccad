"""Tune's driver state on storage, kept whole; a resume that would lose it refuses instead.

Tune's driver saves its state (the experiment snapshot ``experiment_state-<session>.json``,
the searcher's ``search_gen_state-`` and ``searcher-state-`` files, callback states) into a
local staging folder and copies that folder to storage in the background, writing each file in
place. A driver killed during the copy (seen in CI: SIGKILL of the search's job) left the
searcher's files 0 bytes long; ``Tuner.restore`` then could not load them, logged "Restarting
experiment" and ran the search anew: the trials already run were orphaned and the leaderboard
listed only the new ones.

:class:`StagingUploads` is the copy ``raygym search`` has Tune use instead
(:func:`raygym.compat.tune_state_uploads`): each state file goes to a temporary name beside
its old version and is renamed over it, so storage holds the old version or the new one,
whole. :func:`check_driver_state` reads, before a resume, the files a restore would read,
and refuses with one line if one is cut short (a search stopped by an older raygym).
"""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from raygym.errors import DataError

if TYPE_CHECKING:
    import pyarrow.fs

# The files a restore reads, by pattern: Tune reads the newest name of each (max of names).
SNAPSHOT = "experiment_state-*.json"
STATE_FILES = (SNAPSHOT, "search_gen_state-*.json", "searcher-state-*.pkl",
               "basic-variant-state-*.json", "callback-states-*.pkl")
# Suffix of the temporary name a state file is uploaded under; Tune never reads such a name
# (it matches none of STATE_FILES, and Tune's download takes *.json and *.pkl only).
UPLOADING = ".uploading"


class StagingUploads:
    """Tune's upload of the driver's staging folder (one instance per search; it remembers
    what it copied): call it as ``upload(local_path, fs, fs_path)``.

    Each top-level file (the state) is copied to ``.NAME.uploading`` beside ``NAME`` on
    storage; once all are copied, each is renamed over its old version, the experiment
    snapshot first. A rename is atomic on a local or network file system; an object store
    writes each object whole. A driver killed between two renames leaves a snapshot newer
    than the searcher's state: the trials the searcher had not heard of are run to their end
    unreported, their Optuna trials are closed as orphans
    (:meth:`~raygym.search.optuna_search.TruthfulOptunaSearch.restore`) and the searcher, whose
    count is behind, suggests that many more; the other order would leave Optuna trials of
    trials Tune never restores running for ever, and the search short of them. The files in
    sub-folders (trial logs, appended to) are copied in place
    as Ray copies them, but only those whose size or modification time changed since this
    instance copied them: Ray copies every trial's logs at every sync, which at 1,000 trials
    costs more than the rest of the sync (``bench/RESULTS.md``, "driver state").
    """

    def __init__(self) -> None:
        # storage folder -> (the staging folder copied there, {its file: (size, mtime)})
        self._copied: dict[str, tuple[str, dict[str, tuple[int, int]]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the syncer's last command, this object included, into every trial of
        # its snapshot: with what it copied (an entry per file) the snapshot grew with the
        # square of the trials (220 MB at 1,000). Unpickled, it copies everything once.
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def __call__(self, local_path: str, fs: pyarrow.fs.FileSystem, fs_path: str) -> None:
        import pyarrow.fs as pafs

        local = pafs.LocalFileSystem()
        options: dict[str, Any] = {"chunk_size": 64 * 1024 * 1024}  # Ray's chunk size
        s3 = getattr(pafs, "S3FileSystem", None)
        if s3 is not None and isinstance(fs, s3):
            options["use_threads"] = False  # as Ray: pyarrow's threaded S3 upload is unsafe
        source, copied = self._copied.get(fs_path, (local_path, {}))
        if source != local_path:  # another staging folder: its stamps say nothing here
            copied = {}
        self._copied[fs_path] = (local_path, copied)
        top, nested = _staged_files(local_path)
        changed = [(rel, stamp) for rel, stamp in nested if copied.get(rel) != stamp]
        fs.create_dir(fs_path, recursive=True)
        for folder in sorted({posixpath.dirname(rel) for rel, _ in changed}):
            fs.create_dir(posixpath.join(fs_path, folder), recursive=True)

        def copy(rel: str) -> None:
            pafs.copy_files(os.path.join(local_path, rel), posixpath.join(fs_path, rel),
                            source_filesystem=local, destination_filesystem=fs,
                            **{**options, "use_threads": False})

        if len(changed) > 8:  # many small files: their opens and writes overlap
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(copy, [rel for rel, _ in changed]))
        else:
            for rel, _ in changed:
                copy(rel)
        copied.update(changed)  # stamps from before the copy: a later append copies again
        # every state file to its temporary name, then the renames in a row: the snapshot
        # first (see the class docstring)
        top.sort(key=lambda n: not fnmatch.fnmatch(n, SNAPSHOT))
        for name in top:
            pafs.copy_files(os.path.join(local_path, name),
                            posixpath.join(fs_path, f".{name}{UPLOADING}"),
                            source_filesystem=local, destination_filesystem=fs, **options)
        for name in top:
            fs.move(posixpath.join(fs_path, f".{name}{UPLOADING}"), posixpath.join(fs_path, name))


def _staged_files(local_path: str) -> tuple[list[str], list[tuple[str, tuple[int, int]]]]:
    """The staging folder's top-level file names, and every file below them as
    ``(relative posix path, (size, mtime in ns))``."""
    top: list[str] = []
    nested: list[tuple[str, tuple[int, int]]] = []
    folders = [("", local_path)]
    while folders:
        rel_dir, path = folders.pop()
        with os.scandir(path) as scan:
            for entry in scan:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir(follow_symlinks=False):
                    folders.append((rel, entry.path))
                elif not rel_dir:
                    top.append(entry.name)
                else:
                    stat = entry.stat()
                    nested.append((rel, (stat.st_size, stat.st_mtime_ns)))
    return top, nested


def unreadable_state(exp_path: str) -> list[tuple[str, int, str]]:
    """The state files a restore of the Tune experiment at ``exp_path`` (a path or URI) would
    read but cannot: ``[(path on its file system, size in bytes, why)]``; empty when every one
    loads (or there is none yet). Loads them as Tune does: the snapshot as JSON, the rest
    with Ray's cloudpickle."""
    import pyarrow.fs as pafs
    from ray import cloudpickle

    from raygym.compat import storage_filesystem

    fs, fs_path = storage_filesystem(exp_path)
    infos = fs.get_file_info(pafs.FileSelector(fs_path, allow_not_found=True))
    names = [i.base_name for i in infos if i.type == pafs.FileType.File]
    unreadable = []
    for pattern in STATE_FILES:
        matching = fnmatch.filter(names, pattern)
        if not matching:
            continue
        path = posixpath.join(fs_path, max(matching))
        with fs.open_input_stream(path) as stream:
            data = stream.readall()
        try:
            if not data:
                raise ValueError("empty file")
            if pattern == SNAPSHOT:
                json.loads(data)
            else:
                cloudpickle.loads(data)
        except Exception as exc:  # noqa: BLE001 - any failure to load is the answer
            unreadable.append((path, len(data), f"{type(exc).__name__}: {exc}"[:200]))
    return unreadable


def _cut_short(size: int, why: str) -> bool:
    """Whether a load failure reads as a file that ends too early (not, e.g., a class that
    moved since the search was saved)."""
    return size == 0 or why.split(":", 1)[0] in ("EOFError", "UnpicklingError",
                                                  "JSONDecodeError")


def check_driver_state(exp_path: str) -> None:
    """Before a resume: raise :class:`~raygym.errors.DataError` naming the first state file
    of ``exp_path`` that a restore could not load. Tune would log "Restarting experiment"
    and run the whole search again beside the trials already run."""
    unreadable = unreadable_state(exp_path)
    if not unreadable:
        return
    path, size, why = unreadable[0]
    others = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
    if _cut_short(size, why):
        what = (f"is cut short{others}: {size} bytes, {why} (the search was stopped while "
                "saving it)")
        fix = "start the search again under another `name` (this folder is left as it is)"
    else:
        what = f"does not load{others}: {why}"
        fix = ("resume with the raygym and Ray versions that ran the search, or start it again "
               "under another `name` (this folder is left as it is)")
    raise DataError(f"cannot resume: Tune's saved state {what}; resuming would start the "
                    "search over", file=path, fix=fix)
