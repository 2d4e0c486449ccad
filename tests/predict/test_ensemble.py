"""``predict --top-k``: which models an ensemble keeps and how it weighs them
(:mod:`raygym.predict.ensemble`), and that predictor, command and CLI apply that one rule.

The weighting is checked on known scores; the path end to end on three tiny untrained
artifacts (3 bands, 32 x 32, seconds) whose model cards carry known validation scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from raygym.errors import RaygymError
from raygym.predict.ensemble import ensemble_weights, plan_ensemble

from . import UTM, run_cli, string_console, utm_transform, write_tiff

CLASSES = ["water", "sand", "land"]
SCORES = {"rank1_a": 0.80, "rank2_b": 0.78, "rank3_c": 0.60}


# ------------------------------------------------------------------ the weighting rule
def test_a_weak_member_is_left_out_and_the_rest_weighted_by_score() -> None:
    w = ensemble_weights([0.80, 0.78, 0.60], margin=0.05, weights="score")
    assert w[2] == 0.0
    assert w[0] == pytest.approx(0.80 / 1.58) and w[1] == pytest.approx(0.78 / 1.58)
    assert sum(w) == pytest.approx(1.0)


def test_equal_mode_keeps_the_margin_and_splits_evenly() -> None:
    assert ensemble_weights([0.80, 0.78, 0.60], margin=0.05, weights="equal") == \
        [0.5, 0.5, 0.0]
    assert ensemble_weights([0.80, 0.78, 0.60], margin=1.0, weights="equal") == \
        pytest.approx([1 / 3] * 3), "margin 1: the plain average of all k"


def test_a_single_member_has_weight_one() -> None:
    assert ensemble_weights([0.42]) == [1.0]
    assert ensemble_weights([None]) == [1.0]


def test_the_margin_boundary_is_kept_and_zero_margin_keeps_ties_only() -> None:
    assert ensemble_weights([0.80, 0.75], margin=0.05, weights="equal") == [0.5, 0.5]
    assert ensemble_weights([0.80, 0.80, 0.79], margin=0.0, weights="equal") == \
        [0.5, 0.5, 0.0]


def test_an_unknown_score_falls_back_to_equal_weights_for_all() -> None:
    assert ensemble_weights([0.80, None, 0.10]) == pytest.approx([1 / 3] * 3)
    assert ensemble_weights([0.80, float("nan")]) == [0.5, 0.5]


def test_all_zero_scores_are_weighted_equally() -> None:
    assert ensemble_weights([0.0, 0.0], weights="score") == [0.5, 0.5]


@pytest.mark.parametrize(("margin", "weights"), [(-0.1, "score"), (float("nan"), "score"),
                                                 (0.05, "best")])
def test_a_bad_rule_is_refused(margin: float, weights: str) -> None:
    with pytest.raises(RaygymError, match="--ensemble-"):
        ensemble_weights([0.8, 0.7], margin=margin, weights=weights)  # type: ignore[arg-type]


def test_the_plan_names_the_rule_members_and_weights(tmp_path: Path) -> None:
    members = [tmp_path / n for n in SCORES]
    plan = plan_ensemble(members, [{"val_mean_iou": s} for s in SCORES.values()])
    assert plan.kept == members[:2]
    lines = plan.lines()
    assert lines[0] == ("ensemble of 2 of 3 models: models within 0.05 validation mean IoU "
                        "of the best kept, weighted in proportion to it")
    assert "rank3_c  val mIoU 0.6000  left out (0.2000 below the best)" in lines[3]
    record = plan.to_json()
    assert [m["weight"] for m in record["members"]] == list(plan.weights)
    assert [m["kept"] for m in record["members"]] == [True, True, False]
    unscored = plan_ensemble(members[:2], [{"val_mean_iou": 0.8}, {}])
    assert unscored.kept == members[:2] and "rank2_b" in unscored.rule()


# ----------------------------------------------------------------- one path, end to end
@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``best/rank<N>_*`` of three tiny untrained gym_unets with the scores of SCORES."""
    from raygym.config import validate_experiment
    from raygym.inference.artifact import export_artifact
    from raygym.models import build_model

    root = tmp_path_factory.mktemp("ensemble")
    config = validate_experiment({
        "name": "ens", "data": {"images": str(root / "i"), "labels": str(root / "l"),
                                "classes": CLASSES, "target_size": [32, 32],
                                "prepared": str(root / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3}})
    for seed, (name, score) in enumerate(SCORES.items()):
        torch.manual_seed(seed)
        model = build_model("gym_unet", in_channels=3, num_classes=3,
                            **config.model.builder_kwargs()).eval()
        export_artifact(root / "results" / "best" / name, model, config, in_channels=3,
                        classes=CLASSES, metrics={"val_mean_iou": score, "epoch": 3},
                        dataset={})
    return root / "results"


def test_the_predictor_weighs_its_members_as_planned(results: Path) -> None:
    """The ensemble's probabilities are the planned weighted sum of its members' own."""
    from raygym.predict.predictor import Predictor, resolve_models

    dirs = resolve_models(results, 3)
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    ensemble = Predictor(dirs, device="cpu")
    assert ensemble.model_dirs == dirs[:2] and len(ensemble.models) == 2, "rank3 never loaded"
    _, probs = ensemble.predict(image, tile=32)
    alone = [Predictor([d], device="cpu").predict(image, tile=32)[1] for d in dirs[:2]]
    w1, w2 = 0.80 / 1.58, 0.78 / 1.58
    np.testing.assert_allclose(probs, w1 * alone[0] + w2 * alone[1], rtol=1e-5, atol=1e-6)
    equal = Predictor(dirs, device="cpu", ensemble_margin=1.0, ensemble_weights="equal")
    assert equal.weights == pytest.approx([1 / 3] * 3)


def test_predict_prints_and_records_the_ensemble(results: Path, tmp_path: Path) -> None:
    """``raygym predict --top-k 3``: the rule and weights printed once, and in the
    GeoTIFF's ``models`` tag; ``--ensemble-weights equal`` changes them."""
    import rasterio

    from raygym.predict import PredictOptions, predict_and_print

    image = np.random.default_rng(1).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    tif = write_tiff(tmp_path / "scene.tif", image, UTM, utm_transform())
    console = string_console()
    code = predict_and_print(results, [tif], PredictOptions(out=tmp_path / "maps", top_k=3,
                                                             overlay=False), console=console)
    printed = console.file.getvalue()
    assert code == 0 and printed.count("ensemble of 2 of 3 models") == 1
    assert "rank3_c  val mIoU 0.6000  left out" in printed
    with rasterio.open(tmp_path / "maps" / "scene_label.tif") as src:
        record = json.loads(src.tags()["models"])
    assert [(m["model"], m["kept"]) for m in record["members"]] == \
        [("rank1_a", True), ("rank2_b", True), ("rank3_c", False)]
    assert record["members"][0]["weight"] == pytest.approx(0.80 / 1.58)
    assert record["margin"] == 0.05 and record["weights"] == "score"

    assert run_cli(["predict", str(results), str(tif), "--out", str(tmp_path / "eq"),
                    "--top-k", "3", "--ensemble-weights", "equal", "--ensemble-margin",
                    "0.3"]) == 0
    with rasterio.open(tmp_path / "eq" / "scene_label.tif") as src:
        record = json.loads(src.tags()["models"])
    assert [m["weight"] for m in record["members"]] == pytest.approx([1 / 3] * 3)

    # one model: nothing is weighed, but the tag still names its validation score
    assert run_cli(["predict", str(results), str(tif), "--out", str(tmp_path / "one")]) == 0
    with rasterio.open(tmp_path / "one" / "scene_label.tif") as src:
        record = json.loads(src.tags()["models"])
    assert record["rule"] == "one model"
    assert [(m["model"], m["val_mean_iou"]) for m in record["members"]] == [("rank1_a", 0.80)]


def test_a_negative_margin_is_one_line(results: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["predict", str(results), str(tmp_path), "--out", str(tmp_path / "o"),
                    "--top-k", "2", "--ensemble-margin", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--ensemble-margin" in err and ">= 0" in err
    assert not (tmp_path / "o").exists()
