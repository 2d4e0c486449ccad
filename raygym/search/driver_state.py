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
import shutil
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
# The folder of links to the trial folders that one upload copies (beside the staging folder).
VIEW = "raygym_upload_view"


class StagingUploads:
    """Tune's upload of the driver's staging folder: call it as
    ``upload(local_path, fs, fs_path)``; one instance per search.

    Everything is copied in one call into pyarrow, as Ray copies it, but through a folder of
    links beside the staging folder (``raygym_upload_view``, in Ray's session folder): the
    sub-folders (trial logs, appended to) under their own names, so they are copied in place,
    and each top-level file (the state) as ``.NAME.uploading``. One call matters: the copy runs
    in a thread of the driver, and a copy made file by file from Python waits for the
    interpreter's lock at every file while Tune's loop runs (a sync of 350 files took 19 s
    instead of 0.4 s; ``bench/RESULTS.md``, twelfth pass).

    Then each state file is renamed over its old version, the experiment snapshot first. A rename is atomic on a local or network file system; an object store
    writes each object whole. A driver killed between two renames leaves a snapshot newer
    than the searcher's state: the trials the searcher had not heard of are run to their end
    unreported, their Optuna trials are closed as orphans
    (:meth:`~raygym.search.optuna_search.TruthfulOptunaSearch.restore`) and the searcher, whose
    count is behind, suggests that many more; the other order would leave Optuna trials of
    trials Tune never restores running for ever, and the search short of them.
    """

    def __init__(self) -> None:
        # link folder -> (the staging folder linked to, the link names in it)
        self._linked: dict[str, tuple[str, set[str]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles the syncer's last command, this object included, into every trial of
        # its snapshot: anything kept here is stored once per trial (a record of every file
        # copied made the snapshot 220 MB at 1,000 trials). Unpickled, it starts afresh.
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
        with os.scandir(local_path) as scan:
            entries = list(scan)
        top = [e.name for e in entries if e.is_file(follow_symlinks=False)]
        # trial folders under their names, state files under their temporary names
        links = {e.name: e.name for e in entries if e.is_dir(follow_symlinks=False)}
        links.update((f".{name}{UPLOADING}", name) for name in top)
        fs.create_dir(fs_path, recursive=True)
        if links:
            pafs.copy_files(self._links(local_path, links), fs_path,
                            source_filesystem=local, destination_filesystem=fs, **options)
        # then the renames in a row: the snapshot first (see the class docstring)
        top.sort(key=lambda n: not fnmatch.fnmatch(n, SNAPSHOT))
        for name in top:
            fs.move(posixpath.join(fs_path, f".{name}{UPLOADING}"), posixpath.join(fs_path, name))

    def _links(self, local_path: str, links: dict[str, str]) -> str:
        """The folder beside ``local_path`` holding, for each ``{link name: entry of
        local_path}``, a link to that entry (made for new names, removed for gone ones); made
        afresh (links only) on this instance's first call."""
        view = os.path.join(os.path.dirname(local_path.rstrip(os.sep)), VIEW)
        source, linked = self._linked.get(view, ("", set()))
        if source != local_path:  # first call, or links to another staging folder
            shutil.rmtree(view, ignore_errors=True)  # removes links, never their targets
            os.makedirs(view)
            linked = set()
        self._linked[view] = (local_path, linked)
        for name in links.keys() - linked:
            os.symlink(os.path.join(local_path, links[name]), os.path.join(view, name))
        for name in linked - links.keys():
            os.unlink(os.path.join(view, name))
        linked.clear()
        linked.update(links)
        return view


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
