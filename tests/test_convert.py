"""``raygym convert-config``: Segmentation Gym JSON -> raygym experiment YAML."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from raygym.cli import main
from raygym.convert import convert_gym_config, gym_to_raw
from raygym.errors import ConfigError, RaygymError
from raygym.search.space_config import load_experiment
from raygym.train.schedule import ramp_sustain_decay_lr

# GYM_REFERENCE.md's typical config (plus Gym's usual housekeeping keys).
TYPICAL: dict[str, Any] = {
    "TARGET_SIZE": [768, 768],
    "MODEL": "resunet",
    "NCLASSES": 4,
    "BATCH_SIZE": 8,
    "N_DATA_BANDS": 3,
    "DO_TRAIN": True,
    "PATIENCE": 10,
    "MAX_EPOCHS": 100,
    "VALIDATION_SPLIT": 0.2,
    "FILTERS": 6,
    "KERNEL": 9,
    "STRIDE": 2,
    "LOSS": "dice",
    "LOSS_WEIGHTS": False,
    "DROPOUT": 0.1,
    "DROPOUT_CHANGE_PER_LAYER": 0.0,
    "DROPOUT_TYPE": "standard",
    "USE_DROPOUT_ON_UPSAMPLING": False,
    "ROOT_STRING": "hatteras_l8_aug_768",
    "FILTER_VALUE": 3,
    "DOPLOT": True,
    "RAMPUP_EPOCHS": 20,
    "SUSTAIN_EPOCHS": 0.0,
    "EXP_DECAY": 0.9,
    "START_LR": 1e-7,
    "MIN_LR": 1e-7,
    "MAX_LR": 1e-4,
    "AUG_ROT": 5,
    "AUG_ZOOM": 0.05,
    "AUG_WIDTHSHIFT": 0.05,
    "AUG_HEIGHTSHIFT": 0.05,
    "AUG_HFLIP": True,
    "AUG_VFLIP": False,
    "AUG_LOOPS": 1,
    "AUG_COPIES": 5,
    "REMAP_CLASSES": {"0": 0, "1": 0, "2": 1, "3": 2, "4": 3},
    "TESTTIMEAUG": True,
    "HOT_START": "weights/old.h5",
    "SET_GPU": "0",
}


def write_gym(tmp_path: Path, name: str = "hatteras.json", **changes: Any) -> Path:
    cfg = {**TYPICAL, **changes}
    for key in [k for k, v in changes.items() if v is None]:
        del cfg[key]
    path = tmp_path / name
    path.write_text(json.dumps(cfg, indent=2))
    return path


def convert_and_load(tmp_path: Path, **changes: Any) -> tuple[Any, list[str], Path]:
    out, skipped = convert_gym_config(write_gym(tmp_path, **changes))
    config, space = load_experiment(out, base_dir=tmp_path)
    assert not space
    return config, skipped, out


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


def test_yaml_header_and_comments(tmp_path: Path) -> None:
    _, _, out = convert_and_load(tmp_path)
    text = out.read_text()
    assert text.startswith("# raygym experiment converted from the Segmentation Gym config ")
    assert "hatteras.json" in text.splitlines()[0]
    header = text.split("\n\n", 2)
    assert "raygym predict --tta" in text and "FILTER_VALUE = 3: label dilation" in text
    assert "HOT_START" in "".join(header[:2])
    assert "test split such as 0.1 is recommended" in text
    assert "placeholders" in text
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert yaml.safe_load(text)["data"]["remap"] == {0: 0, 1: 0, 2: 1, 3: 2, 4: 3}


def test_unknown_keys_listed_with_hint(tmp_path: Path) -> None:
    _, skipped, out = convert_and_load(tmp_path, TARGETSIZE=3, MY_NOTE="x")
    assert skipped[-2:] == ["TARGETSIZE", "MY_NOTE"]
    text = out.read_text()
    assert "TARGETSIZE = 3: not a Segmentation Gym key (did you mean TARGET_SIZE?)" in text
    assert "MY_NOTE" in text


def test_images_labels_and_out_arguments(tmp_path: Path) -> None:
    gym = write_gym(tmp_path)
    want = tmp_path / "sub" / "exp.yaml"
    out, _ = convert_gym_config(gym, want, images=tmp_path / "imgs", labels=tmp_path / "lbls")
    assert out == want
    config, _ = load_experiment(out)
    assert config.data.images is not None and config.data.images.folder == tmp_path / "imgs"
    assert config.data.labels is not None and config.data.labels.folder == tmp_path / "lbls"
    assert "placeholders: point them" not in out.read_text()


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    gym = write_gym(tmp_path)
    existing = tmp_path / "hatteras.yaml"
    existing.write_text("keep me\n")
    with pytest.raises(RaygymError, match="already exists") as info:
        convert_gym_config(gym)
    assert "hatteras.yaml" in str(info.value) and "--out" in str(info.value)
    assert existing.read_text() == "keep me\n"


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


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "NCLASSES": 4,\n  "MODEL": "unet",\n}\n')
    with pytest.raises(ConfigError, match=r"bad\.json: line 4, column 1: invalid JSON") as info:
        convert_gym_config(path)
    assert "comma" in str(info.value)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        convert_gym_config(path)
    assert not (tmp_path / "bad.yaml").exists()


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


def test_cli_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gym = write_gym(tmp_path)
    out = tmp_path / "exp.yaml"
    assert main(["convert-config", str(gym), "--out", str(out)]) == 0
    assert out.is_file()
    stdout = capsys.readouterr().out
    assert "exp.yaml" in stdout and "FILTER_VALUE" in stdout
    config, _ = load_experiment(out, base_dir=tmp_path)
    assert config.model.arch == "gym_resunet"


def test_cli_convert_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    assert main(["convert-config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "nope.json" in err and "not found" in err
