"""``raygym.predict.tiling``: windows cover the image, blending is seamless in any strip height,
a GeoTIFF read by windows gives the whole-image prediction, and images of any size (larger,
smaller, rescaled) come back on their own grid."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raygym.errors import RaygymError

from . import AERIAL, UTM, aerial_crop, need, s2_stack, utm_transform, write_tiff


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


def _pointwise() -> Callable[[torch.Tensor], torch.Tensor]:
    """A 1x1-conv softmax: no spatial context, so blending must not change its output."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(conv(x), dim=1)

    return forward


def test_blending_is_exact_for_a_pointwise_model() -> None:
    """The blended windows must reproduce one whole-image pass exactly (weights normalise,
    every pixel covered, no seams), whatever the strip height the rows are flushed in."""
    from raygym.predict import ArraySource, BandStats, blend_strips

    forward = _pointwise()
    image = np.random.default_rng(0).normal(size=(157, 301, 3)).astype(np.float32)
    whole = forward(torch.from_numpy(image.transpose(2, 0, 1))[None])[0].numpy()
    identity = BandStats(mean=0.0, std=1.0, valid_pixels=image.shape[0] * image.shape[1])
    for overlap, flush in ((0.0, 256), (0.25, 16), (0.5, 48)):
        strips = list(blend_strips(forward, ArraySource(image), identity, tile_hw=(64, 64),
                                   overlap=overlap, num_classes=3, batch_size=5,
                                   flush_rows=flush))
        assert [s.row for s in strips] == sorted({s.row for s in strips})
        assert all(s.row % flush == 0 for s in strips)
        tiled = np.concatenate([s.probs for s in strips], axis=1)
        assert tiled.shape == (3, 157, 301)
        np.testing.assert_allclose(tiled, whole, atol=1e-5)


def _whole_image_reference(forward: Callable[[torch.Tensor], torch.Tensor], image: np.ndarray,
                           tile: int, overlap: float) -> np.ndarray:
    """The former in-memory path: standardise the whole image, blend into a full (K, H, W)."""
    from raygym.data.transforms import standardize
    from raygym.predict import blend_weights, window_starts

    chw = standardize(image).transpose(2, 0, 1)
    weight = blend_weights((tile, tile), overlap)
    acc = np.zeros((3, *image.shape[:2]), np.float32)
    norm = np.zeros(image.shape[:2], np.float32)
    for y in window_starts(image.shape[0], tile, overlap):
        for x in window_starts(image.shape[1], tile, overlap):
            p = forward(torch.from_numpy(np.ascontiguousarray(
                chw[None, :, y:y + tile, x:x + tile])))[0].numpy()
            acc[:, y:y + tile, x:x + tile] += p * weight
            norm[y:y + tile, x:x + tile] += weight
    return acc / norm


def test_windowed_geotiff_equals_the_whole_image_prediction(aerial_model: Path,
                                                           tmp_path: Path) -> None:
    """A real aerial scene as a tiled GeoTIFF, read by windows and flushed in 256-row strips,
    gives the probabilities of the whole image standardised and blended in memory."""
    from raygym.predict import InputItem, Predictor, open_source
    from raygym.predict.tiling import join_strips

    image = aerial_crop(320, 200)
    tif = write_tiff(tmp_path / "scene.tif", image, UTM, utm_transform(), tiled=True,
                     blockxsize=64, blockysize=64)
    predictor = Predictor([aerial_model], device="cpu")
    with open_source(InputItem(tif, [], "scene"), 3) as source:
        strips = list(predictor.predict_strips(source, tile=64, overlap=0.25))
    assert [s.row for s in strips] == [0, 256]
    whole = join_strips(iter(strips))
    reference = _whole_image_reference(lambda x: predictor.forward(x), image, 64, 0.25)
    np.testing.assert_allclose(whole.probs, reference, atol=1e-5)
    assert whole.labels.shape == (320, 200) and whole.labels.max() < 3


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
