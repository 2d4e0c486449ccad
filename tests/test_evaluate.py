"""``raygym evaluate`` on the prepared Sentinel-2 set with an exported model: every metric
recomputed by hand from the confusion matrix read back from ``confusion.csv``; the whole split
(originals only) scored; Ray Data and plain torch agree; top-k of a search; bad input."""

from __future__ import annotations

import csv
import json
import math
import shutil
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from raygym.errors import DataError

S2 = Path(__file__).parents[1] / ".." / "shared" / "data" / "s2_ocean_beach_4class"
CLASSES = ["water", "surf", "wet_sand", "dry_land"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
            ) -> dict[str, Any]:
    """S2 prepared at 64 x 64, a gym_unet trained 2 epochs with fit(), exported."""
    if not (S2 / "pairs.csv").is_file():
        pytest.skip(f"S2 data set not found at {S2.resolve()} (needs ../shared/data beside "
                    "the repository)")
    s2 = S2.resolve()
    request.getfixturevalue("ray_session")  # the session's local Ray (conftest)
    from raygym.config import validate_experiment
    from raygym.data.dataset import PreparedDataset
    from raygym.data.prepare import prepare_dataset
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import NumpyBatches, build_loss_for, build_model_for, fit

    root = tmp_path_factory.mktemp("evaluate_s2")
    config = validate_experiment({
        "name": "s2_eval",
        "data": {
            "images": str(s2 / "images"),
            "extra_bands": [{"folder": str(s2 / "nir"), "key": r"^(.*)_ir(-\d+)$"}],
            "labels": str(s2 / "labels"), "classes": CLASSES,
            "remap": {1: 0, 2: 1, 3: 2, 4: 3}, "unknown_labels": "ignore",
            "target_size": [64, 64], "split": {"val": 0.2, "test": 0.1},
            "augment": {"copies": 1, "hflip": True}, "prepared": str(root / "ds"),
        },
        "model": {"arch": "gym_unet", "filters": 4, "kernel": 3},
        "train": {"batch_size": 8, "max_epochs": 2, "patience": 5, "max_lr": 1e-3,
                  "rampup_epochs": 1, "precision": "fp32", "precise_bn_images": 16},
    })
    prepare_dataset(config, log=lambda *a, **k: None)
    ds = PreparedDataset(config.data.prepared)
    card = ds.card
    torch.manual_seed(0)
    model = build_model_for(config, card.bands, card.num_classes)
    fit(config, model, build_loss_for(config, card),
        NumpyBatches(ds.load_numpy("train"), ds.load_numpy("val"), 8, seed=0), card)
    artifact = export_artifact(
        root / "runs" / "s2" / "best", model, config, in_channels=card.bands,
        classes=card.classes, metrics={},
        dataset={"path": str(ds.path), "config_hash": card.config_hash})
    return {"artifact": artifact, "dataset": ds, "config": config, "root": root}


@pytest.fixture(scope="module")
def evaluated(trained: dict[str, Any]) -> Any:
    from raygym.evaluate import evaluate_model_on_split

    return evaluate_model_on_split(trained["artifact"], None, "test")


def _console() -> Any:
    from rich.console import Console

    return Console(file=StringIO(), width=140)


