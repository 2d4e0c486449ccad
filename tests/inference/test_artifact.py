"""The exported model folder: a round trip predicts identically; tampered or incomplete
artifacts are refused with a DataError naming the folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from raygym.config import ExperimentConfig, validate_experiment
from raygym.errors import DataError
from raygym.inference.artifact import FILES, export_artifact, load_artifact
from raygym.models import build_model
from raygym.train.metrics import json_safe

CLASSES = ["water", "surf", "wet_sand", "dry_land"]


@pytest.fixture
def config(tmp_path: Path) -> ExperimentConfig:
    return validate_experiment({
        "name": "art",
        "data": {"images": str(tmp_path / "img"), "labels": str(tmp_path / "lab"),
                 "classes": CLASSES, "target_size": [32, 32],
                 "prepared": str(tmp_path / "ds")},
        "model": {"arch": "gym_resunet", "filters": 2, "kernel": 3},
    })


@pytest.fixture
def exported(tmp_path: Path, config: ExperimentConfig) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model("gym_resunet", in_channels=4, num_classes=4,
                        **config.model.builder_kwargs())
    model.train()
    with torch.no_grad():  # move BN running statistics away from their defaults
        model(torch.randn(4, 4, 32, 32))
    model.eval()
    out = export_artifact(tmp_path / "best", model, config, in_channels=4, classes=CLASSES,
                          metrics={"val_mean_iou": 0.5, "val_iou/surf": math.nan},
                          dataset={"path": "ds"}, training={"best_epoch": np.int64(3)})
    return out, model


def test_round_trip_predicts_identically(exported: tuple[Path, torch.nn.Module]) -> None:
    path, model = exported
    loaded, card, config = load_artifact(path)
    assert not loaded.training
    assert card.classes == CLASSES and card.in_channels == 4 and card.arch == "gym_resunet"
    assert card.target_size == [32, 32] and config.name == "art"
    assert card.metrics["val_iou/surf"] is None and card.training["best_epoch"] == 3
    assert card.trainable_params == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    for name, value in model.state_dict().items():  # BN buffers too
        assert torch.equal(loaded.state_dict()[name], value), name


def test_export_replaces_an_old_artifact(exported: tuple[Path, torch.nn.Module],
                                         config: ExperimentConfig) -> None:
    path, model = exported
    export_artifact(path, model, config, in_channels=4, classes=CLASSES,
                    metrics={"val_mean_iou": 0.75}, dataset={})
    _, card, _ = load_artifact(path)
    assert card.metrics == {"val_mean_iou": 0.75}
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def _flip_last_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01
    file.write_bytes(bytes(data))


def _edit_text(file: Path) -> None:
    if file.suffix == ".json":
        card = json.loads(file.read_text())
        card["classes"] = ["a", "b", "c", "d"]
        file.write_text(json.dumps(card))
    else:
        cfg = yaml.safe_load(file.read_text())
        cfg["model"]["filters"] = 3
        file.write_text(yaml.safe_dump(cfg))


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("how", ["byte", "edit"])
def test_tampered_files_are_refused(exported: tuple[Path, torch.nn.Module], name: str,
                                    how: str) -> None:
    path, _ = exported
    file = path / name
    if how == "byte" or name == "model.safetensors":
        _flip_last_byte(file)
    else:
        _edit_text(file)
    with pytest.raises(DataError, match="checksum") as info:
        load_artifact(path)
    assert str(path) in str(info.value) and name in str(info.value)


@pytest.mark.parametrize("name", [*FILES, "checksums.json"])
def test_missing_files_are_refused(exported: tuple[Path, torch.nn.Module], name: str) -> None:
    path, _ = exported
    (path / name).unlink()
    with pytest.raises(DataError, match=f"missing {name}") as info:
        load_artifact(path)
    assert str(path) in str(info.value)


def test_damaged_checksums_and_missing_folder_are_refused(
        exported: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path, _ = exported
    (path / "checksums.json").write_text("{not json")
    with pytest.raises(DataError, match="checksums.json") as info:
        load_artifact(path)
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="not found"):
        load_artifact(tmp_path / "nowhere")


def test_json_safe_turns_non_finite_numbers_into_null() -> None:
    value = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float32(2.0),
             "d": torch.tensor(3), 4: (np.nan, "x", None, True)}
    safe = json_safe(value)
    assert safe == {"a": None, "b": [None, None, 1.5], "c": 2.0, "d": 3,
                    "4": [None, "x", None, True]}
    json.dumps(safe, allow_nan=False)  # strict JSON accepts it


def test_export_never_replaces_a_folder_raygym_did_not_make(
        tmp_path: Path, config: ExperimentConfig) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("precious")
    model = build_model("gym_resunet", in_channels=4, num_classes=4,
                        **config.model.builder_kwargs())
    with pytest.raises(DataError, match="not made by raygym"):
        export_artifact(mine, model, config, in_channels=4, classes=CLASSES, metrics={},
                        dataset={})
    assert (mine / "data.csv").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"], "no temp folder left"


def test_smp_artifact_from_local_encoder_weights_is_self_contained(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    donor = build_model("unet", in_channels=3, num_classes=2, encoder="resnet18",
                        encoder_depth=3)
    weights = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in donor.encoder.state_dict().items()}, str(weights))
    config = validate_experiment({
        "name": "smp", "data": {"images": str(tmp_path / "i"), "labels": str(tmp_path / "l"),
                                "classes": ["a", "b"], "target_size": [32, 32],
                                "prepared": str(tmp_path / "ds")},
        "model": {"arch": "unet", "encoder": "resnet18", "encoder_depth": 3,
                  "encoder_weights": str(weights)}})
    model = build_model("unet", in_channels=3, num_classes=2,
                        **config.model.builder_kwargs()).eval()
    out = export_artifact(tmp_path / "best", model, config, in_channels=3, classes=["a", "b"],
                          metrics={}, dataset={})
    weights.unlink()  # another machine: the local weights file is not there
    loaded, card, loaded_config = load_artifact(out)
    assert "encoder_weights" not in card.model_params
    assert card.training["encoder_weights_source"] == str(weights)
    assert loaded_config.model.encoder_weights is None
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_smp_artifact_loads_with_smp_from_pretrained(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.hub_mixin
    import segmentation_models_pytorch as smp
    import segmentation_models_pytorch.base.hub_mixin

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"from_pretrained tried to download {args} {kwargs}")

    for module in (huggingface_hub.hub_mixin, segmentation_models_pytorch.base.hub_mixin):
        monkeypatch.setattr(module, "hf_hub_download", no_download)
    config = validate_experiment({
        "name": "smp", "data": {"images": str(tmp_path / "i"), "labels": str(tmp_path / "l"),
                                "classes": CLASSES, "target_size": [32, 32],
                                "prepared": str(tmp_path / "ds")},
        "model": {"arch": "unet", "encoder": "resnet18", "encoder_depth": 3}})
    torch.manual_seed(0)
    model = build_model("unet", in_channels=4, num_classes=4, **config.model.builder_kwargs())
    model.train()
    with torch.no_grad():  # BN running statistics away from their defaults
        model(torch.randn(2, 4, 32, 32))
    out = export_artifact(tmp_path / "best", model.eval(), config, in_channels=4,
                          classes=CLASSES, metrics={}, dataset={})
    smp_config = json.loads((out / "config.json").read_text())
    assert smp_config["_model_class"] == "Unet" and smp_config["encoder_weights"] is None
    sums = json.loads((out / "checksums.json").read_text())
    assert set(sums) == {*FILES, "config.json"}
    theirs = smp.from_pretrained(str(out))
    ours, _, _ = load_artifact(out)
    assert type(theirs) is smp.Unet and not theirs.training
    x = torch.randn(2, 4, 48, 40)
    with torch.no_grad():
        assert torch.equal(theirs(x), ours(x))


def test_gym_artifact_has_no_smp_config(exported: tuple[Path, torch.nn.Module]) -> None:
    path, _ = exported
    assert not (path / "config.json").exists()
    assert set(json.loads((path / "checksums.json").read_text())) == set(FILES)
