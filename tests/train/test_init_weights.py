"""``train.init_weights``: training starts from an exported model's weights (fine-tuning),
the head's rows matched to the classes by name, and a network that does not fit refused
with one line naming what differs. Plain PyTorch on the real prepared S2 set, no Ray Train."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from raygym.config import ExperimentConfig
from raygym.data.dataset import PreparedDataset
from raygym.errors import ConfigError, RaygymError
from raygym.inference.artifact import export_artifact, read_model_card
from raygym.train.init_weights import check_init_weights, load_init_weights
from raygym.train.loop import NumpyBatches, build_loss_for, build_model_for, fit

from . import make_config

CPU = torch.device("cpu")


def seeded_model(config: ExperimentConfig, bands: int, num_classes: int, seed: int
                 ) -> nn.Module:
    torch.manual_seed(seed)
    return build_model_for(config, bands, num_classes)


def source_artifact(folder: Path, config: ExperimentConfig, classes: list[str], bands: int
                    ) -> tuple[Path, dict[str, torch.Tensor]]:
    """An exported model of ``config``'s network with ``classes``, weights seeded 1."""
    model = seeded_model(config, bands, len(classes), seed=1)
    path = export_artifact(folder / "source", model, config, in_channels=bands,
                           classes=classes, metrics={"val_mean_iou": 0.61}, dataset={})
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def test_the_same_classes_load_every_tensor(prepared: PreparedDataset,
                                            base_sections: dict[str, Any],
                                            tmp_path: Path) -> None:
    card = prepared.card
    plain = make_config(base_sections)
    path, source = source_artifact(tmp_path, plain, card.classes, card.bands)
    config = make_config(base_sections, init_weights=str(path))
    line = check_init_weights(config, card)
    assert line is not None and "every layer" in line and "0.610" in line
    model = seeded_model(config, card.bands, card.num_classes, seed=0)
    assert not torch.equal(model.state_dict()["head.weight"], source["head.weight"])
    load_init_weights(model, config, card)
    for key, value in model.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_the_head_keeps_the_rows_of_the_classes_both_name(prepared: PreparedDataset,
                                                           base_sections: dict[str, Any],
                                                           tmp_path: Path) -> None:
    card = prepared.card  # this experiment's classes c0..c3
    c = card.classes
    plain = make_config(base_sections)
    # the starting model knew c3, c0 and a class this dataset lacks, in that order
    path, source = source_artifact(tmp_path, plain, [c[3], c[0], "rock"], card.bands)
    config = make_config(base_sections, init_weights=str(path))
    line = check_init_weights(config, card)
    assert line is not None
    assert f"kept: {c[0]}, {c[3]}" in line and f"new (fresh head rows): {c[1]}, {c[2]}" in line
    assert "dropped: rock" in line
    model = seeded_model(config, card.bands, card.num_classes, seed=0)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    load_init_weights(model, config, card)
    state = model.state_dict()
    for key in ("head.weight", "head.bias"):
        assert torch.equal(state[key][0], source[key][1])  # c0 was the source's row 1
        assert torch.equal(state[key][3], source[key][0])  # c3 was its row 0
        assert torch.equal(state[key][1:3], fresh[key][1:3])  # new classes: fresh rows
    body = [k for k in state if not k.startswith("head.")]
    assert body and all(torch.equal(state[k], source[k]) for k in body)


@pytest.mark.parametrize(("model", "bands_delta", "said"), [
    ({"filters": 8}, 0, "model.filters is 4 there, 8 here"),
    ({"arch": "gym_resunet"}, 0, "is a gym_unet; this experiment trains a gym_resunet"),
    ({}, -1, "takes 3 bands; the prepared dataset has 4"),
])
def test_a_network_that_does_not_fit_is_refused_by_name(
        prepared: PreparedDataset, base_sections: dict[str, Any], tmp_path: Path,
        model: dict[str, Any], bands_delta: int, said: str) -> None:
    card = prepared.card
    assert card.bands == 4  # RGB + NIR
    path, _ = source_artifact(tmp_path, make_config(base_sections), card.classes,
                              card.bands + bands_delta)
    config = make_config(base_sections, model, init_weights=str(path))
    with pytest.raises(ConfigError) as err:
        check_init_weights(config, card)
    assert err.value.key == "train.init_weights" and said in str(err.value)


