"""The table of bad inputs: each row is a command line that must be refused with exit code 2,
one line on stderr naming the file / key / value and the fix, no traceback, and nothing
written (the working folder and every input are byte-for-byte as before)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from raygym.cli import main
from tests.conftest import write_experiment
from tests.report import write_bare_leaderboard


@dataclass(frozen=True)
class Inputs:
    """Where a row builds its inputs, and what it may start from."""

    dir: Path
    sections: dict[str, Any]  # a valid experiment on the demo data
    artifact: Path  # a valid tiny model artifact (read-only: rows copy it)


@dataclass(frozen=True)
class Case:
    """``argv(inputs)`` builds the row's inputs and returns its command line; ``says``: words
    the one-line message must contain."""

    id: str
    argv: Callable[[Inputs], list[str]]
    says: tuple[str, ...]


def _config(i: Inputs, **changes: Any) -> str:
    """An experiment YAML under ``i.dir``: the demo sections with ``changes`` merged in
    (``train={"max_epochs": 3}`` updates one key of a section)."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in i.sections.items()}
    for section, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(section), dict):
            merged[section].update(value)
        else:
            merged[section] = value
    return str(write_experiment(i.dir / "exp.yaml", **merged))


def _artifact(i: Inputs, damage: Callable[[Path], Any] | None = None) -> str:
    """A copy of the tiny exported model under ``i.dir``, optionally damaged."""
    path = i.dir / "model"
    shutil.copytree(i.artifact, path)
    if damage is not None:
        damage(path)
    return str(path)


def _run_folder(i: Inputs, **train: Any) -> str:
    """A stopped run's folder whose config.yaml has the demo settings with ``train`` changes."""
    from raygym.config import dump_yaml, validate_experiment

    sections = {**i.sections, "train": {**i.sections.get("train", {}), **train}}
    run = i.dir / "runs" / "stopped"
    run.mkdir(parents=True)
    dump_yaml(validate_experiment(sections, "<test>"), run / "config.yaml")
    return str(run)


def _dataset_without_val(i: Inputs, scenes: int = 4) -> str:
    """A config whose prepared dataset (a hand-made card) has train rows from ``scenes``
    scenes but no val rows."""
    from raygym.config import validate_experiment
    from raygym.data.dataset import DATASET_FORMAT
    from raygym.data.prepare import data_fingerprint

    ds = i.dir / "ds"
    path = _config(i, data={"prepared": str(ds)})
    config = validate_experiment(yaml.safe_load(Path(path).read_text()), path)
    (ds / "shards" / "split=train").mkdir(parents=True)
    split = {"rows": 4, "sources": scenes, "pixels_per_class": [1, 1, 1, 1],
             "ignored_pixels": 0}
    card = {"format": DATASET_FORMAT, "name": "d", "classes": list(config.data.classes),
            "bands": 4, "dtype": "uint8", "target_size": list(config.data.target_size),
            "ignore_index": 255, "config_hash": data_fingerprint(config.data),
            "data_config": {}, "remap_changed": {}, "sources": [], "created": "",
            "splits": {"train": split, "val": {**split, "rows": 0, "sources": 0}}}
    (ds / "card.json").write_text(json.dumps(card))
    return path


def _search_with_record(i: Inputs, record: str) -> str:
    """A search config whose results folder holds ``record`` as its ``search.json``."""
    results = i.dir / "results"
    _write(results / str(i.sections["name"]) / "search.json", record)
    return _config(i, model={"filters": {"choice": [2, 4]}},
                   search={"results_dir": str(results)})


