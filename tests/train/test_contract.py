"""The train <-> search contract: stop reasons, the metric names, the kept epoch's scores."""

from __future__ import annotations

import math
from typing import get_args

import torch

from raygym.config import SearchConfig
from raygym.train.contract import (
    FINISHED_REASONS,
    LOWER_IS_BETTER,
    METRICS,
    RUNNING,
    StopReason,
    diverged,
    finished,
    kept_scores,
    metric_names,
    rung_scores,
)
from raygym.train.metrics import ConfusionMatrix


def test_stop_reasons() -> None:
    assert set(get_args(StopReason)) == {"completed", "early-stopped", "nan"}
    assert FINISHED_REASONS == {"completed", "early-stopped"}
    for reason in FINISHED_REASONS:
        assert finished({"stop_reason": reason}) and not diverged({"stop_reason": reason})
    assert diverged({"stop_reason": "nan"}) and not finished({"stop_reason": "nan"})
    for pruned in ({"stop_reason": RUNNING}, {}, None):  # a scheduler stopped it, or no result
        assert not finished(pruned) and not diverged(pruned)


def test_metric_names_are_what_validation_computes() -> None:
    """Every ``val_*`` name is a key of the validation's confusion-matrix scores."""
    cm = ConfusionMatrix(2, class_names=["water", "land"])
    cm.update(torch.tensor([[[[2.0, -1.0]], [[0.0, 1.0]]]]), torch.tensor([[[0, 1]]]))
    computed = {f"val_{k}" for k in cm.compute()} | {"val_loss", "train_loss"}
    assert set(METRICS) <= computed
    assert metric_names(["water", "land"])[-2:] == ["val_iou/water", "val_iou/land"]
    assert set(metric_names(["water", "land"])) <= computed
    assert LOWER_IS_BETTER <= set(METRICS)


def test_kept_scores_name_the_search_metric() -> None:
    best = {"val_mean_iou": 0.7, "val_mcc": 0.5}
    assert kept_scores(best, "val_mcc") == {"best_val_mean_iou": 0.7, "best_val_mcc": 0.5}
    empty = kept_scores({}, "val_mean_iou")
    assert list(empty) == ["best_val_mean_iou"] and math.isnan(empty["best_val_mean_iou"])


def test_rung_scores_only_for_a_smoothed_metric() -> None:
    values = [0.2, 0.6, 0.4]
    assert rung_scores(SearchConfig(), values) == {}
    assert rung_scores(SearchConfig(rung_metric="max"), values) == {"rung_val_mean_iou": 0.6}
    mean3 = rung_scores(SearchConfig(rung_metric="mean3"), values)["rung_val_mean_iou"]
    assert math.isclose(mean3, 0.4)
