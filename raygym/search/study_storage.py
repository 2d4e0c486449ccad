"""Where a search's Optuna study lives: Optuna's journal file ``RESULTS/optuna.journal``.

Optuna's ``JournalStorage`` appends each operation to one file (a line of JSON, fsynced) and
answers every query from its in-memory replay of that file, reading only the lines added
since. The SQLite ``RDBStorage`` used before re-read every RUNNING trial with five SQL queries
on each query, three times per suggestion: at 32 trials at once that was ~45 ms per
suggestion and half of the search driver's CPU (bench/RESULTS.md, bench_scale). The journal
needs no server, survives a killed driver (a line is written whole or not at all),
``optuna-dashboard RESULTS/optuna.journal`` opens it, and resuming replays it.

Searches written before (``RESULTS/optuna.db``, SQLite) are still read, and a resumed one
keeps its SQLite study (:func:`fast_sqlite`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STUDY_FILE = "optuna.journal"
LEGACY_STUDY_FILE = "optuna.db"  # SQLite, raygym before 2026-12-03


def journal_storage(path: Path) -> Any:
    """An Optuna ``JournalStorage`` on the file ``path`` (created when missing)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def search_storage(results: Path) -> Any:
    """The storage a search in ``results`` writes its study to: the journal, or the SQLite
    study of an older search that is being resumed (WAL on, see :func:`fast_sqlite`)."""
    existing = study_file(results)
    if existing is not None and existing.name == LEGACY_STUDY_FILE:
        from optuna.storages import RDBStorage

        storage = RDBStorage(f"sqlite:///{existing}")
        fast_sqlite(storage)
        return storage
    return journal_storage(results / STUDY_FILE)


def study_file(results: Path) -> Path | None:
    """The study file of the search in ``results``: the journal, else a SQLite study written
    by an older raygym; None when the search has none (random / grid, or not started)."""
    for name in (STUDY_FILE, LEGACY_STUDY_FILE):
        if (results / name).is_file():
            return results / name
    return None


def dashboard_argument(path: Path) -> str:
    """What ``optuna-dashboard`` takes for the study file ``path``: the journal's path, or a
    ``sqlite:///`` URL."""
    path = path.resolve()
    return f"sqlite:///{path}" if path.name == LEGACY_STUDY_FILE else str(path)


def open_study_storage(path: Path) -> Any:
    """A storage for ``optuna.load_study`` on an existing study file (journal or SQLite)."""
    if path.name == LEGACY_STUDY_FILE:
        return f"sqlite:///{path}"
    if not path.is_file():  # the journal backend would create it
        raise FileNotFoundError(path)
    return journal_storage(path)


def fast_sqlite(storage: Any) -> None:
    """WAL + ``synchronous=NORMAL`` on every new connection of an ``RDBStorage``'s engine (a
    study of an older search, resumed): a commit no longer waits for fsync, and a read no
    longer rereads the whole file after this process's own writes. Its pickled copies lose
    the hook: call again after unpickling. Not SQLite: nothing."""
    from sqlalchemy import event

    engine = storage.engine
    if engine.dialect.name != "sqlite":
        return

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    if not event.contains(engine, "connect", pragmas):
        event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections Optuna opened to create its tables lack the pragmas
