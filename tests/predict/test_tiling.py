"""``raygym.predict.tiling``: windows cover the image, blending is seamless, images of any
size (larger, smaller, rescaled) come back on their own grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raygym.errors import RaygymError

from . import AERIAL, need, s2_stack


def test_window_starts_cover_the_image() -> None:
    from raygym.predict import window_starts

    for length, tile, overlap in [(920, 128, 0.25), (614, 128, 0.5), (100, 128, 0.25),
                                  (128, 128, 0.0), (300, 64, 0.0)]:
        starts = window_starts(length, tile, overlap)
        covered = np.zeros(max(length, tile), bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered[:length].all() and starts[-1] + tile >= length
        assert starts == sorted(set(starts))


def test_blending_is_exact_for_a_pointwise_model() -> None:
    """A 1x1-conv model has no spatial context: the blended windows must reproduce one
    whole-image pass exactly (weights normalise, every pixel covered, no seams)."""
    from raygym.predict import sliding_window_probs

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(conv(x), dim=1)

    image = np.random.default_rng(0).normal(size=(157, 301, 3)).astype(np.float32)
    whole = forward(torch.from_numpy(image.transpose(2, 0, 1))[None])[0].numpy()
    for overlap in (0.0, 0.25, 0.5):
        tiled = sliding_window_probs(forward, image, tile_hw=(64, 64), overlap=overlap,
                                     num_classes=3, batch_size=5)
        assert tiled.shape == (3, 157, 301)
        np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.slow
def test_sliding_window_on_a_920x614_aerial_image(aerial_model: Path, tmp_path: Path) -> None:
    from raygym.predict import PredictOptions, Predictor, predict_files

    image = sorted((need(AERIAL) / "images").glob("*.jpg"))[0]
    predictor = Predictor([aerial_model], device="cpu")
    rgb = np.asarray(Image.open(image).convert("RGB"))
    labels, probs = predictor.predict(rgb, overlap=0.25)
    assert labels.shape == (614, 920) and probs.shape == (3, 614, 920)
    assert labels.max() < 3
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    # overlapping windows really blend: a different overlap changes the probabilities
    _, probs_half = predictor.predict(rgb, overlap=0.5)
    assert not np.allclose(probs, probs_half)
    result = predict_files(aerial_model, [image], PredictOptions(out=tmp_path / "out", tile=256))
    assert result.exit_code == 0
    assert np.asarray(Image.open(tmp_path / "out" / f"{image.stem}_label.png")).shape == (614, 920)
    with pytest.raises(RaygymError, match="multiple of 16"):
        predictor.tile_hw(100)


def test_small_image_is_padded_and_cropped_back(s2_models: dict[str, Path]) -> None:
    from raygym.predict import Predictor

    predictor = Predictor([s2_models["artifact"]], device="cpu")
    small = s2_stack(0)[:40, :50]
    labels, probs = predictor.predict(small)
    assert labels.shape == (40, 50) and probs.shape == (4, 40, 50)
    labels2, _ = predictor.predict(s2_stack(0), scale=0.5)
    assert labels2.shape == s2_stack(0).shape[:2]