def _rgba(path: Path) -> Path:
    """A 32 x 32 RGBA PNG: 4 bands, as the tiny model expects."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 4), 200, np.uint8)).save(path)
    return path


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


CASES = [
    # ---------------------------------------------------------------- arguments
    Case("unknown-command", lambda i: ["prepair", "x.yaml"], ("invalid choice", "prepare")),
    Case("demo-data-zero-scenes", lambda i: ["demo-data", str(i.dir / "demo"), "--scenes", "0"],
         ("--scenes", "at least 1")),
    Case("demo-data-scenes-not-a-number",
         lambda i: ["demo-data", str(i.dir / "demo"), "--scenes", "many"],
         ("--scenes", "whole number")),
    Case("cluster-port-zero", lambda i: ["cluster", "up", "--port", "0"], ("--port",)),
    Case("cluster-port-too-high", lambda i: ["cluster", "up", "--port", "70000"],
         ("--port", "1..65535")),
    Case("cluster-dashboard-port", lambda i: ["cluster", "up", "--dashboard-port", "-5"],
         ("--dashboard-port",)),
    Case("dashboard-port", lambda i: ["dashboard", str(i.dir), "--optuna-port", "99999"],
         ("--optuna-port", "1..65535")),
    Case("dashboard-remote-without-consent",
         lambda i: ["dashboard", str(i.dir), "--host", "0.0.0.0"],
         ("--host", "0.0.0.0", "--allow-remote")),
    Case("predict-overlap", lambda i: ["predict", str(i.dir), str(i.dir), "--out", str(i.dir / "o"),
                                          "--overlap", "1.5"], ("--overlap", "[0, 1)")),
    Case("predict-scale", lambda i: ["predict", str(i.dir), str(i.dir), "--out", str(i.dir / "o"),
                                        "--scale", "50"], ("--scale", "(0, 8]")),
    Case("predict-scale-word", lambda i: ["predict", str(i.dir), str(i.dir), "--out",
                                             str(i.dir / "o"), "--scale", "native"],
         ("--scale", "'auto' or a number", "'native'")),
    Case("predict-top-k", lambda i: ["predict", str(i.dir), str(i.dir), "--out", str(i.dir / "o"),
                                        "--top-k", "0"], ("--top-k",)),
    Case("evaluate-top-k", lambda i: ["evaluate", str(i.dir), "--top-k", "-1"], ("--top-k",)),
    Case("models-size-not-a-multiple", lambda i: ["models", "gym_unet", "--size", "50"],
         ("--size", "multiple of 16", "--size 64")),
    Case("models-classes", lambda i: ["models", "gym_unet", "--classes", "1"],
         ("--classes", "at least 2")),
    Case("models-encoder-of-a-gym-network",
         lambda i: ["models", "gym_unet", "--encoder", "resnet34"],
         ("--encoder", "gym_unet takes no encoder", "drop --encoder")),
    Case("set-without-equals",
         lambda i: ["train", _config(i), "--set", "train.max_epochs"],
         ("--set", "key.path=value")),
    # ------------------------------------------------------------------ configs
    Case("config-missing", lambda i: ["train", str(i.dir / "nope.yaml")],
         ("nope.yaml", "file not found")),
    Case("config-typo", lambda i: ["train", _config(i, model={"filter": 4})],
         ("model.filter", "filters")),
    Case("config-name-a-path", lambda i: ["train", _config(i, name="../elsewhere")],
         ("exp.yaml", "name", "'../elsewhere'", "letters, digits")),
    Case("train-name-a-path", lambda i: ["train", _config(i), "--name", "../elsewhere"],
         ("--name", "'../elsewhere' is not a run name", "letters, digits")),
    Case("config-space-for-train",
         lambda i: ["train", _config(i, model={"filters": {"choice": [2, 4]}})],
         ("model.filters", "`raygym train` needs a fixed value")),
    Case("cosine-warmup-longer-than-the-run",
         lambda i: ["train", _config(i, train={"lr_schedule": "cosine", "max_epochs": 12,
                                               "rampup_epochs": 20})],
         ("train.rampup_epochs", "max_epochs 12", "at most 12")),
    Case("gym-warmup-longer-than-the-run",
         lambda i: ["train", _config(i), "--set", "train.rampup_epochs=5"],
         ("train.rampup_epochs", "rampup_epochs 5", "max_epochs 2")),
    Case("search-cosine-shortest-run-shorter-than-warmup",
         lambda i: ["search", _config(i, train={"lr_schedule": "cosine", "rampup_epochs": 20,
                                                "max_epochs": {"choice": [40, 5]}})],
         ("train.max_epochs", "candidate 5", "rampup_epochs 20")),
    Case("search-worst-case-of-two-searched-keys",
         lambda i: ["search", _config(i, train={"max_epochs": {"choice": [30, 4]},
                                                "rampup_epochs": {"choice": [1, 10]}})],
         ("worst case", "train.max_epochs 4", "train.rampup_epochs 10")),
    Case("search-metric-training-never-reports",
         lambda i: ["search", _config(i, model={"filters": {"choice": [2, 4]}},
                                      search={"metric": "val_miou"})],
         ("exp.yaml", "search.metric", "val_miou", "did you mean 'val_mean_iou'")),
    Case("search-mode-the-wrong-way",
         lambda i: ["search", _config(i, model={"filters": {"choice": [2, 4]}},
                                      search={"metric": "val_loss", "mode": "max"})],
         ("exp.yaml", "search.mode", "the wrong way", "mode: min")),
    Case("train-seed-negative",
         lambda i: ["train", _config(i), "--set", "train.seed=-1"],
         ("train.seed", "greater than or equal to 0", "-1")),
    Case("class-weights-negative",
         lambda i: ["train", _config(i, loss={"class_weights": [1, -1, 1, 1]})],
         ("loss.class_weights", "-1", ">= 0")),
    Case("class-weights-wrong-length",
         lambda i: ["train", _config(i, loss={"class_weights": [1.0, 2.0]})],
         ("loss.class_weights", "2 weights", "4 classes")),
    Case("class-weights-all-zero",
         lambda i: ["prepare", _config(i, loss={"class_weights": [0, 0, 0, 0]})],
         ("loss.class_weights", "every weight is 0")),
    Case("search-class-weights-wrong-length",
         lambda i: ["search", _config(i, loss={"class_weights": {"grid": [None, [1.0, 2.0]]}})],
         ("loss.class_weights", "2 weights", "4 classes")),
    Case("loss-weights-all-zero", lambda i: ["train", _config(i, loss={"name": {"dice": 0}})],
         ("loss.name", "every weight is 0")),
    Case("loss-weight-negative",
         lambda i: ["train", _config(i, loss={"name": {"dice": 1, "cce": -0.5}})],
         ("loss.name", "cce", ">= 0")),
    Case("lovasz-with-class-weights",
         lambda i: ["train", _config(i, loss={"name": "lovasz", "class_weights": [1, 1, 1, 1]})],
         ("loss.class_weights", "lovasz")),
    Case("points-to-evaluate-typo",
         lambda i: ["search", _config(i, train={"max_lr": {"loguniform": [1e-4, 1e-2]}},
                                      search={"points_to_evaluate": [{"train.max_rl": 1e-3}]})],
         ("search.points_to_evaluate.0", "train.max_rl", "did you mean 'train.max_lr'")),
    Case("points-to-evaluate-bad-value",
         lambda i: ["search", _config(i, train={"max_lr": {"loguniform": [1e-4, 1e-2]}},
                                      search={"points_to_evaluate": [{"train.max_lr": -1}]})],
         ("search.points_to_evaluate.0", "-1")),
    Case("split-group-not-a-regex",
         lambda i: ["prepare", _config(i, data={"split": {"group": "^(scene"}})],
         ("data.split.group", "not a valid regular expression")),
    Case("split-group-regex-misses-a-key",
         lambda i: ["prepare", _config(i, data={"split": {"group": r"^scene_00(\d)$"}})],
         ("data.split.group", "scene key 'scene_010'", r"'^scene_00(\d)$'", "14 of 24")),
    Case("split-group-too-few-groups",
         lambda i: ["prepare", _config(i, data={"split": {"group": "^(scene)_"}})],
         ("data.split.group", "gives 1 group ('scene')", "train, val and test",
          "data.split.val")),
    Case("split-group-column-without-manifest",
         lambda i: ["prepare", _config(i, data={"split": {"group": "column:site"}})],
         ("data.split.group", "'column:site'", "paired by file name", "data.manifest")),
    # --------------------------------------------------------------------- runs
    Case("train-resume-with-other-settings",
         lambda i: ["train", _config(i, train={"max_lr": 0.002}), "--resume",
                    _run_folder(i, max_lr=0.02)], ("train.max_lr", "0.02", "--resume")),
    Case("train-resume-not-a-run", lambda i: ["train", _config(i), "--resume", str(i.dir)],
         ("no config.yaml",)),
    Case("train-without-validation-split", lambda i: ["train", _dataset_without_val(i)],
         ("data.split.val", "no validation rows", "--overwrite")),
    Case("train-on-one-scene", lambda i: ["train", _dataset_without_val(i, scenes=1)],
         ("(1 scene in all)", "add scenes: training needs 2 or more")),
    Case("report-out-beside-a-users-report-folder",
         lambda i: ["report", str(write_bare_leaderboard(i.dir / "results")),
                    "--out", str(_write(i.dir / "here" / "report" / "notes.txt", "mine")
                                 .parent.parent)], ("not a raygym report", "--out")),
    Case("search-resume-truncated-record",
         lambda i: ["search", _search_with_record(i, '{"name": "demo_test", "spa'), "--resume"],
         ("search.json", "damaged", "backup")),
    Case("search-resume-record-not-a-mapping",
         lambda i: ["search", _search_with_record(i, "[1, 2]"), "--resume"],
         ("search.json", "damaged")),
    # ---------------------------------------------------------------- artifacts
    Case("evaluate-not-an-artifact", lambda i: ["evaluate", str(_write(i.dir / "m" / "x", ""))],
         ("model",)),
    Case("evaluate-checksums-not-json",
         lambda i: ["evaluate", _artifact(i, lambda p: _write(
             p / "checksums.json", "{not json"))], ("checksums.json", "damaged")),
    Case("evaluate-checksums-a-list",
         lambda i: ["evaluate", _artifact(i, lambda p: _write(
             p / "checksums.json", "[1, 2]"))], ("checksums.json", "damaged")),
    Case("evaluate-tampered-weights",
         lambda i: ["evaluate", _artifact(i, lambda p: _write(
             p / "model.safetensors", b"\0" * 64))], ("model.safetensors", "checksum")),
    Case("predict-out-is-a-file",
         lambda i: ["predict", _artifact(i), str(_rgba(i.dir / "img" / "a.png")),
                    "--out", str(_write(i.dir / "out.txt", "mine"))],
         ("out.txt", "--out", "existing file")),
    Case("predict-would-overwrite-outputs",
         lambda i: ["predict", _artifact(i), str(_rgba(i.dir / "img" / "a.png")),
                    "--out", str(_write(i.dir / "out" / "a_label.png", b"old").parent)],
         ("--out", "a_label.png", "--overwrite")),
    Case("predict-address-without-ray",
         lambda i: ["predict", _artifact(i), str(_rgba(i.dir / "img" / "a.png")),
                    "--out", str(i.dir / "o"), "--address", "auto"], ("--address", "add --ray")),
    Case("evaluate-address-without-ray",
         lambda i: ["evaluate", _artifact(i), "--address", "auto"], ("--address", "add --ray")),
    Case("predict-tampered-card",
         lambda i: ["predict", _artifact(i, lambda p: _write(p / "model_card.json", "{}")),
                    str(_write(i.dir / "images" / "a.png", b"")), "--out", str(i.dir / "o")],
         ("model_card.json", "checksum")),
]


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained gym_unet (f2) artifact for the demo data's 4 bands and 4 classes."""
    import torch

    from raygym.config import validate_experiment
    from raygym.inference.artifact import export_artifact
    from raygym.models import build_model

    root = tmp_path_factory.mktemp("artifact")
    config = validate_experiment({
        "name": "tiny", "data": {"images": str(root / "i"), "labels": str(root / "l"),
                                 "classes": ["a", "b", "c", "d"], "target_size": [32, 32],
                                 "prepared": str(root / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3}})
    torch.manual_seed(0)
    model = build_model("gym_unet", in_channels=4, num_classes=4,
                        **config.model.builder_kwargs())
    return export_artifact(root / "model", model, config, in_channels=4,
                           classes=["a", "b", "c", "d"], metrics={}, dataset={})


def _snapshot(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
        case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], demo_config: dict[str, Any],
        tiny_artifact: Path) -> None:
    inputs, cwd = tmp_path / "inputs", tmp_path / "cwd"
    inputs.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    argv = case.argv(Inputs(inputs, demo_config, tiny_artifact))
    before = _snapshot(tmp_path, Path(demo_config["data"]["images"]).parent)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit
        code = int(exc.code or 0)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for word in case.says:
        assert word in err, (word, err)
    assert "fix" in err or "did you mean" in err, err
    assert _snapshot(tmp_path, Path(demo_config["data"]["images"]).parent) == before
    assert not any(cwd.iterdir()), list(cwd.iterdir())
