"""Before a resume, the state files Tune's restore will read are read first; one that does not
load is refused with one line, instead of Tune's silent restart.

Tune's driver saves its state (the experiment snapshot ``experiment_state-<session>.json``,
the searcher's ``search_gen_state-`` and ``searcher-state-`` files, callback states) into a
local staging folder and copies that folder to storage in the background, writing each file in
place (Ray's ``_upload_to_fs_path``). A driver killed during the copy (seen in CI: SIGKILL of
the search's job) left the searcher's files 0 bytes long; ``Tuner.restore`` then could not load
them, logged "Restarting experiment" and ran the search anew: the trials already run were
orphaned and the leaderboard listed only the new ones. (An upload that writes each state file
beside its old version and renames it over was built and measured; it was not kept:
``bench/RESULTS.md``, bench_scale, twelfth pass.)
"""

from __future__ import annotations

import fnmatch
import json
import posixpath

from raygym.errors import DataError

# The files a restore reads, by pattern: Tune reads the newest name of each (max of names).
SNAPSHOT = "experiment_state-*.json"
STATE_FILES = (SNAPSHOT, "search_gen_state-*.json", "searcher-state-*.pkl",
               "basic-variant-state-*.json", "callback-states-*.pkl")


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
        if not data:
            unreadable.append((path, 0, "empty file"))
            continue
        try:
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


def unfinished_trials(exp_path: str) -> set[str]:
    """Trial ids that the newest snapshot of the Tune experiment at ``exp_path`` (an absolute
    path or URI) leaves unfinished. A search that ran to its end leaves every trial
    TERMINATED or ERROR; one stopped by Ctrl-C (Tune catches the first one, saves its state
    and returns as if done) leaves the trials it cut short PENDING, to go on at a resume."""
    import logging

    from raygym.compat import snapshot_trials

    try:
        trials = snapshot_trials(exp_path)
    except Exception as exc:  # noqa: BLE001 - the results are written whatever this says
        logging.getLogger(__name__).warning("could not read %s's snapshot: %s", exp_path, exc)
        return set()
    return {t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")}
