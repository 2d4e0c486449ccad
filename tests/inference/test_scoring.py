"""Scoring and ensembling through a loaded artifact: the same numbers a hand computation
gives from the raw logits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from raygym.config import validate_experiment
from raygym.data.batch import to_batch
from raygym.inference.artifact import export_artifact
from raygym.inference.scoring import ensemble_softmax, load_model, score_batch
from raygym.models import build_model

CLASSES = ["water", "sand", "land"]


def _export(tmp_path: Path, name: str, seed: int) -> Path:
    config = validate_experiment({
        "name": name,
        "data": {"images": str(tmp_path / "img"), "labels": str(tmp_path / "lab"),
                 "classes": CLASSES, "target_size": [32, 32], "prepared": str(tmp_path / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3},
    })
    torch.manual_seed(seed)
    model = build_model("gym_unet", in_channels=3, num_classes=3,
                        **config.model.builder_kwargs()).eval()
    return export_artifact(tmp_path / name, model, config, in_channels=3, classes=CLASSES,
                           metrics={}, dataset={})


@pytest.fixture
def samples() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (3, 32, 32)).astype(np.uint8)
    labels[2, 20:, :] = 255  # padding: not scored
    valid = np.array([[32, 32], [32, 32], [20, 32]])
    return images, labels, valid


def test_score_batch_matches_a_hand_count(tmp_path: Path, samples: tuple) -> None:
    loaded = load_model(_export(tmp_path, "a", 0), device="cpu")
    images, labels, valid = samples
    cms, kld, n_valid, pred = score_batch(loaded, images, labels, valid)
    x, _ = to_batch(images, labels, valid)
    with torch.no_grad():
        want = loaded.model(x).argmax(1).numpy()
    assert np.array_equal(pred, want.astype(np.uint8))
    for i in range(3):
        keep = labels[i] != 255
        hand = np.zeros((3, 3), np.int64)
        np.add.at(hand, (labels[i][keep], want[i][keep]), 1)
        assert np.array_equal(cms[i], hand)
        assert n_valid[i] == keep.sum() and math.isfinite(kld[i]) and kld[i] >= 0


def test_ensemble_softmax_is_the_mean_of_the_members(tmp_path: Path) -> None:
    a = load_model(_export(tmp_path, "a", 0), device="cpu")
    b = load_model(_export(tmp_path, "b", 1), device="cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pa, pb = (torch.softmax(m.model(x), 1) for m in (a, b))
    torch.testing.assert_close(ensemble_softmax([a, b], x), (pa + pb) / 2, rtol=1e-4,
                               atol=1e-5)
    tta = ensemble_softmax([a], x, tta=True)
    assert tta.shape == (2, 3, 32, 32)
    torch.testing.assert_close(tta.sum(1), torch.ones(2, 32, 32))


def test_ensemble_softmax_weights_its_members(tmp_path: Path) -> None:
    """Weights (normalised to sum 1) scale each member's softmax; no positive weight, or a
    count that does not match, is refused."""
    a = load_model(_export(tmp_path, "a", 0), device="cpu")
    b = load_model(_export(tmp_path, "b", 1), device="cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pa, pb = (torch.softmax(m.model(x), 1) for m in (a, b))
    torch.testing.assert_close(ensemble_softmax([a, b], x, weights=[0.75, 0.25]),
                               0.75 * pa + 0.25 * pb, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ensemble_softmax([a, b], x, weights=[3, 1]),
                               0.75 * pa + 0.25 * pb, rtol=1e-4, atol=1e-5)
    for bad in ([1.0], [1.0, 0.0]):
        with pytest.raises(ValueError, match="positive weight"):
            ensemble_softmax([a, b], x, weights=bad)
