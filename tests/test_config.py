"""The experiment schema: loading, validation messages, paths, fingerprints."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from raygym.cli import _parse_overrides
from raygym.config import ExperimentConfig, dump_yaml
from raygym.errors import ConfigError
from raygym.search.space_config import load_experiment


def _load(tmp_path: Path, write_config: Any, sections: dict[str, Any], **kw: Any
          ) -> tuple[ExperimentConfig, Any]:
    return load_experiment(write_config(tmp_path / "exp.yaml", **sections), **kw)


def _error(tmp_path: Path, write_config: Any, sections: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, write_config, sections)
    text = str(info.value)
    assert "\n" not in text, "errors are one line"
    assert str(tmp_path / "exp.yaml") in text, "errors name the file"
    return info.value


def test_valid_s2_config_loads(tmp_path, write_config, s2_config) -> None:
    config, space = _load(tmp_path, write_config, s2_config)
    assert not space
    assert config.data.num_classes == 4
    assert config.data.classes == ["water", "surf", "wet_sand", "dry_land"]
    assert config.data.remap == {1: 0, 2: 1, 3: 2, 4: 3}
    assert config.data.target_size == (64, 64)
    assert config.data.extra_bands[0].key == r"^(.*)_ir(-\d+)$"
    assert config.data.augment.copies == 1 and config.data.augment.hflip
    assert config.model.arch == "gym_unet" and config.model.filters == 2
    assert config.train.precision == "fp32" and config.train.max_lr == pytest.approx(1e-3)
    # defaults fill the sections the file leaves out
    assert config.search.metric == "val_mean_iou"
    assert config.resources.workers_per_trial == 1


def test_round_trip_through_dump_yaml(tmp_path, write_config, s2_config) -> None:
    config, _ = _load(tmp_path, write_config, s2_config)
    out = tmp_path / "resolved.yaml"
    dump_yaml(config, out)
    again, space = load_experiment(out)
    assert again == config and not space
    assert again.fingerprint("data") == config.fingerprint("data")
    assert not list(tmp_path.glob("*.tmp"))


def test_exponents_without_a_dot_are_numbers(tmp_path, write_config, s2_config) -> None:
    """PyYAML (YAML 1.1) reads ``1e-4`` as a string: a choice of learning rates written so
    searched two strings. raygym reads them as YAML 1.2 does, and writes back what it reads."""
    from raygym.config.base import dump_yaml_text, load_yaml

    assert load_yaml("[1e-4, -2E+3, 1.5e-7, 10, 1_0e1, '1e-4', 1e-4x]") == [
        1e-4, -2000.0, 1.5e-7, 10, 100.0, "1e-4", "1e-4x"]
    data = {"lr": 1e-4, "name": "1e5", "tiny": 1e-7, "classes": ["1e5", "sand"]}
    assert load_yaml(dump_yaml_text(data)) == data
    s2_config["train"] = {"max_lr": "REPLACED"}
    path = write_config(tmp_path / "e.yaml", **s2_config)
    path.write_text(path.read_text().replace("REPLACED", "{choice: [1e-3, 1e-4]}"))
    _, space = load_experiment(path)
    assert space.dists[0].values == (1e-3, 1e-4)
    assert _parse_overrides(["train.max_lr=1e-2"]) == {"train.max_lr": 1e-2}  # --set


def test_a_config_pickled_before_the_sections_moved_still_loads(tmp_path, write_config,
                                                               s2_config) -> None:
    import pickle

    config, _ = _load(tmp_path, write_config, s2_config)
    # protocol 2 names each class as "module\nname\n": rewrite the sections' modules to the
    # one module they lived in before (Tune's saved experiments hold such pickles)
    blob = pickle.dumps(config, protocol=2)
    old = blob
    for module in (b"raygym.config.data", b"raygym.config.training", b"raygym.config.run"):
        old = old.replace(module + b"\n", b"raygym.config\n")
    assert old != blob and b"raygym.config.run" not in old
    assert pickle.loads(old) == config


def test_unknown_key_names_path_and_suggests(tmp_path, write_config, s2_config) -> None:
    s2_config["model"]["filter"] = 4
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "model.filter"
    assert "did you mean 'filters'?" in str(err)
    assert "kernel" in str(err)  # lists the valid keys of that section


def test_unknown_key_inside_a_list_item(tmp_path, write_config, s2_config) -> None:
    s2_config["data"]["extra_bands"][0]["keys"] = "x"
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "data.extra_bands.0.keys"
    assert "did you mean 'key'?" in str(err)
    assert "folder, key" in str(err)


def test_unknown_top_level_section(tmp_path, write_config, s2_config) -> None:
    s2_config["trian"] = {"batch_size": 4}
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "trian" and "did you mean 'train'?" in str(err)


def test_wrong_type_names_key(tmp_path, write_config, s2_config) -> None:
    s2_config["train"]["batch_size"] = "eight"
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "train.batch_size"
    assert "integer" in err.message and "'eight'" in err.message


@pytest.mark.parametrize(("search", "key", "words"), [
    ({"grace_period": "soon"}, "search.grace_period", "or auto"),
    ({"grace_period": 0}, "search.grace_period", ">= 1"),
    ({"grace_period": "auto", "scheduler": "pbt"}, "search.grace_period", "scheduler: median"),
    ({"grace_period": "auto", "grace_trials": 2}, "search.grace_trials", "greater than"),
])
def test_grace_period_is_epochs_or_auto(tmp_path, write_config, s2_config, search, key,
                                        words) -> None:
    s2_config.setdefault("search", {}).update(search)
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == key and words in str(err)
    s2_config["search"] = {"grace_period": "auto"}
    assert _load(tmp_path, write_config, s2_config)[0].search.grace_period == "auto"


def test_early_stopping_watches_a_reported_validation_score(tmp_path, write_config,
                                                             s2_config) -> None:
    s2_config["train"]["monitor"] = "val_miou"
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "train.monitor" and "did you mean 'val_mean_iou'" in str(err)
    s2_config["train"]["monitor"] = "val_mean_iou"
    assert _load(tmp_path, write_config, s2_config)[0].train.monitor == "val_mean_iou"


def test_missing_data_section(tmp_path, write_config, s2_config) -> None:
    del s2_config["data"]
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "data" and "missing" in err.message


def test_target_size_must_suit_gym_models(tmp_path, write_config, s2_config) -> None:
    s2_config["data"]["target_size"] = [60, 100]
    err = _error(tmp_path, write_config, s2_config)
    assert "data.target_size" in str(err)
    assert "16" in err.message and "[64, 112]" in err.message  # the suggested size


def test_target_size_rule_follows_smp_encoder_depth(tmp_path, write_config, s2_config) -> None:
    # depth-4 encoders downsample 16x: 48 is fine for them, not for a depth-5 encoder
    s2_config["data"]["target_size"] = [48, 48]
    s2_config["model"] = {"arch": "unet", "encoder_depth": 4}
    config, _ = _load(tmp_path, write_config, s2_config)
    assert config.data.target_size == (48, 48)
    s2_config["model"] = {"arch": "unet", "encoder_depth": 5}
    err = _error(tmp_path, write_config, s2_config)
    assert "32" in err.message and "[64, 64]" in err.message


def test_remap_to_missing_class(tmp_path, write_config, s2_config) -> None:
    s2_config["data"]["remap"] = {1: 0, 2: 1, 3: 2, 4: 4}
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "data"
    assert "remap 4: 4" in err.message and "4 classes" in err.message


def test_remap_to_ignore_is_allowed(tmp_path, write_config, s2_config) -> None:
    s2_config["data"]["remap"] = {0: 255, 1: 0, 2: 1, 3: 2, 4: 3}
    config, _ = _load(tmp_path, write_config, s2_config)
    assert config.data.remap is not None and config.data.remap[0] == 255


def test_unknown_model_suggests(tmp_path, write_config, s2_config) -> None:
    s2_config["model"]["arch"] = "gym_unt"
    err = _error(tmp_path, write_config, s2_config)
    assert err.key == "model.arch" and "did you mean 'gym_unet'?" in err.message


def test_images_and_manifest_are_exclusive(tmp_path, write_config, s2_config, s2_data) -> None:
    s2_config["data"]["manifest"] = str(s2_data / "pairs.csv")
    err = _error(tmp_path, write_config, s2_config)
    assert "not both" in err.message


def test_relative_paths_resolved_against_base(tmp_path, write_config, s2_config,
                                              monkeypatch) -> None:
    s2_config["data"].update(images="raw/images", labels="raw/labels", prepared="ds/out",
                             extra_bands=[{"folder": "raw/nir", "key": r"^(.*)_ir(-\d+)$"},
                                          "raw/swir"])
    s2_config["train"]["output_dir"] = "runs"
    s2_config["search"] = {"results_dir": "~/results", "storage_path": "s3://bucket/ray"}
    path = write_config(tmp_path / "exp.yaml", **s2_config)
    config, _ = load_experiment(path, base_dir=tmp_path / "base")
    base = (tmp_path / "base").resolve()
    assert config.data.images is not None and config.data.labels is not None
    assert config.data.images.folder == base / "raw" / "images"
    assert config.data.labels.folder == base / "raw" / "labels"
    assert [b.folder for b in config.data.extra_bands] == [base / "raw" / "nir",
                                                           base / "raw" / "swir"]
    assert config.data.prepared == base / "ds" / "out"
    assert config.train.output_dir == base / "runs"
    assert config.search.results_dir == Path(os.path.expanduser("~")) / "results"
    assert config.search.storage_path == "s3://bucket/ray", "URLs are left alone"
    # default base: the current working directory
    monkeypatch.chdir(tmp_path)
    config, _ = load_experiment(path)
    assert config.data.prepared == tmp_path.resolve() / "ds" / "out"
    assert config.data.prepared.is_absolute()


def test_invalid_yaml_gives_line_and_column(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  images: a\n  classes: [water, land\nmodel: {}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    text = str(info.value)
    assert str(path) in text and "invalid YAML" in text
    assert "line 3" in text or "line 4" in text
    assert "column" in text and "\n" not in text


def test_a_key_given_twice_is_refused_not_dropped(tmp_path) -> None:
    # PyYAML keeps the last of two `train:` sections silently: the first one's settings vanish
    path = tmp_path / "twice.yaml"
    path.write_text("data:\n  images: a\n  labels: b\n  classes: [water, land]\n"
                    "train:\n  max_lr: 1.0e-3\n  lr_schedule: cosine\n"
                    "model: {}\ntrain:\n  max_epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    text = str(info.value)
    assert "'train' is given twice (lines 5 and 9)" in text and "line 9" in text
    assert "\n" not in text
    # a YAML merge key overriding a value is not a repeat
    path.write_text("data:\n  images: a\n  labels: b\n  classes: [water, land]\n"
                    "train:\n  <<: {max_lr: 1.0e-3, max_epochs: 30, rampup_epochs: 1}\n"
                    "  max_epochs: 5\n")
    config, _ = load_experiment(path)
    assert (config.train.max_epochs, config.train.max_lr) == (5, 1.0e-3)


@pytest.mark.parametrize(("line", "fix"), [
    ("  augment: {hflip: 0.5}", "write true or false (true: flip left-right with probability"),
    ("  augment: {copies: 1.5}", "write a whole number"),
    ("  target_size: [128, x]", "write a whole number"),
])
def test_a_value_of_the_wrong_type_says_what_to_write(tmp_path, line, fix) -> None:
    path = tmp_path / "typed.yaml"
    path.write_text(f"data:\n  images: a\n  labels: b\n  classes: [water, land]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert f"(fix: {fix}" in str(info.value)


@pytest.mark.parametrize(("content", "words"), [
    ("- just\n- a list\n", "YAML mapping"),
    ("", "YAML mapping"),
])
def test_not_a_mapping(tmp_path, content, words) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=words):
        load_experiment(path)


def test_missing_or_odd_config_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_experiment(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not a file"):
        load_experiment(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81 data")
    with pytest.raises(ConfigError) as info:
        load_experiment(binary)
    assert str(binary) in str(info.value)


def test_fingerprint_tracks_only_named_sections(tmp_path, write_config, s2_config) -> None:
    a, _ = _load(tmp_path, write_config, s2_config)
    other = copy.deepcopy(s2_config)
    other["train"]["max_epochs"] = 9
    b, _ = load_experiment(write_config(tmp_path / "b.yaml", **other))
    assert a.fingerprint("data") == b.fingerprint("data")
    assert a.fingerprint("train") != b.fingerprint("train")
    assert a.fingerprint() != b.fingerprint()