def test_metrics_equal_a_hand_computation_from_the_csv(evaluated: Any, trained: dict) -> None:
    from raygym.evaluate import read_confusion_csv

    out = trained["artifact"] / "evaluation_test"
    assert evaluated.out_dir == out
    names, cm = read_confusion_csv(out / "confusion.csv")
    assert names == CLASSES
    report = json.loads((out / "metrics.json").read_text())
    m = report["metrics"]
    assert np.array_equal(np.asarray(report["confusion"]), cm)
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0
    ious = []
    for c, name in enumerate(CLASSES):
        if not present[c]:
            assert m[f"iou/{name}"] is None
            continue
        iou = tp[c] / (tp[c] + fp[c] + fn[c])
        ious.append(iou)
        assert m[f"iou/{name}"] == pytest.approx(iou)
        assert m[f"f1/{name}"] == pytest.approx(2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]))
        prec = tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else 0.0
        rec = tp[c] / (tp[c] + fn[c]) if tp[c] + fn[c] else 0.0
        assert m[f"precision/{name}"] == pytest.approx(prec)
        assert m[f"recall/{name}"] == pytest.approx(rec)
    assert m["mean_iou"] == pytest.approx(np.mean(ious))
    # the bootstrap interval over the split's images holds the score
    spans = report["intervals"]
    assert f"over the {evaluated.num_images} images" in spans["method"]
    low, high = spans["mean_iou"]
    assert low <= m["mean_iou"] <= high and low < high
    assert evaluated.unit_confusions.shape == (evaluated.num_images, 4, 4)
    assert np.array_equal(evaluated.unit_confusions.sum(axis=0), report["confusion"])
    n = cm.sum()
    assert m["accuracy"] == pytest.approx(tp.sum() / n)
    truth = cm.sum(axis=1)
    fw = sum(truth[c] / n * tp[c] / (tp[c] + fp[c] + fn[c]) for c in range(4) if truth[c])
    assert m["fw_iou"] == pytest.approx(fw)
    pred = cm.sum(axis=0)
    mcc = (tp.sum() * n - pred @ truth) / math.sqrt((n**2 - pred @ pred) * (n**2 - truth @ truth))
    assert m["mcc"] == pytest.approx(mcc)
    assert m["kld"] is not None and m["kld"] > 0
    for name in ("confusion.png", "per_image.csv", "per_image_iou.png", "worst.png", "best.png"):
        assert (out / name).stat().st_size > 0, name
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_the_whole_split_is_scored(evaluated: Any, trained: dict) -> None:
    """Every original test image, every labelled pixel: the truth row sums equal the
    dataset card's pixel counts for the split."""
    card = trained["dataset"].card
    assert evaluated.num_images == card.splits["test"]["sources"]
    assert evaluated.confusion.sum(axis=1).tolist() == card.splits["test"]["pixels_per_class"]
    with (evaluated.out_dir / "per_image.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == evaluated.num_images
    assert sum(int(r["pixels"]) for r in rows) == int(evaluated.confusion.sum())
    # per-image mean IoU = mean over the classes present in that image's truth or prediction
    from raygym.train.metrics import metrics_from_confusion

    first = evaluated.per_image[0]
    assert float(rows[0]["mean_iou"]) == pytest.approx(first["mean_iou"])
    assert 0.0 <= first["mean_iou"] <= 1.0
    assert metrics_from_confusion(evaluated.confusion, CLASSES)["mean_iou"] == pytest.approx(
        evaluated.mean_iou)


def test_originals_only(trained: dict) -> None:
    """On train (which holds augmented copies) only copy 0 is scored."""
    from raygym.evaluate import evaluate_model_on_split

    ds = trained["dataset"]
    result = evaluate_model_on_split(trained["artifact"], ds.path, "train", overlays=0,
                                     out_dir=trained["root"] / "train_eval")
    card = ds.card
    assert card.splits["train"]["rows"] == 2 * card.splits["train"]["sources"]
    assert result.num_images == card.splits["train"]["sources"]
    originals = ds.load_numpy("train", originals_only=True)
    assert int(result.confusion.sum()) == int((originals.labels != 255).sum())


@pytest.mark.slow
def test_ray_data_path_gives_the_same_confusion_matrix(evaluated: Any, trained: dict,
                                                       request: pytest.FixtureRequest) -> None:
    from raygym.evaluate import evaluate_model_on_split

    request.getfixturevalue("ray_session")  # the session's local Ray (conftest)
    result = evaluate_model_on_split(trained["artifact"], None, "test", use_ray=True,
                                     out_dir=trained["root"] / "ray_eval", overlays=1)
    assert result.engine == "ray-data"
    assert np.array_equal(result.confusion, evaluated.confusion)
    assert [r["key"] for r in result.per_image] == [r["key"] for r in evaluated.per_image]
    assert result.metrics["kld"] == pytest.approx(evaluated.metrics["kld"], rel=1e-5)


def test_top_k_of_a_search(trained: dict, tmp_path: Path) -> None:
    from raygym.evaluate_command import evaluate_command
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import build_model_for

    results = tmp_path / "results" / "s2"
    shutil.copytree(trained["artifact"], results / "best" / "rank1_aaaa",
                    ignore=shutil.ignore_patterns("evaluation_*"))
    torch.manual_seed(1)
    config = trained["config"]
    export_artifact(results / "best" / "rank2_bbbb", build_model_for(config, 4, 4), config,
                    in_channels=4, classes=CLASSES, metrics={},
                    dataset={"path": str(trained["dataset"].path)},
                    training={"params": {"model.filters": 2, "loss.name": {"cce": 0.5,
                                                                          "dice": 0.5}}})
    console = _console()
    code = evaluate_command(results, split="test", top_k=2, dataset=None, use_ray=False,
                            console=console)
    assert code == 0
    text = console.file.getvalue()
    assert "rank1_aaaa" in text and "rank2_bbbb" in text and "top 2 on test" in text
    for rank in ("rank1_aaaa", "rank2_bbbb"):
        assert (results / "best" / rank / "evaluation_test" / "metrics.json").is_file()
    with (results / "evaluation_test.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["rank1_aaaa", "rank2_bbbb"]
    # what the search sampled for each: a train run's artifact has none
    assert rows[0]["params"] == "" and json.loads(rows[1]["params"]) == {
        "model.filters": 2, "loss.name": {"cce": 0.5, "dice": 0.5}}
    assert "filters=2, loss=0.5cce+0.5dice" in text
    # rank 2 (untrained) against rank 1 on the same images: clearly worse
    assert "vs 1st" in text and rows[0]["diff_vs_first_low"] == ""
    low, high = float(rows[1]["diff_vs_first_low"]), float(rows[1]["diff_vs_first_high"])
    assert low <= high < 0


def _ranked_copies(trained: dict, results: Path, scores: list[float]) -> list[Path]:
    """``results/best/rank<i>_m<i>``: the trained model re-exported with each validation
    score, except the last, which is an untrained model."""
    from raygym.inference.artifact import export_artifact, load_artifact
    from raygym.train.loop import build_model_for

    model, card, config = load_artifact(trained["artifact"], torch.device("cpu"))
    out = []
    for i, score in enumerate(scores, start=1):
        if i == len(scores):
            torch.manual_seed(3)
            model = build_model_for(config, 4, 4)
        out.append(export_artifact(
            results / "best" / f"rank{i}_m{i}", model, config, in_channels=card.in_channels,
            classes=card.classes, metrics={"val_mean_iou": score},
            dataset={"path": str(trained["dataset"].path)}))
    return out


def test_the_ensemble_of_the_top_k_is_scored_as_predict_maps_with_it(
        trained: dict, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``--ensemble``: rank 1 and 2 are the same weights (so their ensemble is that model,
    pixel for pixel); rank 3 (untrained) is more than the margin below and left out, as
    ``predict --top-k 3`` would leave it."""
    from raygym.evaluate import evaluate_model_on_split
    from raygym.evaluate_command import evaluate_command

    results = tmp_path / "results" / "s2"
    members = _ranked_copies(trained, results, [0.50, 0.49, 0.10])
    console = _console()
    assert evaluate_command(results, split="test", top_k=3, dataset=None, use_ray=False,
                            console=console, ensemble=True) == 0
    text = " ".join(console.file.getvalue().split())
    assert "ensemble of 2 of 3 models (rank3_m3 left out)" in text
    report = results / "evaluation_test_top3_ensemble"  # beside best/, not inside it
    saved = json.loads((report / "metrics.json").read_text())
    kept = [(m["model"], m["kept"]) for m in saved["ensemble"]["members"]]
    assert kept == [("rank1_m1", True), ("rank2_m2", True), ("rank3_m3", False)]
    single = json.loads((members[0] / "evaluation_test" / "metrics.json").read_text())
    assert saved["confusion"] == single["confusion"]
    assert saved["metrics"]["kld"] == pytest.approx(single["metrics"]["kld"], rel=1e-5)
    with (results / "evaluation_test.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["rank1_m1", "rank2_m2", "rank3_m3", "top3_ensemble"]
    assert float(rows[3]["diff_vs_first_low"]) == float(rows[3]["diff_vs_first_high"]) == 0.0
    assert json.loads(rows[3]["params"]) == {"rank1_m1": pytest.approx(0.5 / 0.99),
                                             "rank2_m2": pytest.approx(0.49 / 0.99)}
    # the search's report shows that table, the ensemble beside its members
    from raygym.report.document import ReportDocument
    from raygym.report.evaluations import evaluations_section
    from raygym.report.results import load_results

    doc = ReportDocument(tmp_path / "figures")
    (results / "search.json").write_text(json.dumps({"name": "s2", "status": "finished"}))
    evaluations_section(doc, load_results(results))
    [(cols, shown, _)] = [b.data for b in doc.sections[0].blocks if b.kind == "table"]
    assert [r[0] for r in shown] == [r["model"] for r in rows]
    assert shown[3][cols.index("vs 1st (95 %)")] == "+0.000 to +0.000"
    assert shown[3][cols.index("mean IoU")] == f"{float(rows[3]['mean_iou']):.4f}"
    assert "rank1_m1=" in shown[3][-1] and "rank2_m2=" in shown[3][-1]
    assert float(rows[2]["diff_vs_first_high"]) < 0  # the untrained one
    import raygym  # the API's top_k: the same ensemble

    api = raygym.evaluate_model(results, top_k=3, out=tmp_path / "api")
    assert api.is_ensemble and api.confusion.tolist() == saved["confusion"]
    # a margin of 0 keeps rank 1 alone: still reported as the ensemble the rule made
    alone = evaluate_model_on_split(members, None, "test", ensemble_margin=0.0, overlays=0)
    assert alone.is_ensemble and alone.members == members[:1]
    assert alone.label == "ensemble of rank1_m1" and alone.out_dir == report
    # every member kept, equal weights: the untrained one now pulls the map away from rank 1,
    # the same way through Ray Data's actors as in this process
    request.getfixturevalue("ray_session")
    plain, by_ray = (evaluate_model_on_split(members, None, "test", out_dir=tmp_path / name,
                                             use_ray=use_ray, ensemble_margin=1.0,
                                             ensemble_weights="equal", overlays=0)
                     for name, use_ray in (("plain", False), ("ray", True)))
    np.testing.assert_array_equal(plain.confusion, by_ray.confusion)
    assert plain.members == members and plain.confusion.tolist() != single["confusion"]

    # labelled scenes at full size (--data): the same rule through predict's Predictor
    from raygym.evaluate_scenes import evaluate_model_on_scenes

    s2 = S2.resolve()
    rows = list(csv.reader((s2 / "pairs.csv").open()))
    manifest = tmp_path / "site.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], [str(s2 / cell) for cell in rows[1]]])
    site = tmp_path / "site.yaml"
    site.write_text(f"data:\n  manifest: {manifest}\n  classes: {CLASSES}\n"
                    "  remap: {1: 0, 2: 1, 3: 2, 4: 3}\n  unknown_labels: ignore\n")
    alone = evaluate_model_on_scenes(members[0], site, overlays=0, device="cpu")
    both = evaluate_model_on_scenes(members, site, overlays=0, device="cpu")
    assert both.members == members[:2] and both.out_dir == (
        results / "evaluation_scenes_site_top3_ensemble")
    np.testing.assert_array_equal(both.confusion, alone.confusion)


def test_ensemble_options_need_a_search_and_ensemble(trained: dict, tmp_path: Path) -> None:
    from raygym.errors import RaygymError
    from raygym.evaluate_command import evaluate_command

    with pytest.raises(RaygymError, match="ensemble of one search's top-k") as err:
        evaluate_command(trained["artifact"], split="test", top_k=1, dataset=None,
                         use_ray=False, console=_console(), ensemble=True)
    assert err.value.key == "--ensemble"
    assert _cli(["evaluate", str(trained["artifact"]), "--ensemble-margin", "0.2"]) == 2


def test_several_model_folders_are_compared_on_one_split(trained: dict, tmp_path: Path) -> None:
    from raygym.errors import RaygymError
    from raygym.evaluate_command import evaluate_command
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import build_model_for

    config, ds = trained["config"], trained["dataset"]
    first = tmp_path / "site_a" / "best"
    shutil.copytree(trained["artifact"], first, ignore=shutil.ignore_patterns("evaluation_*"))
    torch.manual_seed(2)
    other = export_artifact(tmp_path / "site_b" / "best", build_model_for(config, 4, 4), config,
                            in_channels=4, classes=CLASSES, metrics={},
                            dataset={"path": str(ds.path)})
    console = _console()
    assert evaluate_command([first, other], split="test", top_k=1, dataset=None,
                            use_ray=False, console=console, out=tmp_path / "cmp") == 0
    text = console.file.getvalue()
    assert "2 models on test split" in text and "vs 1st" in text
    # two folders named best: their reports and rows are told apart by the parent folder
    assert (tmp_path / "cmp" / "site_a_best" / "evaluation_test" / "metrics.json").is_file()
    with (tmp_path / "cmp" / "evaluation_test.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["site_a_best", "site_b_best"]
    assert float(rows[1]["diff_vs_first_high"]) < 0  # the untrained one is worse

    elsewhere = export_artifact(tmp_path / "site_c" / "best", build_model_for(config, 4, 4),
                                config, in_channels=4, classes=CLASSES, metrics={},
                                dataset={"path": str(tmp_path / "another_dataset")})
    with pytest.raises(RaygymError, match="trained on 2 datasets") as err:
        evaluate_command([first, elsewhere], split="test", top_k=1, dataset=None,
                         use_ray=False, console=_console())
    assert err.value.key == "--dataset"
    with pytest.raises(RaygymError, match="several folders are compared"):
        evaluate_command([first, other], split="test", top_k=2, dataset=None,
                         use_ray=False, console=_console())


# ------------------------------------------------------------------------ bad input
def _cli(argv: list[str]) -> int:
    from raygym.cli import main

    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize("victim", ["model.safetensors", "model_card.json"])
def test_tampered_artifact_is_refused(trained: dict, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], victim: str) -> None:
    bad = tmp_path / "model"
    shutil.copytree(trained["artifact"], bad, ignore=shutil.ignore_patterns("evaluation_*"))
    path = bad / victim
    data = bytearray(path.read_bytes())
    if victim == "model_card.json":
        card = json.loads(data)
        card["classes"] = ["a", "b", "c", "d"]
        path.write_text(json.dumps(card))
    else:
        data[-10] ^= 0xFF
        path.write_bytes(bytes(data))
    assert _cli(["evaluate", str(bad), "--split", "test"]) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert victim in lines[0] and "checksum" in lines[0] and str(bad) in lines[0]
    assert not (bad / "evaluation_test").exists()


def test_missing_dataset_and_mismatched_classes(trained: dict, tmp_path: Path) -> None:
    from raygym.evaluate import evaluate_model_on_split

    with pytest.raises(DataError, match="prepared dataset not found"):
        evaluate_model_on_split(trained["artifact"], tmp_path / "nowhere", "test")
    other = tmp_path / "other_ds"
    shutil.copytree(trained["dataset"].path, other)
    card = json.loads((other / "card.json").read_text())
    card["classes"] = ["sea", "foam", "sand", "land"]
    (other / "card.json").write_text(json.dumps(card))
    with pytest.raises(DataError, match="classes"):
        evaluate_model_on_split(trained["artifact"], other, "test")


def test_another_dataset_gets_its_own_report_beside_the_first(trained: dict,
                                                              tmp_path: Path) -> None:
    """``--dataset`` of another folder (a second site, other settings) writes
    ``evaluation_<folder>_<split>``: the report on the model's own dataset is kept, not
    replaced; naming the model's own dataset is the default report."""
    from raygym.evaluate_command import evaluate_command

    model = tmp_path / "model"
    shutil.copytree(trained["artifact"], model)
    other = tmp_path / "site_b"
    shutil.copytree(trained["dataset"].path, other)
    for dataset in (trained["dataset"].path, other):
        assert evaluate_command(model, split="test", top_k=1, dataset=dataset,
                                use_ray=False, console=_console()) == 0
    own = json.loads((model / "evaluation_test" / "metrics.json").read_text())
    second = json.loads((model / "evaluation_site_b_test" / "metrics.json").read_text())
    assert own["confusion"] == second["confusion"]  # the same rows, copied
    assert sorted(p.name for p in model.glob("evaluation_*")) == ["evaluation_site_b_test",
                                                                  "evaluation_test"]


def test_out_elsewhere_and_an_unwritable_place_refused_before_scoring(
        trained: dict, tmp_path: Path) -> None:
    from raygym.evaluate_command import evaluate_command

    out = tmp_path / "reports"
    assert evaluate_command(trained["artifact"], split="test", top_k=1, dataset=None,
                            use_ray=False, console=_console(), out=out) == 0
    assert (out / "best" / "evaluation_test" / "metrics.json").is_file()
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    with pytest.raises(DataError, match=r"cannot write the evaluation.*--out"):
        evaluate_command(trained["artifact"], split="test", top_k=1, dataset=None,
                         use_ray=False, console=_console(), out=blocked)
    assert blocked.read_text() == "not a folder"


# ------------------------------------------------------- labelled scenes at full size
def test_labelled_scenes_at_full_size_score_what_predict_maps(trained: dict, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    """``--data SITE.yaml``: every scene its data section pairs (a manifest here), labels read
    by prepare's rules, scored against exactly the labels ``raygym predict`` writes, pixel
    for pixel at each scene's own size."""
    from PIL import Image

    s2 = S2.resolve()
    rows = list(csv.reader((s2 / "pairs.csv").open()))
    header, picked = rows[0], rows[1:4]
    manifest = tmp_path / "site.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows([[str(s2 / cell) for cell in row] for row in picked])
    site = tmp_path / "site_b.yaml"
    # the two crops of one capture are one group: the intervals resample captures
    site.write_text(f"data:\n  manifest: {manifest}\n  classes: {CLASSES}\n"
                    "  remap: {1: 0, 2: 1, 3: 2, 4: 3}\n  unknown_labels: ignore\n"
                    "  split: {group: '^(.*)-\\d+$'}\n")
    out = tmp_path / "reports"
    assert _cli(["evaluate", str(trained["artifact"]), "--data", str(site), "--out",
                 str(out)]) == 0
    report = json.loads((out / "best" / "evaluation_scenes_site_b" / "metrics.json").read_text())
    assert report["images"] == 3 and report["full_size"] and report["scale"] < 1
    captures = {Path(row[0]).stem.rsplit("-", 1)[0] for row in picked}
    assert f"over the {len(captures)} groups of data.split.group" in report["intervals"][
        "method"]

    maps = tmp_path / "maps"
    images, nirs = tmp_path / "img", tmp_path / "nir"
    images.mkdir()
    nirs.mkdir()
    for row in picked:
        shutil.copy(s2 / row[0], images)
        shutil.copy(s2 / row[1], nirs)
    assert _cli(["predict", str(trained["artifact"]), str(images), "--band", str(nirs),
                 "--out", str(maps)]) == 0
    expected = np.zeros((4, 4), np.int64)
    for row in picked:
        truth = np.asarray(Image.open(s2 / row[2]).convert("L")).astype(np.int64) - 1
        pred = np.asarray(Image.open(maps / f"{Path(row[0]).stem}_label.png")).astype(np.int64)
        assert pred.shape == truth.shape  # the scene's own size, not the prepared tile
        scored = (truth >= 0) & (truth < 4)  # JPEG artefacts 0 and 5: ignored by the rule
        np.add.at(expected, (truth[scored], pred[scored]), 1)
    assert report["confusion"] == expected.tolist()
    capsys.readouterr()

    # bad input: classes other than the model's; a prepared split's option beside --data
    site.write_text(site.read_text().replace("dry_land", "land"))
    assert _cli(["evaluate", str(trained["artifact"]), "--data", str(site)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.classes" in err[0] and "model's" in err[0]
    assert _cli(["evaluate", str(trained["artifact"]), "--data", str(site), "--split",
                 "val"]) == 2
    assert "--split applies to a prepared dataset" in capsys.readouterr().err
    assert _cli(["evaluate", str(trained["artifact"]), "--scale", "1"]) == 2
    assert "--scale applies to full-size scenes" in capsys.readouterr().err
    # the scenes without the NIR band the model was trained with: the fix names it
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([["image", "label"]] + [[str(s2 / row[0]), str(s2 / row[2])]
                                                         for row in picked])
    site.write_text(site.read_text().replace("land", "dry_land"))
    assert _cli(["evaluate", str(trained["artifact"]), "--data", str(site)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has 3 bands but the model expects 4" in err[0]
    assert "the extra bands the model was trained with" in err[0]


def _geotiff_site(folder: Path, scenes: dict[str, tuple[np.ndarray, np.ndarray]],
                  rules: str = "  remap: {1: 0, 2: 1, 3: 2, 4: 3}\n  unknown_labels: ignore\n"
                  ) -> Path:
    """A site under ``folder``: per ``name: (stack (4, H, W) uint16, label (H, W) uint8)`` a
    GeoTIFF scene (nodata 0) and its label GeoTIFF, and the site YAML with the label
    ``rules`` (default: S2's values 1-4 to the four classes)."""
    import rasterio
    from rasterio.transform import from_origin

    for sub in ("scenes", "masks"):
        (folder / sub).mkdir()
    for i, (name, (stack, label)) in enumerate(scenes.items()):
        geo = {"driver": "GTiff", "height": label.shape[0], "width": label.shape[1],
               "crs": "EPSG:32610", "transform": from_origin(545000 + 1000 * i, 4180000, 10, 10)}
        with rasterio.open(folder / "scenes" / f"{name}.tif", "w", count=4, dtype="uint16",
                           nodata=0, **geo) as dst:
            dst.write(stack)
        with rasterio.open(folder / "masks" / f"{name}.tif", "w", count=1, dtype="uint8",
                           **geo) as dst:
            dst.write(label[None])
    site = folder / "site.yaml"
    site.write_text(f"data:\n  images: {folder / 'scenes'}\n  labels: {folder / 'masks'}\n"
                    f"  classes: {CLASSES}\n{rules}")
    return site


def test_geotiff_scenes_with_nodata_are_scored_around_it(trained: dict, tmp_path: Path) -> None:
    """4-band uint16 GeoTIFFs with a nodata corner: the corner is not scored, and the few
    labelled pixels predict leaves as nodata at its resampled edge are counted, not crashed
    on."""
    from PIL import Image

    from raygym.evaluate_scenes import evaluate_model_on_scenes

    s2 = S2.resolve()
    rows = list(csv.DictReader((s2 / "pairs.csv").open()))[:2]
    scenes = {}
    labelled = 0
    for i, row in enumerate(rows):
        rgb = np.asarray(Image.open(s2 / row["image"]).convert("RGB"), np.uint16) + 1
        nir = np.asarray(Image.open(s2 / row["nir"]).convert("L"), np.uint16)[..., None] + 1
        stack = np.concatenate([rgb, nir], axis=2).transpose(2, 0, 1)
        stack[:, :9, :9] = 0  # nodata
        label = np.asarray(Image.open(s2 / row["label"]).convert("L"))
        labelled += int(((label >= 1) & (label <= 4)).sum() - ((label[:9, :9] >= 1)
                                                                & (label[:9, :9] <= 4)).sum())
        scenes[f"s{i}"] = (stack, label)
    site = _geotiff_site(tmp_path, scenes)
    result = evaluate_model_on_scenes(trained["artifact"], site, out_dir=tmp_path / "out",
                                      device="cpu")
    assert result.num_images == 2 and int(result.confusion.sum()) > 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    unmapped = sum(int(w.split()[0]) for w in report["warnings"])
    assert int(result.confusion.sum()) + unmapped == labelled
    assert unmapped < 0.02 * labelled  # an edge of the corner, not the scene


def test_rgba_png_scenes_are_scored_with_their_alpha_as_the_mask(trained: dict,
                                                                  tmp_path: Path) -> None:
    """RGBA PNGs + a NIR band for the RGB + NIR model: the alpha is a mask, as predict reads
    it (not a fifth band refused by the header count), and alpha-0 pixels are not scored."""
    from PIL import Image

    from raygym.evaluate_scenes import evaluate_model_on_scenes

    s2 = S2.resolve()
    rows = list(csv.DictReader((s2 / "pairs.csv").open()))[:2]
    for sub in ("scenes", "nir", "masks"):
        (tmp_path / sub).mkdir()
    labelled = 0
    for i, row in enumerate(rows):
        rgba = np.asarray(Image.open(s2 / row["image"]).convert("RGBA")).copy()
        rgba[:9, :9, 3] = 0  # transparent corner: nodata
        Image.fromarray(rgba, "RGBA").save(tmp_path / "scenes" / f"s{i}.png")
        Image.open(s2 / row["nir"]).convert("L").save(tmp_path / "nir" / f"s{i}.png")
        label = np.asarray(Image.open(s2 / row["label"]).convert("L"))
        Image.fromarray(label).save(tmp_path / "masks" / f"s{i}.png")
        inside = (label >= 1) & (label <= 4)
        labelled += int(inside.sum() - inside[:9, :9].sum())
    site = tmp_path / "site.yaml"
    site.write_text(f"data:\n  images: {tmp_path / 'scenes'}\n  extra_bands:\n"
                    f"    - {{folder: {tmp_path / 'nir'}}}\n  labels: {tmp_path / 'masks'}\n"
                    f"  classes: {CLASSES}\n  remap: {{1: 0, 2: 1, 3: 2, 4: 3}}\n"
                    "  unknown_labels: ignore\n")
    result = evaluate_model_on_scenes(trained["artifact"], site, out_dir=tmp_path / "out",
                                      device="cpu")
    assert result.num_images == 2
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    unmapped = sum(int(w.split()[0]) for w in report["warnings"])
    assert int(result.confusion.sum()) + unmapped == labelled
    assert unmapped < 0.02 * labelled


@pytest.mark.parametrize("scale", [1.0, "auto"])
def test_a_tall_scene_scored_strip_by_strip_equals_its_whole_prediction(
        trained: dict, tmp_path: Path, scale: float | str) -> None:
    """A scene of several strips (predict yields 256 rows at a time), with a nodata band
    across a strip boundary: the streamed confusion and KLD equal those of the whole
    prediction held at once."""
    from PIL import Image

    from raygym.evaluate_scenes import evaluate_model_on_scenes
    from raygym.predict import NODATA, Predictor
    from raygym.predict.sources import ArraySource

    s2 = S2.resolve()
    row = next(csv.DictReader((s2 / "pairs.csv").open()))
    rgb = np.asarray(Image.open(s2 / row["image"]).convert("RGB"), np.uint16) + 1
    nir = np.asarray(Image.open(s2 / row["nir"]).convert("L"), np.uint16)[..., None] + 1
    label = np.asarray(Image.open(s2 / row["label"]).convert("L"))
    # stacked to >= 1,100 rows: five strips at scale 1, shrunk every 3rd pixel for display
    reps = -(-1100 // label.shape[0])
    stack = np.tile(np.concatenate([rgb, nir], axis=2), (reps, 1, 1)).transpose(2, 0, 1)
    label = np.tile(label, (reps, 1))
    stack[:, 240:270, :20] = 0  # nodata across the first strip boundary
    site = _geotiff_site(tmp_path, {"tall": (stack, label)})
    result = evaluate_model_on_scenes(trained["artifact"], site, out_dir=tmp_path / "out",
                                      scale=scale, overlays=0, device="cpu")

    predictor = Predictor([trained["artifact"]], device="cpu")
    image = stack.transpose(1, 2, 0).astype(np.float32)
    image[(stack == 0).all(axis=0)] = np.nan
    valid = ~np.isnan(image).any(axis=2)
    strips = list(predictor.predict_strips(ArraySource(image, valid), scale=scale))
    assert len(strips) >= 3, "the scene must span several strips to test the streaming"
    pred, probs = predictor.predict(image, valid=valid, scale=scale)
    truth = label.astype(np.int64) - 1
    scored = (truth >= 0) & (truth < 4) & (pred != NODATA)
    expected = np.zeros((4, 4), np.int64)
    np.add.at(expected, (truth[scored], pred[scored].astype(np.int64)), 1)
    np.testing.assert_array_equal(result.confusion, expected)
    clipped = np.clip(probs, 1e-12, 1.0)
    p_true = np.take_along_axis(clipped, np.clip(truth, 0, 3)[None], axis=0)[0]
    p_true /= clipped.sum(axis=0)  # resampled probabilities next to nodata sum to < 1
    # the KLD of a one-hot truth is -log p(true class), as the metric takes it
    kld = -np.log(p_true[scored]).mean()
    assert result.metrics["kld"] == pytest.approx(kld, rel=1e-4)

    # the overlay's panels, shrunk strip by strip (256 rows: not a multiple of the stride),
    # are the whole prediction's every 3rd pixel
    from raygym.data.pairing import find_pairs
    from raygym.evaluate_scenes import _display_step, _predict_scene
    from raygym.search.space_config import load_experiment

    data = load_experiment(site)[0].data
    shown = _predict_scene(predictor, find_pairs(data)[0], data, {"scale": scale},
                           panels=True).panels
    step = _display_step(label.shape)
    assert shown is not None and step == 3
    np.testing.assert_array_equal(shown.pred, pred[::step, ::step])
    np.testing.assert_array_equal(shown.truth == 255, ~((truth >= 0) & (truth < 4) & valid)
                                  [::step, ::step])
    assert shown.image.shape[:2] == shown.pred.shape


def test_a_scene_refused_midway_leaves_no_report_folder(trained: dict, tmp_path: Path) -> None:
    """A label value outside the classes is found only when that scene is read: the
    one-line refusal names it, and the report folders created for the run are gone again."""
    from raygym.evaluate_scenes import evaluate_model_on_scenes

    site = _geotiff_site(tmp_path, {"s": (np.ones((4, 40, 48), np.uint16),
                                          np.full((40, 48), 9, np.uint8))}, rules="")
    with pytest.raises(DataError, match=r"outside the 4 classes: 9 \(1920 px\)") as err:
        evaluate_model_on_scenes(trained["artifact"], site, out_dir=tmp_path / "reports" / "x",
                                 device="cpu")
    assert err.value.file == str(tmp_path / "masks" / "s.tif")
    assert not (tmp_path / "reports").exists()
