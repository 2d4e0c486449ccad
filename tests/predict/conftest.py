"""Models for the ``raygym predict`` tests, made once for the whole ``tests/predict`` package:
a tiny 4-band model trained on the prepared Sentinel-2 set (64 x 64, 2 epochs) and a 3-band
untrained-but-exported model for the 920 x 614 aerial shape tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from . import AERIAL, S2, export_untrained, need, s2_config


@pytest.fixture(scope="package")
def s2_models(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
              ) -> dict[str, Path]:
    """A trained S2 artifact, plus a search-like results folder (rank1 trained, rank2 not)."""
    s2 = need(S2)
    request.getfixturevalue("ray_session")  # the session's local Ray (tests/conftest.py)
    from raygym.data.dataset import PreparedDataset
    from raygym.data.prepare import prepare_dataset
    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import NumpyBatches, build_loss_for, build_model_for, fit

    root = tmp_path_factory.mktemp("predict_s2")
    config = s2_config(root, s2)
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
    export_untrained(config, results / "best" / "rank2_bbbb", card.bands, seed=1)
    return {"artifact": artifact, "results": results, "root": root}


@pytest.fixture(scope="package")
def aerial_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained-but-exported 3-band, 3-class gym_unet with a 128 x 128 input."""
    aerial = need(AERIAL)
    from raygym.config import validate_experiment

    root = tmp_path_factory.mktemp("predict_aerial")
    config = validate_experiment({
        "name": "aerial", "data": {
            "images": str(aerial / "images"), "labels": str(aerial / "labels"),
            "classes": ["deep_water", "shallow_water", "land"], "target_size": [128, 128],
            "prepared": str(root / "ds")},
        "model": {"arch": "gym_unet", "filters": 2, "kernel": 3},
    })
    return export_untrained(config, root / "aerial_best", 3, seed=0)