def test_a_damaged_artifact_is_refused_under_the_key(prepared: PreparedDataset,
                                                     base_sections: dict[str, Any],
                                                     tmp_path: Path) -> None:
    card = prepared.card
    path, _ = source_artifact(tmp_path, make_config(base_sections), card.classes, card.bands)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    config = make_config(base_sections, init_weights=str(path))
    with pytest.raises(RaygymError, match=r"train\.init_weights: .*checksum"):
        check_init_weights(config, card)


def test_fit_starts_from_the_weights_and_the_card_says_so(prepared: PreparedDataset,
                                                          base_sections: dict[str, Any],
                                                          tmp_path: Path) -> None:
    card = prepared.card
    path, source = source_artifact(tmp_path, make_config(base_sections), card.classes,
                                   card.bands)
    # a learning rate so small that one epoch leaves the weights where they started
    config = make_config(base_sections, init_weights=str(path), max_lr=1e-12, min_lr=1e-12,
                         precise_bn_images=0, max_epochs=1)
    model = seeded_model(config, card.bands, card.num_classes, seed=0)
    fresh = {k: v.clone() for k, v in model.named_parameters()}
    train = prepared.load_numpy("train")
    fit(config, model, build_loss_for(config, card),
        NumpyBatches(train, prepared.load_numpy("val"), 8, seed=0), card, device=CPU)
    for key, value in model.named_parameters():
        assert torch.allclose(value, source[key], atol=1e-6), key
        if value.ndim > 1:  # convolutions: seeded apart (biases start at 0 in both)
            assert not torch.allclose(value, fresh[key], atol=1e-6), key
    exported = export_artifact(tmp_path / "tuned", model, config, in_channels=card.bands,
                               classes=card.classes, metrics={}, dataset={})
    started = read_model_card(exported).training["init_weights"]
    sums = json.loads((path / "checksums.json").read_text())
    assert started["path"] == str(path) and started["val_mean_iou"] == pytest.approx(0.61)
    assert started["weights_sha256"] == sums["model.safetensors"]


def test_a_search_results_folder_is_refused_naming_its_best_model(
        prepared: PreparedDataset, base_sections: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    card = prepared.card
    path, _ = source_artifact(tmp_path, make_config(base_sections), card.classes, card.bands)
    results = tmp_path / "results" / "site_a"
    shutil.copytree(path, results / "best" / "rank1_3f2a")
    config = make_config(base_sections, init_weights=str(results))
    with pytest.raises(ConfigError, match="a search's results folder, not one model") as err:
        check_init_weights(config, card)
    assert err.value.key == "train.init_weights"
    assert str(results / "best" / "rank1_3f2a") in str(err.value)


@pytest.mark.parametrize(("scale", "epochs"), [(0.0, None), (0.0, 1)])
def test_the_encoder_keeps_its_weights_at_a_zero_scale(
        scale: float, epochs: int | None, prepared: PreparedDataset,
        base_sections: dict[str, Any], tmp_path: Path) -> None:
    """``train.encoder_lr_scale: 0``: two epochs leave the encoder (e1-e5) as the starting
    model had it while the decoder and head learn; with ``encoder_lr_epochs: 1`` the encoder
    learns in the second epoch."""
    from raygym.models import encoder_parameter_names

    card = prepared.card
    path, source = source_artifact(tmp_path, make_config(base_sections), card.classes,
                                   card.bands)
    config = make_config(base_sections, init_weights=str(path), max_epochs=2, patience=5,
                         encoder_lr_scale=scale, encoder_lr_epochs=epochs)
    model = seeded_model(config, card.bands, card.num_classes, seed=0)
    encoder = encoder_parameter_names(model)
    assert encoder and all(n.split(".")[0] in ("e1", "e2", "e3", "e4", "e5") for n in encoder)
    fit(config, model, build_loss_for(config, card),
        NumpyBatches(prepared.load_numpy("train"), prepared.load_numpy("val"), 8, seed=0),
        card, device=CPU)
    kept = {n: torch.equal(p, source[n]) for n, p in model.named_parameters()}
    assert not any(kept[n] for n in kept if n.startswith("head")), "the head learns"
    if epochs is None:
        assert all(kept[n] for n in encoder)
    else:
        assert not any(kept[n] for n in encoder if n.endswith("conv.weight"))


def test_an_encoder_scale_needs_weights_to_start_from(base_sections: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"train.encoder_lr_scale: is 0.1, but the encoder "
                                          r"starts from fresh weights"):
        make_config(base_sections, encoder_lr_scale=0.1)
