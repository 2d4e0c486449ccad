"""The Python API in ``raygym/__init__.py``: ``import raygym`` stays free of torch and Ray;
prepare, train and evaluate from a notebook; load a model, predict an array and a file, read a
leaderboard, and run a (replayed) search from a mapping."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import raygym
from raygym.config import validate_experiment
from raygym.errors import ConfigError, DataError, RaygymError
from raygym.inference.artifact import export_artifact
from raygym.inference.scoring import LoadedModel
from raygym.models import build_model
from tests.conftest import REPO

CLASSES = ["water", "surf", "wet_sand", "dry_land"]
TABLE = REPO / "bench" / "curves" / "s2_64x128.csv.gz"


def test_import_raygym_loads_neither_torch_nor_ray() -> None:
    code = ("import sys, raygym\n"
            "names = [raygym.load_model, raygym.predict_array, raygym.predict_file,\n"
            "         raygym.run_search, raygym.read_leaderboard, raygym.rehearse_search,\n"
            "         raygym.prepare_dataset, raygym.train_model, raygym.evaluate_model]\n"
            "print(sorted(m for m in ('torch', 'ray', 'segmentation_models_pytorch')\n"
            "             if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    assert set(raygym.__all__) >= {"load_model", "predict_array", "predict_file",
                                   "run_search", "read_leaderboard", "rehearse_search",
                                   "prepare_dataset", "train_model", "evaluate_model",
                                   "Predictor"}
    with pytest.raises(AttributeError):
        raygym.no_such_function  # noqa: B018


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api")
    config = validate_experiment({
        "name": "api", "data": {"images": str(root / "i"), "labels": str(root / "l"),
                                "classes": CLASSES, "target_size": [32, 32],
                                "prepared": str(root / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3}})
    torch.manual_seed(0)
    model = build_model("gym_unet", in_channels=3, num_classes=4,
                        **config.model.builder_kwargs()).eval()
    return export_artifact(root / "best", model, config, in_channels=3, classes=CLASSES,
                           metrics={}, dataset={})


def test_load_model_and_predict_an_array(artifact: Path) -> None:
    model = raygym.load_model(artifact, device="cpu")
    assert isinstance(model, LoadedModel) and model.card.classes == CLASSES
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    labels, probs = raygym.predict_array(model, image)
    assert labels.shape == (40, 56) and labels.dtype == np.uint8
    assert probs.shape == (4, 40, 56) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, probs.argmax(axis=0))
    # the same answer through a kept Predictor and through the folder
    predictor = raygym.Predictor([artifact], device="cpu")
    for source in (predictor, artifact, str(artifact)):
        again, again_probs = raygym.predict_array(source, image)
        np.testing.assert_array_equal(again, labels)
        np.testing.assert_allclose(again_probs, probs, atol=1e-6)
    with pytest.raises(DataError, match="image has 2 bands but the model expects 3$"):
        raygym.predict_array(predictor, image[..., :2])


def test_a_missing_extra_band_is_named(tmp_path: Path) -> None:
    config = validate_experiment({
        "name": "nir", "data": {"images": str(tmp_path / "i"), "labels": str(tmp_path / "l"),
                                "extra_bands": [str(tmp_path / "nir")], "classes": CLASSES,
                                "target_size": [32, 32], "prepared": str(tmp_path / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3}})
    model = build_model("gym_unet", in_channels=4, num_classes=4,
                        **config.model.builder_kwargs()).eval()
    path = export_artifact(tmp_path / "best", model, config, in_channels=4, classes=CLASSES,
                           metrics={}, dataset={})
    rgb = np.zeros((32, 32, 3), dtype=np.uint8)
    with pytest.raises(DataError, match="followed by nir, stacked last .* --band"):
        raygym.predict_array(path, rgb)
    labels, _ = raygym.predict_array(path, np.dstack([rgb, rgb[..., 0]]))
    assert labels.shape == (32, 32)


def test_predict_a_file(artifact: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.random.default_rng(1).integers(0, 255, (36, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "scene.png")
    result = raygym.predict_file(raygym.load_model(artifact, device="cpu"), images,
                                 tmp_path / "out", overlay=False, device="cpu")
    assert result.exit_code == 0
    assert [Path(r["image"]).name for r in result.rows] == ["scene.png"]
    label = np.asarray(Image.open(tmp_path / "out" / "scene_label.png"))
    expected, _ = raygym.predict_array(artifact, pixels)
    np.testing.assert_array_equal(label, expected)
    assert (tmp_path / "out" / "summary.csv").is_file()


def test_top_k_from_python_follows_the_ensemble_rule(tmp_path: Path) -> None:
    """``predict_file(top_k=...)`` and ``Predictor([...])`` weigh a search's models by the
    command's rule (raygym.predict.ensemble): the weak third is left out."""
    config = validate_experiment({
        "name": "api", "data": {"images": str(tmp_path / "i"), "labels": str(tmp_path / "l"),
                                "classes": CLASSES, "target_size": [32, 32],
                                "prepared": str(tmp_path / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3}})
    best = tmp_path / "results" / "best"
    for seed, score in enumerate([0.7, 0.69, 0.5]):
        torch.manual_seed(seed)
        model = build_model("gym_unet", in_channels=3, num_classes=4,
                            **config.model.builder_kwargs()).eval()
        export_artifact(best / f"rank{seed + 1}_t{seed}", model, config, in_channels=3,
                        classes=CLASSES, metrics={"val_mean_iou": score}, dataset={})
    images = tmp_path / "images"
    images.mkdir()
    pixels = np.random.default_rng(2).integers(0, 255, (36, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(images / "scene.png")
    result = raygym.predict_file(tmp_path / "results", images, tmp_path / "out", top_k=3,
                                 overlay=False, device="cpu")
    assert result.ensemble is not None
    assert [p.name for p in result.ensemble.kept] == ["rank1_t0", "rank2_t1"]
    assert result.ensemble.kept_weights == pytest.approx([0.7 / 1.39, 0.69 / 1.39])
    predictor = raygym.Predictor(sorted(best.iterdir()), device="cpu")
    assert predictor.model_dirs == result.ensemble.kept
    label = np.asarray(Image.open(tmp_path / "out" / "scene_label.png"))
    np.testing.assert_array_equal(label, raygym.predict_array(predictor, pixels)[0])


def test_prepare_train_and_evaluate_from_python(tmp_path: Path, demo_data: Path,
                                                ray_session: None) -> None:
    """A notebook's three steps on the demo data: the dataset, a 1-epoch run on Ray Train,
    its model scored on the test split, each as the command does it."""
    experiment = {
        "name": "api_train",
        "data": {"images": str(demo_data / "images"), "labels": str(demo_data / "labels"),
                 "classes": ["water", "whitewater", "sand", "other"], "target_size": [32, 48],
                 "split": {"val": 0.25, "test": 0.25}, "prepared": str(tmp_path / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3},
        # fp32: validation in training then runs as evaluate does (bf16 would move the score)
        "train": {"batch_size": 4, "max_epochs": 1, "rampup_epochs": 1, "precision": "fp32",
                  "output_dir": str(tmp_path / "runs")}}
    assert raygym.prepare_dataset(experiment) == tmp_path / "ds"
    assert (tmp_path / "ds" / "card.json").is_file()
    with pytest.raises(ConfigError, match="model.filters"):
        raygym.train_model(experiment, overrides={"model.filters": {"choice": [2, 4]}})
    run = raygym.train_model(experiment, name="nb")
    assert run == (tmp_path / "runs" / "nb").resolve()
    with (run / "metrics.csv").open() as f:
        trained = float(list(csv.DictReader(f))[-1]["val_mean_iou"])
    result = raygym.evaluate_model(run / "best", split="val", out=tmp_path / "scores")
    # the whole val split, scored as training scored it (one model path)
    assert result.mean_iou == pytest.approx(trained, abs=1e-4)
    assert result.files and all(p.parent == tmp_path / "scores" for p in result.files.values())
    assert str(result.mean_iou)[:6] in (tmp_path / "scores" / "metrics.json").read_text()
    with pytest.raises(RaygymError, match="tta applies to full-size scenes"):
        raygym.evaluate_model(run / "best", tta=True)


def test_read_leaderboard_parses_numbers_and_json(tmp_path: Path) -> None:
    rows = [["rank", "trial_id", "status", "best_val_mean_iou", "epochs", "loss.name",
             "error"],
            [1, "0001e5", "completed", "0.71", "4", json.dumps({"cce": 0.5, "dice": 0.5}), ""],
            [2, "12", "asha-pruned", "", "1", "dice", ""]]
    with (tmp_path / "leaderboard.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    board = raygym.read_leaderboard(tmp_path)
    assert board == raygym.read_leaderboard(tmp_path / "leaderboard.csv")
    assert board[0]["trial_id"] == "0001e5" and board[1]["trial_id"] == "12"  # ids stay text
    assert board[0]["best_val_mean_iou"] == 0.71 and board[0]["epochs"] == 4
    assert board[0]["loss.name"] == {"cce": 0.5, "dice": 0.5}
    assert board[1]["best_val_mean_iou"] == "" and board[1]["error"] == ""
    with pytest.raises(DataError, match="not found"):
        raygym.read_leaderboard(tmp_path / "missing")


def test_a_bad_mapping_is_named_as_the_mapping_not_a_temporary_file() -> None:
    from raygym.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        raygym.run_search({"name": "x"})
    assert str(err.value) == "<python: mapping>: data: required key is missing"


@pytest.mark.slow
def test_run_a_replayed_search_from_a_mapping(tmp_path: Path, ray_session: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths of a mapping resolve against the cwd
    experiment = {
        "name": "api",
        "data": {"images": "nowhere/images", "labels": "nowhere/labels", "classes": CLASSES,
                 "target_size": [64, 128]},
        "model": {"arch": {"choice": ["gym_unet", "gym_resunet"]},
                  "filters": {"choice": [2, 4]}, "kernel": 3},
        "loss": {"name": {"choice": ["dice", "cce"]}},
        "train": {"max_lr": {"choice": [0.001, 0.01]}, "max_epochs": 6, "patience": 3,
                  "rampup_epochs": 1},
        "search": {"num_samples": 3, "max_concurrent": 2, "grace_period": 1,
                   "reduction_factor": 3, "repeat_top": 0, "results_dir": "results"},
    }
    out = raygym.run_search(experiment, replay=TABLE, overrides={"train.patience": 2})
    assert out == tmp_path / "results" / "api-replay"  # a rehearsal's folder
    saved = json.loads((out / "search.json").read_text())
    assert saved["status"] == "finished" and saved["space_file"] == "<python: mapping>"
    assert saved["config"]["train"]["patience"] == 2
    board = raygym.read_leaderboard(out)
    assert 1 <= len(board) <= 3
    scores = [r["best_val_mean_iou"] for r in board]
    assert all(isinstance(s, float) for s in scores) and scores == sorted(scores, reverse=True)
    assert {r["model.arch"] for r in board} <= {"gym_unet", "gym_resunet"}


def test_rehearse_a_space_file_on_its_table(tmp_path: Path) -> None:
    """The shipped S2 rehearsal space: the printed figures' numbers, and a table that cannot
    replay a space is one keyed error."""
    from raygym.errors import ConfigError

    space = REPO / "bench" / "curves" / "s2_128x64_4seeds.space.yaml"
    table = REPO / "bench" / "curves" / "s2_128x64_4seeds.csv.gz"
    out = raygym.rehearse_search(space, table, searches=2, workers=1,
                                 overrides={"search.scheduler": "median"})
    assert [r["name"] for r in out["rows"]] == ["yours", "defaults", "random", "grid"]
    assert "median" in out["rows"][0]["settings"] and out["configurations"] == 72
    assert all(0.0 <= r["top3"][0.5] <= 1.0 and r["searches"] == 2 for r in out["rows"])
    with pytest.raises(ConfigError, match="train.max_epochs"):
        raygym.rehearse_search(space, table, searches=2, overrides={"train.max_epochs": 30})
