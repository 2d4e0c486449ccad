"""The search's study file: Optuna's journal, fsynced at a trial's creation and end and
otherwise at most every ``SYNC_EVERY_S``, and whole either way."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from raygym.search.study_storage import SYNC_EVERY_S, JournalFile, open_study_storage


def test_a_trial_is_synced_at_its_creation_and_end_and_its_scores_at_most_every_second(
        tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = JournalFile(str(tmp_path / "optuna.journal"))
    study = optuna.create_study(storage=JournalStorage(backend), study_name="s",
                                direction="maximize")
    created = backend.synced
    assert created > 0  # the study's creation
    trial = study.ask()
    asked = backend.synced
    assert asked > created  # the trial's creation
    trial.suggest_int("filters", 2, 8)
    trial.report(0.25, 1)
    assert backend.synced == asked  # within SYNC_EVERY_S: written, not synced
    backend.synced = time.monotonic() - SYNC_EVERY_S
    trial.report(0.5, 2)
    assert backend.synced > asked  # a second since the last fsync
    late = backend.synced
    study.tell(trial, 0.5)
    assert backend.synced > late  # the trial's end

    # every line reached the file, synced or not
    again = optuna.load_study(study_name="s",
                              storage=open_study_storage(tmp_path / "optuna.journal"))
    [frozen] = again.trials
    assert frozen.state == TrialState.COMPLETE and frozen.value == 0.5
    assert frozen.intermediate_values == {1: 0.25, 2: 0.5}
    assert frozen.params == {"filters": trial.params["filters"]}
