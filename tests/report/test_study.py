"""The Optuna study section: importances from a study in ``optuna.journal`` (or an older
search's ``optuna.db``), notes when the study file is missing or unreadable, and parallel
coordinates from the leaderboard either way."""

from __future__ import annotations

from pathlib import Path

from raygym.report.document import ReportDocument
from raygym.report.results import load_results
from raygym.report.study import optuna_section
from raygym.search.study_storage import LEGACY_STUDY_FILE, STUDY_FILE, journal_storage

from . import PNG_MAGIC, write_bare_leaderboard


def _optuna(results: Path) -> list[tuple[str, object]]:
    doc = ReportDocument(results)
    optuna_section(doc, load_results(results))
    (section,) = doc.sections
    return [(b.kind, b.data) for b in section.blocks]


def _write_study(db: Path, name: str, n_trials: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = journal_storage(db) if db.name == STUDY_FILE else f"sqlite:///{db}"
    study = optuna.create_study(study_name=name, storage=storage,
                                direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(lambda t: t.suggest_categorical("model.filters", [2, 4])
                   + t.suggest_float("train.max_lr", 1e-4, 1e-2, log=True), n_trials=n_trials)


def test_importances_and_parallel_coordinates(tmp_path: Path) -> None:
    """A study named otherwise than the folder is still found when it is the only one."""
    results = write_bare_leaderboard(tmp_path)
    _write_study(results / STUDY_FILE, "another_name", n_trials=12)
    blocks = _optuna(results)
    assert blocks[0][0] == "p" and "Study 'another_name' (maximize): 12 complete" in blocks[0][1]
    figures = [data[0].name for kind, data in blocks if kind == "figure"]
    assert figures == ["importances.png", "parallel.png"]
    assert not [d for k, d in blocks if k == "note"]  # 12 trials: no "unstable" warning
    assert all((tmp_path / f).read_bytes()[:8] == PNG_MAGIC for f in figures)


def test_few_trials_and_missing_or_damaged_db(tmp_path: Path) -> None:
    results = write_bare_leaderboard(tmp_path)
    blocks = _optuna(results)
    assert "no Optuna study (optuna.journal" in blocks[0][1]
    assert [data[0].name for kind, data in blocks if kind == "figure"] == ["parallel.png"]
    (results / STUDY_FILE).write_text("not a journal\n")
    assert "could not open the Optuna study in optuna.journal" in _optuna(results)[0][1]
    (results / STUDY_FILE).unlink()
    _write_study(results / STUDY_FILE, tmp_path.name, n_trials=1)
    notes = [d for k, d in _optuna(results) if k == "note"]
    assert "parameter importances need at least 2 complete trials; the study has 1." in notes


def test_an_older_searchs_sqlite_study_is_still_read(tmp_path: Path) -> None:
    results = write_bare_leaderboard(tmp_path)
    _write_study(results / LEGACY_STUDY_FILE, tmp_path.name, n_trials=3)
    assert f"Study '{tmp_path.name}' (maximize): 3 complete" in _optuna(results)[0][1]
