"""A trial's config: the searcher's sampled values decoded once and set on the validated
search config (the Tune functions themselves run in the end-to-end search tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from raygym.errors import ConfigError
from raygym.search.space import REPEAT_KEY, trial_config
from raygym.search.space_config import load_experiment

WEIGHTED = {"dice": 0.5, "cce": 0.5}


def _search(tmp_path: Path, write_config: Any, s2_config: dict[str, Any]) -> Any:
    s2_config["model"] = {
        "arch": {"choice": ["gym_unet", "gym_resunet"]},
        "filters": {"int": [2, 6]},
        "dropout_change_per_layer": {"uniform": [0.0, 0.1],
                                     "when": {"model.arch": ["gym_resunet"]}},
    }
    s2_config["loss"] = {"name": {"choice": ["dice", WEIGHTED]}}
    return load_experiment(write_config(tmp_path / "space.yaml", **s2_config))


def test_sampled_values_are_decoded_and_set_once(tmp_path, write_config, s2_config) -> None:
    config, space = _search(tmp_path, write_config, s2_config)
    sampled = {"model.arch": "gym_unet", "model.filters": 5.0,  # Optuna's encoded values
               "model.dropout_change_per_layer": 0.05,  # its condition does not hold
               "loss.name": json.dumps(WEIGHTED, sort_keys=True)}
    trial, active = trial_config(sampled, config, space)
    assert active == {"model.arch": "gym_unet", "model.filters": 5, "loss.name": WEIGHTED}
    assert trial.model.filters == 5 and isinstance(trial.model.filters, int)
    assert trial.model.dropout_change_per_layer == config.model.dropout_change_per_layer
    assert trial.loss.name == WEIGHTED
    assert trial.train.seed == config.train.seed and trial.data == config.data


def test_a_repeat_trains_with_the_next_seed(tmp_path, write_config, s2_config) -> None:
    config, space = _search(tmp_path, write_config, s2_config)
    sampled = {"model.arch": "gym_resunet", "model.filters": 3, "loss.name": "dice",
               "model.dropout_change_per_layer": 0.05, REPEAT_KEY: 1}
    trial, active = trial_config(sampled, config, space)
    assert REPEAT_KEY not in active and trial.model.dropout_change_per_layer == 0.05
    assert trial.train.seed == config.train.seed + 1


def test_an_invalid_value_names_its_key(tmp_path, write_config, s2_config) -> None:
    config, space = _search(tmp_path, write_config, s2_config)
    with pytest.raises(ConfigError) as info:
        trial_config({"model.arch": "gym_unet", "model.filters": 0, "loss.name": "dice"},
                     config, space)
    assert info.value.key == "model.filters"


def test_a_resume_skips_checkpoints_that_a_killcut_short(tmp_path: Path) -> None:
    """The registered checkpoint is gone (mended: an empty folder) and the newest one beside
    it was cut short mid-copy: the trial resumes from the newest whole one; with none whole it
    starts again and ``dest`` is left empty."""
    from ray.tune import Checkpoint

    from raygym.search.trainable import fetch_checkpoint
    from tests.train import cut_short, whole_checkpoint

    trial = tmp_path / "trial"
    for epoch in (1, 2, 3):
        whole_checkpoint(trial / f"checkpoint_00000{epoch}", epoch)
    cut_short(trial / "checkpoint_000003" / "model.safetensors")
    (trial / "checkpoint_000004").mkdir()  # what mend_checkpoints leaves
    dest = tmp_path / "dest"
    dest.mkdir()
    assert fetch_checkpoint(Checkpoint(str(trial / "checkpoint_000004")), dest)
    assert json.loads((dest / "state.json").read_text())["epoch"] == 2

    (tmp_path / "whole").mkdir()  # a whole registered checkpoint is used as it is
    assert fetch_checkpoint(Checkpoint(str(trial / "checkpoint_000001")), tmp_path / "whole")
    assert json.loads((tmp_path / "whole" / "state.json").read_text())["epoch"] == 1

    for epoch in (1, 2):
        (trial / f"checkpoint_00000{epoch}" / "state.json").write_text("")
    assert not fetch_checkpoint(Checkpoint(str(trial / "checkpoint_000004")), dest)
    assert list(dest.iterdir()) == []
