"""A resume refuses, with one line, Tune state that a restore could not load (Tune would start
the search over)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray import cloudpickle

from raygym.errors import DataError
from raygym.search.driver_state import check_driver_state, unreadable_state


def test_resume_check_names_the_state_a_restore_could_not_load(tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    exp.mkdir()
    check_driver_state(str(exp))  # nothing saved yet: nothing to refuse
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (exp / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(
        cloudpickle.dumps({"_metric": "val_mean_iou"}))
    check_driver_state(str(exp))
    # a newer session's searcher state, cut short: Tune would read it (the newest name)
    cut = exp / "searcher-state-2026-01-02_00-00-00.pkl"
    cut.write_bytes(b"")
    with pytest.raises(DataError) as info:
        check_driver_state(str(exp))
    assert info.value.file == str(cut)
    assert "cut short" in str(info.value) and "0 bytes" in str(info.value)
    cut.write_bytes(cloudpickle.dumps({"_metric": "val_mean_iou"})[:-7])
    [(path, size, why)] = unreadable_state(str(exp))
    assert path == str(cut) and size > 0 and why
    # a state that loads no more for another reason is not called cut short
    cut.write_bytes(b"craygym_gone_module\nX\n.")  # a class from a module since removed
    with pytest.raises(DataError) as info:
        check_driver_state(str(exp))
    assert "does not load" in str(info.value) and "ModuleNotFoundError" in str(info.value)
    assert "cut short" not in str(info.value)
    (exp / "experiment_state-2026-01-02_00-00-00.json").write_text('{"trial_data": [')
    assert [p for p, _, _ in unreadable_state(str(exp))] == [
        str(exp / "experiment_state-2026-01-02_00-00-00.json"), str(cut)]
