"""``raygym predict``: georeferencing kept, sliding windows, ensembles / TTA, the Ray path, bad
input. A tiny 4-band model is trained once per module on the prepared Sentinel-2 set (64 x 64,
2 epochs); a 3-band untrained-but-exported model serves the 920 x 614 aerial shape tests."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from raygym.errors import DataError, RaygymError

ROOT = Path(__file__).parents[1] / ".." / "shared" / "data"
S2 = ROOT / "s2_ocean_beach_4class"
AERIAL = ROOT / "usgs_coastal_aerial_3class"
S2_CLASSES = ["water", "surf", "wet_sand", "dry_land"]
NIR_KEY = r"^(.*)_ir(-\d+)$"


def _need(path: Path) -> Path:
    if not (path / "pairs.csv").is_file():
        pytest.skip(f"data set not found at {path.resolve()} (needs ../shared/data beside the "
                    "repository)")
    return path.resolve()


def _s2_config(root: Path, s2: Path) -> Any:
    from raygym.config import validate_experiment

    return validate_experiment({
        "name": "s2_predict",
        "data": {
            "images": str(s2 / "images"),
            "extra_bands": [{"folder": str(s2 / "nir"), "key": NIR_KEY}],
            "labels": str(s2 / "labels"), "classes": S2_CLASSES,
            "remap": {1: 0, 2: 1, 3: 2, 4: 3}, "unknown_labels": "ignore",
            "target_size": [64, 64], "split": {"val": 0.2, "test": 0.1},
            "augment": {"copies": 1, "hflip": True}, "prepared": str(root / "ds"),
        },
        "model": {"arch": "gym_unet", "filters": 4, "kernel": 3},
        "train": {"batch_size": 8, "max_epochs": 2, "patience": 5, "max_lr": 1e-3,
                  "rampup_epochs": 1, "precision": "fp32", "output_dir": str(root / "runs")},
    })


def _export_untrained(config: Any, out: Path, bands: int, seed: int) -> Path:
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import build_model_for

    torch.manual_seed(seed)
    model = build_model_for(config, bands, config.data.num_classes).eval()
    return export_artifact(out, model, config, in_channels=bands,
                           classes=list(config.data.classes), metrics={},
                           dataset={"path": str(config.data.prepared)})


@pytest.fixture(scope="module")
def s2_models(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
              ) -> dict[str, Path]:
    """A trained S2 artifact, plus a search-like results folder (rank1 trained, rank2 not)."""
    s2 = _need(S2)
    request.getfixturevalue("ray_session")  # the session's local Ray (conftest)
    from raygym.data.dataset import PreparedDataset
    from raygym.data.prepare import prepare_dataset
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import NumpyBatches, build_loss_for, build_model_for, fit

    root = tmp_path_factory.mktemp("predict_s2")
    config = _s2_config(root, s2)
    prepare_dataset(config, log=lambda *a, **k: None)
    ds = PreparedDataset(config.data.prepared)
    card = ds.card
    torch.manual_seed(0)
    model = build_model_for(config, card.bands, card.num_classes)
    source = NumpyBatches(ds.load_numpy("train"), ds.load_numpy("val"), 8, seed=0)
    fit(config, model, build_loss_for(config, card), source, card)
    artifact = export_artifact(root / "runs" / "s2" / "best", model, config,
                               in_channels=card.bands, classes=card.classes, metrics={},
                               dataset={"path": str(ds.path), "config_hash": card.config_hash})
    results = root / "results" / "s2"
    shutil.copytree(artifact, results / "best" / "rank1_aaaa")
    _export_untrained(config, results / "best" / "rank2_bbbb", card.bands, seed=1)
    return {"artifact": artifact, "results": results, "root": root}


@pytest.fixture(scope="module")
def aerial_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained-but-exported 3-band, 3-class gym_unet with a 128 x 128 input."""
    aerial = _need(AERIAL)
    from raygym.config import validate_experiment

    root = tmp_path_factory.mktemp("predict_aerial")
    config = validate_experiment({
        "name": "aerial", "data": {
            "images": str(aerial / "images"), "labels": str(aerial / "labels"),
            "classes": ["deep_water", "shallow_water", "land"], "target_size": [128, 128],
            "prepared": str(root / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3},
    })
    return _export_untrained(config, root / "aerial_best", 3, seed=0)


def _s2_scene(n: int = 0) -> tuple[Path, Path]:
    s2 = _need(S2)
    image = sorted((s2 / "images").glob("*.jpg"))[n]
    base, tile = image.stem.rsplit("-", 1)
    return image, s2 / "nir" / f"{base}_ir-{tile}.jpg"


def _s2_stack(n: int = 0) -> np.ndarray:
    image, nir = _s2_scene(n)
    rgb = np.asarray(Image.open(image).convert("RGB"))
    ir = np.asarray(Image.open(nir).convert("L"))[..., None]
    return np.concatenate([rgb, ir], axis=2)


def _write_geotiff(path: Path, hwc: np.ndarray, crs: str | None, transform: Any) -> Path:
    import rasterio

    kwargs: dict[str, Any] = {"transform": transform} if transform is not None else {}
    if crs is not None:
        kwargs["crs"] = crs
    with rasterio.open(path, "w", driver="GTiff", height=hwc.shape[0], width=hwc.shape[1],
                       count=hwc.shape[2], dtype=str(hwc.dtype), **kwargs) as dst:
        dst.write(np.moveaxis(hwc, -1, 0))
    return path


def _console() -> Any:
    from rich.console import Console

    return Console(file=StringIO(), width=120)


def _read_summary(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------- models
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


# -------------------------------------------------------------------------- geotiff
def test_geotiff_keeps_crs_transform_and_areas(s2_models: dict[str, Path], tmp_path: Path
                                               ) -> None:
    import rasterio
    from rasterio.transform import from_origin

    from raygym.predict import predict_files

    stack = _s2_stack(0)
    transform = from_origin(545_000.0, 4_180_000.0, 10.0, 10.0)
    src = _write_geotiff(tmp_path / "scene.tif", stack, "EPSG:32610", transform)
    out = tmp_path / "out"
    result = predict_files(s2_models["artifact"], [src], out=out, probabilities=True)
    assert result.exit_code == 0 and not result.skipped and not result.warnings
    with rasterio.open(out / "scene_label.tif") as lab:
        assert lab.crs.to_epsg() == 32610
        assert lab.transform == transform
        assert (lab.height, lab.width) == stack.shape[:2]
        assert lab.profile["compress"].lower() == "deflate" and lab.profile["tiled"]
        labels = lab.read(1)
    assert labels.max() < 4
    with rasterio.open(out / "scene_probs.tif") as prob:
        assert prob.count == 4 and prob.transform == transform and prob.crs == lab.crs
        assert list(prob.descriptions) == S2_CLASSES
        total = prob.read().astype(int).sum(axis=0)
    assert np.abs(total - 255).max() <= 2  # uint8-rounded probabilities sum to 1
    (row,) = _read_summary(out / "summary.csv")
    assert float(row["pixel_area_m2"]) == 100.0
    for k, name in enumerate(S2_CLASSES):
        n = int((labels == k).sum())
        assert int(row[f"{name}_pixels"]) == n
        assert float(row[f"{name}_m2"]) == pytest.approx(n * 100.0)
    assert (out / "scene_overlay.png").is_file()


def test_geotiff_without_crs_is_written_without_and_warns(s2_models: dict[str, Path],
                                                           tmp_path: Path) -> None:
    import rasterio

    from raygym.predict import predict_files

    src = _write_geotiff(tmp_path / "nocrs.tif", _s2_stack(1), None, None)
    result = predict_files(s2_models["artifact"], [src], out=tmp_path / "out")
    assert result.exit_code == 0
    assert any("no CRS" in w and "nocrs.tif" in w for w in result.warnings)
    with rasterio.open(tmp_path / "out" / "nocrs_label.tif") as lab:
        assert lab.crs is None
    (row,) = _read_summary(tmp_path / "out" / "summary.csv")
    assert row["pixel_area_m2"] == "" and row["water_m2"] == ""


# ----------------------------------------------------------------------- band layout
def test_png_inputs_with_band_folder_use_the_training_key(s2_models: dict[str, Path],
                                                          tmp_path: Path) -> None:
    from raygym.predict import predict_files

    images, nirs = tmp_path / "img", tmp_path / "nir"
    images.mkdir()
    nirs.mkdir()
    for n in range(2):
        image, nir = _s2_scene(n)
        shutil.copy(image, images)
        shutil.copy(nir, nirs)
    out = tmp_path / "out"
    result = predict_files(s2_models["artifact"], [images], extra_bands=[nirs], out=out)
    assert result.exit_code == 0 and len(result.rows) == 2
    for n in range(2):
        image, _ = _s2_scene(n)
        label = np.asarray(Image.open(out / f"{image.stem}_label.png"))
        assert label.shape == Image.open(image).size[::-1]
        assert label.max() < 4


def test_band_match_rule(tmp_path: Path) -> None:
    from raygym.predict import match_band

    files = [tmp_path / n for n in ("a-0_nir.png", "a-1_nir.png", "b-0.png", "scene_ir-0.jpg")]
    assert match_band(tmp_path / "a-1.png", files) == files[1]  # stem prefix
    assert match_band(tmp_path / "b-0.jpg", files) == files[2]  # same stem
    assert match_band(tmp_path / "scene-0.jpg", files, None, NIR_KEY) == files[3]  # regex keys
    assert match_band(tmp_path / "c.png", files) is None


# ------------------------------------------------------------------- sliding window
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
    from raygym.predict import Predictor, predict_files

    image = sorted((_need(AERIAL) / "images").glob("*.jpg"))[0]
    predictor = Predictor([aerial_model], device="cpu")
    rgb = np.asarray(Image.open(image).convert("RGB"))
    labels, probs = predictor.predict(rgb, overlap=0.25)
    assert labels.shape == (614, 920) and probs.shape == (3, 614, 920)
    assert labels.max() < 3
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    # overlapping windows really blend: a different overlap changes the probabilities
    _, probs_half = predictor.predict(rgb, overlap=0.5)
    assert not np.allclose(probs, probs_half)
    result = predict_files(aerial_model, [image], out=tmp_path / "out", tile=256)
    assert result.exit_code == 0
    assert np.asarray(Image.open(tmp_path / "out" / f"{image.stem}_label.png")).shape == (614, 920)
    with pytest.raises(RaygymError, match="multiple of 16"):
        predictor.tile_hw(100)


def test_small_image_is_padded_and_cropped_back(s2_models: dict[str, Path]) -> None:
    from raygym.predict import Predictor

    predictor = Predictor([s2_models["artifact"]], device="cpu")
    small = _s2_stack(0)[:40, :50]
    labels, probs = predictor.predict(small)
    assert labels.shape == (40, 50) and probs.shape == (4, 40, 50)
    labels2, _ = predictor.predict(_s2_stack(0), scale=0.5)
    assert labels2.shape == _s2_stack(0).shape[:2]


# ------------------------------------------------------------------- ensemble / TTA
def test_topk_and_tta_change_the_output_and_are_deterministic(s2_models: dict[str, Path]
                                                              ) -> None:
    from raygym.predict import Predictor, resolve_models

    image = _s2_stack(2)
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


# ------------------------------------------------------------------------ Ray path
@pytest.mark.slow
def test_ray_path_equals_plain_path(s2_models: dict[str, Path], tmp_path: Path,
                                    request: pytest.FixtureRequest) -> None:
    from raygym.predict import predict_files

    request.getfixturevalue("ray_session")  # the session's local Ray (conftest)
    images = tmp_path / "img"
    images.mkdir()
    for n in range(4):
        shutil.copy(_s2_scene(n)[0], images)
    bands = [_need(S2) / "nir"]
    plain = predict_files(s2_models["artifact"], [images], extra_bands=bands,
                          out=tmp_path / "plain", tta=True, probabilities=True)
    ray_run = predict_files(s2_models["artifact"], [images], extra_bands=bands,
                            out=tmp_path / "ray", tta=True, probabilities=True, use_ray=True)
    assert len(plain.rows) == len(ray_run.rows) == 4
    assert (tmp_path / "plain" / "summary.csv").read_text() == (
        tmp_path / "ray" / "summary.csv").read_text()
    import rasterio

    for png in sorted((tmp_path / "plain").glob("*_label.png")):
        a = np.asarray(Image.open(png))
        b = np.asarray(Image.open(tmp_path / "ray" / png.name))
        assert np.array_equal(a, b)
        name = png.name.replace("_label.png", "_probs.tif")
        with rasterio.open(tmp_path / "plain" / name) as pa, \
                rasterio.open(tmp_path / "ray" / name) as pb:
            # 1 vs 2 torch threads may round a probability to the neighbouring uint8 level
            assert np.abs(pa.read().astype(int) - pb.read().astype(int)).max() <= 1


def test_predict_needs_no_ray(s2_models: dict[str, Path], tmp_path: Path) -> None:
    image, nir = _s2_scene(0)
    code = (
        "import sys; from pathlib import Path; from raygym.predict import predict_files\n"
        f"r = predict_files(Path({str(s2_models['artifact'])!r}), [Path({str(image)!r})], "
        f"extra_bands=[Path({str(nir.parent)!r})], out=Path({str(tmp_path / 'o')!r}))\n"
        "assert len(r.rows) == 1, r.skipped\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------------ bad input
def _cli(argv: list[str]) -> int:
    from raygym.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_wrong_band_count_is_refused(s2_models: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    image, _ = _s2_scene(0)  # RGB only: the model wants RGB + NIR
    code = _cli(["predict", str(s2_models["artifact"]), str(image), "--out",
                 str(tmp_path / "out")])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert image.name in line and "3 bands" in line and "expects 4" in line


def test_unreadable_files_are_skipped_and_listed(s2_models: dict[str, Path], tmp_path: Path
                                                 ) -> None:
    from raygym.predict import predict_command

    images = tmp_path / "img"
    images.mkdir()
    for n in range(2):
        shutil.copy(_s2_scene(n)[0], images)
    (images / "broken.jpg").write_bytes(b"not a jpeg at all")
    bands = [_need(S2) / "nir"]
    console = _console()
    code = predict_command(s2_models["artifact"], [images], out=tmp_path / "out", top_k=1,
                           tta=False, tile=None, overlap=0.25, probabilities=False,
                           extra_bands=bands, use_ray=False, console=console)
    text = console.file.getvalue()
    assert code == 0
    assert "skipped 1 files" in text and "broken.jpg" in text
    assert len(_read_summary(tmp_path / "out" / "summary.csv")) == 2

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"garbage")
    (bad / "b.png").write_bytes(b"garbage")
    console = _console()
    code = predict_command(s2_models["artifact"], [bad], out=tmp_path / "out2", top_k=1,
                           tta=False, tile=None, overlap=0.25, probabilities=False,
                           extra_bands=bands, use_ray=False, console=console)
    assert code == 1
    assert "all images failed" in console.file.getvalue()


def test_output_inside_input_folder_is_refused(s2_models: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "img"
    images.mkdir()
    shutil.copy(_s2_scene(0)[0], images)
    code = _cli(["predict", str(s2_models["artifact"]), str(images), "--band",
                 str(_need(S2) / "nir"), "--out", str(images / "pred")])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "inside the input folder" in line
    assert not (images / "pred").exists()


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
    image, nir = _s2_scene(0)
    code = _cli(["predict", str(bad), str(image), "--band", str(nir.parent), "--out",
                 str(tmp_path / "out")])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert victim in line and "checksum" in line


def test_incomplete_artifact_is_refused(s2_models: dict[str, Path], tmp_path: Path) -> None:
    from raygym.predict import predict_files

    bad = tmp_path / "model"
    shutil.copytree(s2_models["artifact"], bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(DataError, match="missing model.safetensors"):
        predict_files(bad, [_s2_scene(0)[0]], out=tmp_path / "out")
