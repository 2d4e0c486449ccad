"""Metrics: hand-counted confusion matrices, ignore / absent handling, all-reduce over gloo."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raygym.train.losses import IGNORE_INDEX, kld_loss
from raygym.train.metrics import (
    ConfusionMatrix,
    confusion_matrix,
    json_safe,
    metrics_from_confusion,
)
from tests.ray_exposure import free_loopback_port

X = IGNORE_INDEX

# 2 classes, 3 x 3, one ignored pixel (its prediction 1 must not count).
TARGET_2 = torch.tensor([[[0, 0, 1], [0, 1, 1], [X, 1, 0]]])
PRED_2 = torch.tensor([[[0, 1, 1], [0, 1, 1], [1, 1, 0]]])
# By hand: (t, p) pairs = 00 01 11 00 11 11 11 00 -> rows = truth, cols = prediction
CM_2 = [[3, 1], [0, 4]]

# 3 classes, 3 x 3, one ignored pixel.
TARGET_3 = torch.tensor([[[0, 0, 1], [1, 1, 2], [2, 2, X]]])
PRED_3 = torch.tensor([[[0, 1, 1], [1, 2, 2], [2, 0, 0]]])
# (t, p) pairs = 00 01 11 11 12 22 22 20
CM_3 = [[1, 1, 0], [0, 2, 1], [1, 0, 2]]


def _logits_for(pred: torch.Tensor, k: int) -> torch.Tensor:
    """(B, K, H, W) logits whose argmax is ``pred``."""
    return torch.nn.functional.one_hot(pred, k).permute(0, 3, 1, 2).float() * 3.0


def test_confusion_matrix_hand_counts() -> None:
    assert confusion_matrix(PRED_2, TARGET_2, 2).tolist() == CM_2
    assert confusion_matrix(PRED_3, TARGET_3, 3).tolist() == CM_3
    cm = confusion_matrix(_logits_for(PRED_3, 3), TARGET_3, 3)  # logits -> argmax
    assert cm.dtype == torch.int64 and cm.tolist() == CM_3


def test_ignored_pixels_excluded() -> None:
    other = PRED_2.clone()
    other[0, 2, 0] = 0  # change the prediction at the ignored pixel only
    assert confusion_matrix(other, TARGET_2, 2).tolist() == CM_2
    assert int(confusion_matrix(PRED_2, TARGET_2, 2).sum()) == 8
    assert metrics_from_confusion(torch.tensor(CM_2))["num_pixels"] == 8


def test_out_of_range_labels_rejected() -> None:
    bad = TARGET_2.clone()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix(PRED_2, bad, 2)


def test_two_class_metrics_by_hand() -> None:
    m = metrics_from_confusion(np.array(CM_2), ["water", "land"])
    # water: tp 3, fp 0, fn 1 | land: tp 4, fp 1, fn 0
    assert m["iou/water"] == pytest.approx(3 / 4)
    assert m["iou/land"] == pytest.approx(4 / 5)
    assert m["mean_iou"] == pytest.approx(0.775)
    assert m["f1/water"] == pytest.approx(6 / 7)
    assert m["f1/land"] == pytest.approx(8 / 9)
    assert m["mean_dice"] == pytest.approx((6 / 7 + 8 / 9) / 2)
    assert m["precision/water"] == pytest.approx(1.0)
    assert m["precision/land"] == pytest.approx(0.8)
    assert m["recall/water"] == pytest.approx(0.75)
    assert m["recall/land"] == pytest.approx(1.0)
    assert m["accuracy"] == pytest.approx(7 / 8)
    assert m["fw_iou"] == pytest.approx(0.5 * 0.75 + 0.5 * 0.8)
    # binary MCC = (tp tn - fp fn) / sqrt(...) = (4*3 - 1*0) / sqrt(5*4*4*3) = 12 / sqrt(240)
    assert m["mcc"] == pytest.approx(12 / math.sqrt(240))
    assert m["absent_classes"] == []


def test_three_class_metrics_by_hand() -> None:
    m = metrics_from_confusion(torch.tensor(CM_3))
    # class 0: tp 1, fp 1, fn 1 | class 1: tp 2, fp 1, fn 1 | class 2: tp 2, fp 1, fn 1
    assert [m["iou/0"], m["iou/1"], m["iou/2"]] == pytest.approx([1 / 3, 1 / 2, 1 / 2])
    assert m["mean_iou"] == pytest.approx(4 / 9)
    assert [m["f1/0"], m["f1/1"], m["f1/2"]] == pytest.approx([1 / 2, 2 / 3, 2 / 3])
    assert [m["precision/0"], m["precision/1"]] == pytest.approx([1 / 2, 2 / 3])
    assert [m["recall/0"], m["recall/2"]] == pytest.approx([1 / 2, 2 / 3])
    assert m["accuracy"] == pytest.approx(5 / 8)
    # truth frequencies 2/8, 3/8, 3/8
    assert m["fw_iou"] == pytest.approx(2 / 8 * 1 / 3 + 3 / 8 * 1 / 2 + 3 / 8 * 1 / 2)
    # Gorodkin: c = 5, s = 8, p = t = (2, 3, 3): (5*8 - 22) / sqrt((64 - 22) * (64 - 22)) = 3/7
    assert m["mcc"] == pytest.approx(3 / 7)


def test_absent_class_excluded_from_means() -> None:
    cm = confusion_matrix(PRED_2, TARGET_2, 3)  # class 2 neither true nor predicted
    m = metrics_from_confusion(cm, ["water", "land", "sand"])
    assert m["mean_iou"] == pytest.approx(0.775)  # not 0.775 * 2 / 3
    assert math.isnan(m["iou/sand"]) and math.isnan(m["precision/sand"])
    assert m["absent_classes"] == ["sand"]
    assert m["mcc"] == pytest.approx(12 / math.sqrt(240))  # unchanged by an empty class
    safe = json_safe(m)
    assert safe["iou/sand"] is None and safe["mean_iou"] == pytest.approx(0.775)
    json.dumps(safe, allow_nan=False)  # raises if a NaN survived


def test_falsely_predicted_class_counts_in_mean() -> None:
    pred = PRED_2.clone()
    pred[0, 0, 0] = 2  # class 2 predicted once, never true: present, IoU 0
    m = metrics_from_confusion(confusion_matrix(pred, TARGET_2, 3))
    assert m["iou/2"] == 0.0 and m["recall/2"] == 0.0 and m["absent_classes"] == []
    # water: tp 2, fp 0, fn 2 -> 1/2 ; land: 4/5 ; mean over the 3 present classes
    assert m["mean_iou"] == pytest.approx((1 / 2 + 4 / 5 + 0) / 3)


def test_empty_matrix_is_all_nan() -> None:
    m = metrics_from_confusion(np.zeros((2, 2), dtype=np.int64))
    assert math.isnan(m["mean_iou"]) and math.isnan(m["accuracy"]) and math.isnan(m["mcc"])
    assert m["absent_classes"] == ["0", "1"] and m["num_pixels"] == 0


def test_accumulator_matches_single_pass_and_reports_kld() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 5, 6, generator=g)
    target = torch.randint(0, 3, (4, 5, 6), generator=g)
    target[:, -1] = IGNORE_INDEX
    acc = ConfusionMatrix(3, ["a", "b", "c"])
    acc.update(logits[:2], target[:2])
    acc.update(logits[2:], target[2:])
    acc.all_reduce()  # torch.distributed not initialised: must be a no-op
    assert not dist.is_initialized()
    assert torch.equal(acc.matrix, confusion_matrix(logits, target, 3))
    out = acc.compute()
    whole = metrics_from_confusion(confusion_matrix(logits, target, 3), ["a", "b", "c"])
    assert out["mean_iou"] == pytest.approx(whole["mean_iou"])
    # KLD accumulated per valid pixel equals the KLD loss over the whole split
    assert out["kld"] == pytest.approx(kld_loss(logits, target).item(), rel=1e-5)

    acc.reset()
    acc.update(logits.argmax(1), target)  # integer predictions: no probabilities, no KLD
    assert "kld" not in acc.compute()
    assert torch.equal(acc.matrix, confusion_matrix(logits, target, 3))


# ---------------------------------------------------------------------- distributed (gloo)
def _dist_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only: no reliance on hostname
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        acc = ConfusionMatrix(3)
        if rank == 0:
            acc.update(_logits_for(PRED_2, 3), TARGET_2)
        else:
            acc.update(_logits_for(PRED_3, 3), TARGET_3)
        acc.all_reduce()
        torch.save({"matrix": acc.matrix, "kld": acc.kld_state}, Path(out_dir) / f"{rank}.pt")
        dist.barrier()  # tear gloo down only when both ranks are done with it
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_all_reduce_sums_across_two_gloo_processes(tmp_path: Path) -> None:
    mp.spawn(_dist_worker, args=(2, free_loopback_port(), str(tmp_path)), nprocs=2, join=True)
    expected = (np.pad(np.array(CM_2), ((0, 1), (0, 1))) + np.array(CM_3)).tolist()
    for rank in range(2):
        state = torch.load(tmp_path / f"{rank}.pt", weights_only=True)
        assert state["matrix"].tolist() == expected
        assert state["kld"][1].item() == 16  # 8 valid pixels on each rank
