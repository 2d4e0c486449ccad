"""Search distributions in an experiment file: parsing, conditions, the keys that cannot vary,
candidate validation, trial values set on a config (``apply_params``) and ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raygym.config import ExperimentConfig
from raygym.errors import ConfigError
from raygym.search.space_config import (
    SearchSpace,
    apply_params,
    load_experiment,
    require_fixed,
)


def _load(tmp_path: Path, write_config: Any, sections: dict[str, Any], **kw: Any
          ) -> tuple[ExperimentConfig, SearchSpace]:
    return load_experiment(write_config(tmp_path / "exp.yaml", **sections), **kw)


def _error(tmp_path: Path, write_config: Any, sections: dict[str, Any]) -> ConfigError:
    """The error loading ``sections`` raises: one line, naming the file."""
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, write_config, sections)
    assert "\n" not in str(info.value) and str(tmp_path / "exp.yaml") in str(info.value)
    return info.value


def test_distributions_are_parsed(tmp_path, write_config, s2_config) -> None:
    s2_config["model"] = {
        "arch": {"choice": ["gym_unet", "unet"]},
        "filters": {"grid": [2, 4, 8]},
        "kernel": {"int": [3, 7]},
        "encoder": {"choice": ["resnet18", "resnet34"], "when": {"model.arch": ["unet"]}},
        "dropout": {"uniform": [0.0, 0.3]},
    }
    s2_config["train"]["max_lr"] = {"loguniform": [1e-5, 1e-2]}
    config, space = _load(tmp_path, write_config, s2_config)
    dists = {d.path: d for d in space}
    assert space.paths() == ["model.arch", "model.filters", "model.kernel", "model.encoder",
                             "model.dropout", "train.max_lr"]
    assert dists["model.arch"].kind == "choice"
    assert dists["model.arch"].values == ("gym_unet", "unet")
    assert dists["model.filters"].kind == "grid" and dists["model.filters"].size() == 3
    assert dists["model.kernel"].kind == "int"
    assert (dists["model.kernel"].low, dists["model.kernel"].high) == (3, 7)
    assert dists["model.kernel"].size() == 5
    assert dists["model.encoder"].when == {"model.arch": ("unet",)}
    assert dists["model.dropout"].size() == float("inf")
    assert dists["train.max_lr"].kind == "loguniform"
    assert dists["train.max_lr"].low == pytest.approx(1e-5)
    assert space.grid_size() == 3
    # the fixed config holds each distribution's first candidate
    assert config.model.arch == "gym_unet" and config.model.filters == 2
    assert config.model.kernel == 3 and config.train.max_lr == pytest.approx(1e-5)
    assert "when model.arch in ['unet']" in dists["model.encoder"].describe()


def test_when_must_refer_to_an_earlier_searched_key(tmp_path, write_config, s2_config) -> None:
    s2_config["model"]["filters"] = {"choice": [2, 4], "when": {"model.arch": ["unet"]}}
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "model.filters" and "model.arch" in err.message


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"uniform": [1e-3, 1e-5]}, "reversed"),
        ({"uniform": [1e-3, 1e-3]}, "reversed or equal"),
        ({"loguniform": [0, 1e-3]}, "bounds > 0"),
        ({"loguniform": [-1e-3, 1e-3]}, "bounds > 0"),
        ({"uniform": [1e-5]}, "two numbers"),
        ({"choice": []}, "non-empty list"),
        ({"choice": [1e-3], "uniform": [0, 1]}, "exactly one"),
    ],
)
def test_bad_distributions(tmp_path, write_config, s2_config, spec, words) -> None:
    s2_config["train"]["max_lr"] = spec
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "train.max_lr"
    assert words in err.message


def test_reversed_bounds_suggest_the_fix(tmp_path, write_config, s2_config) -> None:
    s2_config["train"]["max_lr"] = {"loguniform": [1e-2, 1e-5]}
    err = _error(tmp_path, write_config, s2_config)
    assert err.fix == "write [1e-05, 0.01]"


def test_a_plain_list_of_values_is_told_how_to_search_them(tmp_path, write_config,
                                                           s2_config) -> None:
    s2_config["model"]["filters"] = [2, 4]
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "model.filters" and "valid integer" in err.message
    assert err.fix.startswith("to search over these values (raygym search) write "
                              "{choice: [2, 4]}; for one value: write a whole number")
    # a key that takes a list keeps its own message
    s2_config["model"]["filters"] = 4
    s2_config["data"]["classes"] = ["water"]
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "data.classes" and "choice" not in str(err)


def test_int_distribution_needs_integer_bounds(tmp_path, write_config, s2_config) -> None:
    s2_config["model"]["kernel"] = {"int": [3, 7.5]}
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "model.kernel" and "integer bounds" in err.message


@pytest.mark.parametrize("path", ["data.target_size", "data.augment.copies", "name",
                                  "train.output_dir", "train.init_weights", "mlflow.enabled"])
def test_distribution_on_a_fixed_key_is_refused(tmp_path, write_config, s2_config, path) -> None:
    section, *rest = path.split(".")
    spec = {"choice": [64, 128]} if path != "name" else {"choice": ["a", "b"]}
    if rest:
        node = s2_config.setdefault(section, {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        node[rest[-1]] = spec
    else:
        s2_config[section] = spec
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == path and "cannot vary" in err.message


def test_a_search_from_init_weights_varies_no_layer_size(tmp_path, write_config,
                                                         s2_config) -> None:
    from raygym.search.run import check_space

    s2_config["train"]["init_weights"] = "models/site_a"
    s2_config["model"]["dropout"] = {"choice": [0.0, 0.2]}  # no weight changes shape
    config, space = _load(tmp_path, write_config, s2_config)
    assert config.train.init_weights == Path("models/site_a").resolve()  # as other paths
    check_space(config, space, "exp.yaml")
    s2_config["model"]["filters"] = {"choice": [4, 8]}
    config, space = _load(tmp_path, write_config, s2_config)
    with pytest.raises(ConfigError) as info:
        check_space(config, space, "exp.yaml")
    assert info.value.key == "model.filters" and "train.init_weights" in info.value.message


def test_every_candidate_is_validated(tmp_path, write_config, s2_config) -> None:
    # the first candidate is fine; the second would fail only inside a trial
    s2_config["model"]["filters"] = {"choice": [2, 1000]}
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "model.filters" and "candidate 1000" in err.message


def test_require_fixed_refuses_distributions(tmp_path, write_config, s2_config) -> None:
    s2_config["model"]["filters"] = {"choice": [2, 4]}
    path = write_config(tmp_path / "exp.yaml", **s2_config)
    _, space = load_experiment(path)
    for command in ("prepare", "train"):
        with pytest.raises(ConfigError) as info:
            require_fixed(space, command, str(path))
        assert info.value.key == "model.filters"
        assert f"`raygym {command}`" in str(info.value) and "choice [2, 4]" in str(info.value)
    require_fixed(load_experiment(write_config(tmp_path / "fixed.yaml", **{
        **s2_config, "model": {"arch": "gym_unet", "filters": 2}}))[1], "train", "x")


def test_apply_params_sets_dotted_keys(tmp_path, write_config, s2_config) -> None:
    config, _ = _load(tmp_path, write_config, s2_config)
    trial = apply_params(config, {"model.filters": 6, "train.max_lr": 3e-4,
                                  "loss.name": {"dice": 0.5, "cce": 0.5}})
    assert trial.model.filters == 6
    assert trial.train.max_lr == pytest.approx(3e-4)
    assert trial.loss.label == "0.5*dice+0.5*cce"
    assert config.model.filters == 2, "the original is not changed"
    assert trial.data == config.data
    with pytest.raises(ConfigError) as info:
        apply_params(config, {"model.filters": 0})
    assert info.value.key == "model.filters"


def test_overrides_set_dotted_keys(tmp_path, write_config, s2_config) -> None:
    config, _ = _load(tmp_path, write_config, s2_config,
                      overrides={"train.max_epochs": 7, "search.num_samples": 3})
    assert config.train.max_epochs == 7 and config.search.num_samples == 3
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, write_config, s2_config, overrides={"data.images.folder": "x"})
    assert info.value.key == "data.images.folder" and "not a section" in info.value.message
