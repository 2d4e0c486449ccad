"""``raygym.predict.predictor``: which models a path stands for, ensembles / TTA, and
artifacts refused before any image is read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from raygym.errors import DataError, RaygymError

from . import one_error_line, run_cli, s2_scene, s2_stack


def test_resolve_models_artifact_and_results(s2_models: dict[str, Path]) -> None:
    from raygym.predict import resolve_models

    artifact, results = s2_models["artifact"], s2_models["results"]
    assert resolve_models(artifact, 1) == [artifact]
    assert [p.name for p in resolve_models(results, 2)] == ["rank1_aaaa", "rank2_bbbb"]
    assert [p.name for p in resolve_models(results / "best", 1)] == ["rank1_aaaa"]
    with pytest.raises(RaygymError, match="only 2 models"):
        resolve_models(results, 3)
    with pytest.raises(RaygymError, match="single model artifact"):
        resolve_models(artifact, 2)
    with pytest.raises(DataError, match="not found"):
        resolve_models(results / "nope", 1)


def test_resolve_models_sorts_by_rank_number(tmp_path: Path) -> None:
    from raygym.predict import resolve_models

    for name in ("rank10_x", "rank2_y", "rank1_z", "notes"):
        (tmp_path / "best" / name).mkdir(parents=True)
    assert [p.name for p in resolve_models(tmp_path, 3)] == ["rank1_z", "rank2_y", "rank10_x"]


def test_topk_and_tta_change_the_output_and_are_deterministic(s2_models: dict[str, Path]
                                                              ) -> None:
    from raygym.predict import Predictor, resolve_models

    image = s2_stack(2)
    single = Predictor(resolve_models(s2_models["results"], 1), device="cpu")
    ensemble = Predictor(resolve_models(s2_models["results"], 2), device="cpu")
    _, p1 = single.predict(image)
    _, p2 = ensemble.predict(image)
    _, p1t = single.predict(image, tta=True)
    assert not np.allclose(p1, p2, atol=1e-3)
    assert not np.allclose(p1, p1t, atol=1e-3)
    l2a, p2a = ensemble.predict(image, tta=True)
    l2b, p2b = Predictor(resolve_models(s2_models["results"], 2), device="cpu").predict(
        image, tta=True)
    assert np.array_equal(p2a, p2b) and np.array_equal(l2a, l2b)


@pytest.mark.parametrize("victim", ["model.safetensors", "model_card.json", "config.yaml"])
def test_tampered_artifact_is_refused(s2_models: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], victim: str) -> None:
    bad = tmp_path / "model"
    shutil.copytree(s2_models["artifact"], bad)
    target = bad / victim
    data = bytearray(target.read_bytes())
    if victim == "model_card.json":
        card = json.loads(data)
        card["in_channels"] = 3
        data = bytearray(json.dumps(card).encode())
    else:
        data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    image, nir = s2_scene(0)
    code = run_cli(["predict", str(bad), str(image), "--band", str(nir.parent), "--out",
                    str(tmp_path / "out")])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert victim in line and "checksum" in line


def test_incomplete_artifact_is_refused(s2_models: dict[str, Path], tmp_path: Path) -> None:
    from raygym.predict import PredictOptions, predict_files

    bad = tmp_path / "model"
    shutil.copytree(s2_models["artifact"], bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(DataError, match="missing model.safetensors"):
        predict_files(bad, [s2_scene(0)[0]], PredictOptions(out=tmp_path / "out"))


def test_a_window_larger_than_the_image_is_cut_to_it(s2_models: dict[str, Path]) -> None:
    """``--tile`` beyond the image predicts padding only: the window stops at the image
    (rounded up to the model's multiple of 16), never below the model's 64 x 64 input, so a
    huge tile costs what the image costs (it allocated the whole tile: 37 GiB for 100,000)."""
    from raygym.predict import Predictor

    predictor = Predictor([s2_models["artifact"]], device="cpu")
    image = s2_stack(2)
    h, w = image.shape[:2]
    cut = (-(-h // 16) * 16, -(-w // 16) * 16)
    assert predictor.window_hw(100_000, (h, w)) == cut
    assert predictor.window_hw(None, (h, w)) == (64, 64)  # the model's input, tiled
    assert predictor.window_hw(None, (20, 30)) == (64, 64)  # a small image: padded to it
    assert predictor.window_hw(32, (h, w)) == (32, 32)  # a tile inside the image: as given
    huge = predictor.predict(image, tile=100_000, scale=1.0)
    same = predictor.predict(image, tile=max(cut), scale=1.0)
    np.testing.assert_array_equal(huge[0], same[0])
    np.testing.assert_array_equal(huge[1], same[1])


def test_nan_pixels_of_an_array_are_nodata(s2_models: dict[str, Path]) -> None:
    """A float array with NaN pixels predicts as the same array with those pixels masked
    (label 255 there, left out of the statistics): one NaN poisoned the whole image's
    standardisation before, every label 0 and every probability NaN."""
    from raygym.predict import NODATA, Predictor

    predictor = Predictor([s2_models["artifact"]], device="cpu")
    image = s2_stack(2).astype(np.float32)
    holed = image.copy()
    holed[:12, :20] = np.nan
    holed[30, 5, 1] = np.nan  # one band of one pixel is enough
    masked = np.ones(image.shape[:2], bool)
    masked[:12, :20] = masked[30, 5] = False
    labels, probs = predictor.predict(holed)
    want_labels, want_probs = predictor.predict(np.where(masked[..., None], image, 0),
                                                valid=masked)
    assert np.array_equal(labels, want_labels) and np.allclose(probs, want_probs)
    assert (labels[~masked] == NODATA).all() and not np.isnan(probs).any()
    with pytest.raises(DataError, match="every pixel is nodata"):
        predictor.predict(np.full((40, 40, 4), np.nan, np.float32))


def test_an_empty_or_channels_first_array_is_refused_in_one_line(
        s2_models: dict[str, Path]) -> None:
    from raygym.predict import Predictor

    predictor = Predictor([s2_models["artifact"]], device="cpu")
    with pytest.raises(DataError, match=r"image is empty, shape \(0, 7, 4\)"):
        predictor.predict(np.zeros((0, 7, 4), np.uint8))
    stack = s2_stack(2)
    with pytest.raises(DataError, match=r"looks channels-first.*image\.transpose\(1, 2, 0\)"):
        predictor.predict(np.ascontiguousarray(stack.transpose(2, 0, 1)))
