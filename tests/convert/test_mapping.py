"""raygym.convert.mapping: each Gym key becomes the right raygym value, or is listed as not
carried over; a rejected value names both keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raygym.convert import convert_gym_config, gym_to_raw
from raygym.errors import ConfigError
from raygym.train.schedule import ramp_sustain_decay_lr

from . import TYPICAL, convert_and_load, write_gym


def test_typical_config_round_trips(tmp_path: Path) -> None:
    config, skipped, out = convert_and_load(tmp_path)
    assert out == tmp_path / "hatteras.yaml"
    assert config.name == "hatteras"
    d, m, t = config.data, config.model, config.train
    assert d.target_size == (768, 768)
    assert d.classes == ["class_0", "class_1", "class_2", "class_3"]
    assert d.remap == {0: 0, 1: 0, 2: 1, 3: 2, 4: 3}
    assert all(isinstance(k, int) for k in d.remap)
    assert d.images is not None and d.images.folder == tmp_path / "images"
    assert d.labels is not None and d.labels.folder == tmp_path / "labels"
    assert d.extra_bands == []
    assert d.prepared == tmp_path / "datasets" / "hatteras_l8_aug_768"
    assert (d.split.val, d.split.test) == (0.2, 0.0)
    a = d.augment
    assert (a.copies, a.rotation, a.zoom, a.width_shift, a.height_shift) == (5, 5, 0.05, 0.05, 0.05)
    assert (a.hflip, a.vflip) == (True, False)
    assert (m.arch, m.kernel, m.stride, m.filters) == ("gym_resunet", 9, 2, 6)
    assert (m.dropout, m.dropout_change_per_layer) == (0.1, 0.0)
    assert (m.dropout_type, m.dropout_on_upsampling) == ("standard", False)
    assert config.loss.name == "dice" and config.loss.class_weights is None
    assert (t.batch_size, t.patience, t.max_epochs) == (8, 10, 100)
    assert (t.rampup_epochs, t.sustain_epochs, t.exp_decay) == (20, 0, 0.9)
    assert (t.start_lr, t.min_lr, t.max_lr) == (1e-7, 1e-7, 1e-4)
    lr = {e: ramp_sustain_decay_lr(e, start_lr=t.start_lr, min_lr=t.min_lr, max_lr=t.max_lr,
                                   rampup_epochs=t.rampup_epochs,
                                   sustain_epochs=t.sustain_epochs, exp_decay=t.exp_decay)
          for e in (10, 20, 30)}
    assert lr == pytest.approx({10: 5.0e-5, 20: 1e-4, 30: 3.5e-5}, rel=2e-2)
    assert skipped == ["DO_TRAIN", "FILTER_VALUE", "DOPLOT", "AUG_LOOPS", "TESTTIMEAUG",
                       "HOT_START", "SET_GPU"]


@pytest.mark.parametrize(("gym_loss", "expected"), [("cat", "cce"), ("kld", "kld"),
                                                    ("Dice", "dice")])
def test_loss_names(tmp_path: Path, gym_loss: str, expected: str) -> None:
    config, skipped, _ = convert_and_load(tmp_path, LOSS=gym_loss)
    assert config.loss.name == expected
    assert "LOSS" not in skipped


def test_unknown_loss_is_listed(tmp_path: Path) -> None:
    config, skipped, out = convert_and_load(tmp_path, LOSS="hinge")
    assert "LOSS" in skipped and config.loss.name == "dice"
    assert "LOSS = \"hinge\"" in out.read_text()


@pytest.mark.parametrize(("weights", "expected"), [(True, "auto"), (False, None),
                                                   ([1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0])])
def test_loss_weights(tmp_path: Path, weights: Any, expected: Any) -> None:
    config, _, _ = convert_and_load(tmp_path, LOSS_WEIGHTS=weights)
    assert config.loss.class_weights == expected


@pytest.mark.parametrize(("gym_model", "arch"), [("unet", "gym_unet"),
                                                 ("simple_resunet", "simple_resunet")])
def test_model_names(tmp_path: Path, gym_model: str, arch: str) -> None:
    config, skipped, _ = convert_and_load(tmp_path, MODEL=gym_model)
    assert config.model.arch == arch
    if arch.startswith("simple_"):  # Gym's simple nets hard-code 2x2 kernels
        assert config.model.kernel == 2 and {"KERNEL", "STRIDE"} <= set(skipped)
    else:
        assert config.model.kernel == 9


def test_segformer_drops_unet_keys(tmp_path: Path) -> None:
    config, skipped, _ = convert_and_load(tmp_path, MODEL="segformer", TARGET_SIZE=[512, 512])
    assert config.model.arch == "segformer"
    assert {"KERNEL", "STRIDE", "FILTERS", "DROPOUT"} <= set(skipped)


def test_bands_and_binary(tmp_path: Path) -> None:
    config, _, out = convert_and_load(tmp_path, N_DATA_BANDS=5, NCLASSES=1,
                                      REMAP_CLASSES={"0": 0, "255": 1})
    assert [b.folder.name for b in config.data.extra_bands] == ["band_4", "band_5"]
    assert config.data.classes == ["class_0", "class_1"]
    assert config.data.remap == {0: 0, 255: 1}
    assert "binary" in out.read_text()


def test_class_names_key(tmp_path: Path) -> None:
    names = ["water", "whitewater", "sand", "other"]
    config, skipped, _ = convert_and_load(tmp_path, CLASSES=names)
    assert config.data.classes == names and "CLASSES" not in skipped
    with pytest.raises(ConfigError, match="3 class names for 4 classes"):
        gym_to_raw({**TYPICAL, "CLASSES": names[:3]})


@pytest.mark.parametrize(
    ("changes", "gym_key", "raygym_key", "text"),
    [
        ({"TARGET_SIZE": [770, 770]}, "TARGET_SIZE", "data.target_size", "divisible by 16"),
        ({"TARGET_SIZE": "768"}, "TARGET_SIZE", "data.target_size", "[height, width]"),
        ({"KERNEL": 0}, "KERNEL", "model.kernel", "greater than or equal to 1"),
        ({"FILTERS": 2.5}, "FILTERS", "model.filters", "integer"),
        ({"VALIDATION_SPLIT": 1.5}, "VALIDATION_SPLIT", "data.split.val", "less than 1"),
        ({"MIN_LR": 1e-3}, "MIN_LR", "train.min_lr", "must be <= max_lr"),
        ({"MODEL": "satunet"}, "MODEL", "model.arch", "unknown model 'satunet'"),
        ({"DROPOUT_TYPE": "gaussian"}, "DROPOUT_TYPE", "model.dropout_type", "'spatial'"),
        ({"REMAP_CLASSES": {"0": 7}}, "REMAP_CLASSES", "data.remap", "maps to class 7"),
        ({"REMAP_CLASSES": {"water": 1}}, "REMAP_CLASSES", "data.remap", "not an integer"),
        ({"LOSS_WEIGHTS": [1, 2]}, "LOSS_WEIGHTS", "loss.class_weights", "2 weights for 4"),
        ({"NCLASSES": "four"}, "NCLASSES", "data.classes", "whole number"),
        ({"NCLASSES": float("nan")}, "NCLASSES", "data.classes", "whole number"),
        ({"NCLASSES": None}, "NCLASSES", "data.classes", "missing"),
    ],
)
def test_invalid_values_name_both_keys(tmp_path: Path, changes: dict[str, Any], gym_key: str,
                                       raygym_key: str, text: str) -> None:
    gym = write_gym(tmp_path, **changes)
    with pytest.raises(ConfigError) as info:
        convert_gym_config(gym)
    message = str(info.value)
    assert f"{gym_key} (raygym {raygym_key})" in message
    assert text in message
    assert message.startswith(str(gym))
    assert not (tmp_path / "hatteras.yaml").exists()
