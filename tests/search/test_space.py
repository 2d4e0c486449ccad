"""The search space adapters (no Ray cluster): Optuna define-by-run, Tune domains, conditions,
encoded dict choices, budgets, and every shipped space file through ``--dry-run``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from raygym.cli import main
from raygym.search.space import (
    OptunaDefineByRun,
    active_params,
    budget,
    condition_met,
    decode_value,
    tune_param_space,
)
from raygym.search.space_config import (
    Distribution,
    SearchSpace,
    apply_params,
    load_experiment,
)

REPO = Path(__file__).resolve().parents[2]
SPACE_FILES = sorted((REPO / "search_spaces").glob("*.yaml"))
WEIGHTED = {"dice": 0.5, "cce": 0.5}

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def space_file(tmp_path: Path, write_config: Any, s2_config: dict[str, Any]) -> Path:
    """An S2 experiment with one distribution of every kind, a condition and a dict choice."""
    sections = s2_config
    sections["model"] = {
        "arch": {"choice": ["gym_unet", "gym_resunet"]},
        "filters": {"int": [2, 6]},
        "kernel": {"grid": [3, 5]},
        "dropout": {"uniform": [0.0, 0.3]},
        # only sampled for residual UNets
        "dropout_change_per_layer": {"uniform": [0.0, 0.1],
                                     "when": {"model.arch": ["gym_resunet"]}},
    }
    sections["loss"] = {"name": {"choice": ["dice", WEIGHTED]}}
    sections["train"] = {**sections["train"], "max_lr": {"loguniform": [1e-5, 1e-2]}}
    return write_config(tmp_path / "space.yaml", **sections)


@pytest.fixture
def space(space_file: Path) -> SearchSpace:
    return load_experiment(space_file)[1]


def _sample(space: SearchSpace, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` define-by-run samples from an in-memory study: (Optuna's raw params) per trial."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    fn = OptunaDefineByRun(space)
    out = []
    for _ in range(n):
        trial = study.ask()
        assert fn(trial) is None  # Tune reads the values back from trial.params
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def test_space_file_parses_every_kind(space: SearchSpace) -> None:
    kinds = {d.path: d.kind for d in space}
    assert kinds == {
        "model.arch": "choice", "model.filters": "int", "model.kernel": "grid",
        "model.dropout": "uniform", "model.dropout_change_per_layer": "uniform",
        "loss.name": "choice", "train.max_lr": "loguniform",
    }
    cond = next(d for d in space if d.path == "model.dropout_change_per_layer")
    assert cond.when == {"model.arch": ("gym_resunet",)}


def test_define_by_run_samples_every_kind_within_bounds(space: SearchSpace) -> None:
    samples = _sample(space, 40)
    for raw in samples:
        p = active_params(space, raw)
        assert p["model.arch"] in ("gym_unet", "gym_resunet")
        assert isinstance(p["model.filters"], int) and 2 <= p["model.filters"] <= 6
        assert p["model.kernel"] in (3, 5)
        assert 0.0 <= p["model.dropout"] <= 0.3
        assert 1e-5 <= p["train.max_lr"] <= 1e-2
        assert p["loss.name"] in ("dice", WEIGHTED)
    # 40 random draws cover both branches of every choice and spread over the log range
    assert {active_params(space, s)["model.arch"] for s in samples} == {"gym_unet",
                                                                        "gym_resunet"}
    lrs = [s["train.max_lr"] for s in samples]
    assert min(lrs) < 1e-4 and max(lrs) > 1e-3, "loguniform covers decades"


def test_condition_absent_when_false_present_when_true(space: SearchSpace) -> None:
    samples = _sample(space, 40, seed=1)
    seen_unet = seen_res = False
    for raw in samples:
        if raw["model.arch"] == "gym_unet":
            seen_unet = True
            assert "model.dropout_change_per_layer" not in raw, "not even sampled"
        else:
            seen_res = True
            assert 0.0 <= raw["model.dropout_change_per_layer"] <= 0.1
    assert seen_unet and seen_res


def test_dict_choice_is_json_encoded_for_optuna_and_decoded(space_file: Path) -> None:
    config, space = load_experiment(space_file)
    samples = _sample(space, 40, seed=2)
    raw_losses = {s["loss.name"] for s in samples}
    # Optuna only stores primitives: both choices are JSON strings in the study
    assert raw_losses == {json.dumps("dice"), json.dumps(WEIGHTED, sort_keys=True)}
    decoded = [active_params(space, s)["loss.name"] for s in samples]
    assert WEIGHTED in decoded and "dice" in decoded
    # the decoded weighted loss makes a valid trial config
    trial = apply_params(config, {"loss.name": WEIGHTED})
    assert trial.loss.name == WEIGHTED and trial.loss.label == "0.5*dice+0.5*cce"


def test_unencoded_values_pass_through_decode() -> None:
    """Random/grid search hands Tune the raw values: decoding must leave them alone."""
    mixed = Distribution(path="loss.name", kind="choice", values=("dice", WEIGHTED))
    assert decode_value(mixed, "dice") == "dice"
    assert decode_value(mixed, WEIGHTED) == WEIGHTED
    assert decode_value(mixed, json.dumps("dice")) == "dice"
    plain = Distribution(path="model.arch", kind="choice", values=("gym_unet", "gym_resunet"))
    assert decode_value(plain, "gym_unet") == "gym_unet"
    as_int = Distribution(path="model.filters", kind="int", low=2, high=6)
    assert decode_value(as_int, 4.0) == 4 and isinstance(decode_value(as_int, 4.0), int)


def test_tune_param_space_grid_vs_random(space: SearchSpace) -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    grid = tune_param_space(space, exhaustive_grid=True)
    rand = tune_param_space(space, exhaustive_grid=False)
    assert set(grid) == set(rand) == set(space.paths())
    # grid: every choice/grid key is an exhaustive grid_search
    assert grid["model.arch"] == {"grid_search": ["gym_unet", "gym_resunet"]}
    assert grid["model.kernel"] == {"grid_search": [3, 5]}
    assert grid["loss.name"] == {"grid_search": ["dice", WEIGHTED]}
    # random: categorical domains; numbers are domains in both modes
    assert isinstance(rand["model.arch"], Categorical)
    assert rand["model.arch"].categories == ["gym_unet", "gym_resunet"]
    for d in (grid, rand):
        assert isinstance(d["model.filters"], Integer)
        assert (d["model.filters"].lower, d["model.filters"].upper) == (2, 7)  # upper exclusive
        assert isinstance(d["train.max_lr"], Float)
        assert type(d["train.max_lr"].sampler).__name__.lstrip("_") == "LogUniform"
        assert type(d["model.dropout"].sampler).__name__.lstrip("_") == "Uniform"
        assert (d["train.max_lr"].lower, d["train.max_lr"].upper) == (1e-5, 1e-2)
    # random samples stay in range
    draws = [rand["model.filters"].sample() for _ in range(50)]
    assert min(draws) >= 2 and max(draws) <= 6


def test_active_params_drops_unmet_conditions(space: SearchSpace) -> None:
    sampled = {"model.arch": "gym_unet", "model.filters": 4, "model.kernel": 3,
               "model.dropout": 0.1, "model.dropout_change_per_layer": 0.05,
               "loss.name": "dice", "train.max_lr": 1e-3, "not.in.space": 1}
    kept = active_params(space, sampled)
    assert "model.dropout_change_per_layer" not in kept
    assert "not.in.space" not in kept
    assert list(kept) == [p for p in space.paths() if p in kept], "file order"
    kept = active_params(space, {**sampled, "model.arch": "gym_resunet"})
    assert kept["model.dropout_change_per_layer"] == 0.05
    cond = next(d for d in space if d.when)
    assert not condition_met(cond, {}), "a condition on an unsampled key is unmet"


def test_budget_grid_and_optuna(space: SearchSpace) -> None:
    grid_file = REPO / "search_spaces" / "landsat_grid.yaml"
    config, grid_space = load_experiment(grid_file)
    b = budget(grid_space, config.search.num_samples, config.train.max_epochs,
               config.search.algorithm)
    assert b == {"trials": 30, "max_epochs_per_trial": 100, "max_total_epochs": 3000}
    # grid with repeats: num_samples per grid point
    assert budget(grid_space, 2, 10, "grid")["trials"] == 60
    # optuna / random: num_samples trials whatever the space
    assert budget(space, 7, 5, "optuna") == {"trials": 7, "max_epochs_per_trial": 5,
                                              "max_total_epochs": 35}
    assert budget(space, 7, 5, "random")["trials"] == 7


@pytest.mark.parametrize("path", SPACE_FILES, ids=lambda p: p.name)
def test_shipped_space_files_load_and_dry_run(path: Path, capsys: pytest.CaptureFixture
                                              ) -> None:
    config, space = load_experiment(path)
    assert space, f"{path.name} has no distributions"
    assert main(["search", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "budget:" in out and config.name in out
    for d in space:
        assert d.path in out


def test_shipped_spaces_exist() -> None:
    assert {p.name for p in SPACE_FILES} >= {"demo.yaml", "landsat.yaml", "landsat_grid.yaml"}


def test_runs_of_one_configuration_share_a_runs_key_whatever_their_seed_or_repeat() -> None:
    from raygym.search.space import REPEAT_KEY, config_key, runs_key

    base = {"model.filters": 4, "train.max_lr": 1e-3}
    runs = [base, {**base, "train.seed": 1}, {**base, "train.seed": 2, REPEAT_KEY: 1}]
    assert len({runs_key(p) for p in runs}) == 1
    # the searcher's identity still tells another seed apart: it is another point
    assert config_key(runs[1]) != config_key(runs[2]) and config_key(base) != config_key(runs[1])
    assert runs_key({**base, "model.filters": 8}) != runs_key(base)


def test_a_repeat_trains_at_its_trials_seed_plus_its_run(tmp_path: Path, write_config: Any,
                                                         s2_config: dict[str, Any]) -> None:
    from raygym.search.space import REPEAT_KEY, trial_config

    sections = {**s2_config, "train": {**s2_config["train"], "seed": 7,
                                       "max_lr": {"choice": [1e-3, 1e-2]}}}
    config, space = load_experiment(write_config(tmp_path / "s.yaml", **sections))
    assert trial_config({"train.max_lr": 1e-3}, config, space)[0].train.seed == 7
    assert trial_config({"train.max_lr": 1e-3, REPEAT_KEY: 2}, config, space)[0].train.seed == 9
    sections["train"]["seed"] = {"choice": [0, 5]}  # a searched seed: its repeat from it
    config, space = load_experiment(write_config(tmp_path / "t.yaml", **sections))
    params = {"train.max_lr": 1e-3, "train.seed": 5}
    assert trial_config(params, config, space)[0].train.seed == 5
    assert trial_config({**params, REPEAT_KEY: 1}, config, space)[0].train.seed == 6
