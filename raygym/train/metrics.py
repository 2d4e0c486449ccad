"""Segmentation metrics from a confusion matrix accumulated over a whole split.

Rows of the confusion matrix are the truth, columns the prediction. Pixels whose target equals
:data:`~raygym.train.losses.IGNORE_INDEX` are never counted. A :class:`ConfusionMatrix` is
updated batch by batch (on the batch's device), summed across data-parallel workers with
:meth:`ConfusionMatrix.all_reduce`, and turned into flat, log-friendly metrics by
:func:`metrics_from_confusion`.

Classes absent from both truth and prediction have no defined IoU / F1: they are reported as NaN,
excluded from every mean, and listed under ``"absent_classes"``. :func:`json_safe` turns the NaNs
into ``None`` for JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from raygym.train.losses import IGNORE_INDEX, KERAS_EPSILON

__all__ = [
    "ConfusionMatrix",
    "confusion_matrix",
    "json_safe",
    "metrics_from_confusion",
]


def confusion_matrix(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Confusion matrix of integer predictions against integer targets.

    Args:
        pred: (B, H, W) integer predicted labels (or (B, K, H, W) float logits / probabilities,
            reduced with argmax over K).
        target: (B, H, W) integer labels; ``ignore_index`` pixels are skipped.
        num_classes: K.
        ignore_index: target value to skip.

    Returns:
        (K, K) int64 tensor on ``target``'s device; ``cm[t, p]`` counts pixels of true class t
        predicted as p.

    Raises:
        ValueError: on shape mismatch, or a label outside ``[0, K)`` that is not
            ``ignore_index`` (silently dropping or mis-binning it would corrupt the metrics).
    """
    if pred.is_floating_point():
        if pred.dim() != 4 or pred.shape[1] != num_classes:
            raise ValueError(
                f"float pred must be logits (B, {num_classes}, H, W), got {tuple(pred.shape)}"
            )
        pred = pred.argmax(dim=1)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if target.is_floating_point():
        raise ValueError(f"target must hold integer labels, got dtype {target.dtype}")
    valid = target != ignore_index
    t = target[valid].long()
    p = pred.to(target.device)[valid].long()
    if t.numel() and (
        bool((t.min() < 0) | (t.max() >= num_classes))
        or bool((p.min() < 0) | (p.max() >= num_classes))
    ):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) or equal {ignore_index}; target range "
            f"[{int(t.min())}, {int(t.max())}], pred range [{int(p.min())}, {int(p.max())}]"
        )
    # One bincount over flattened (truth, pred) pairs: much faster than per-class loops.
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).to(torch.int64)


def _kld_sum(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """Sum over valid pixels of Keras-style KL(one-hot || softmax) (float64 scalar)."""
    num_classes = logits.shape[1]
    with torch.autocast(device_type=logits.device.type, enabled=False):
        valid = target != ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target)).long()
        y = torch.nn.functional.one_hot(safe, num_classes).permute(0, 3, 1, 2).float()
        y = y.clamp(KERAS_EPSILON, 1.0)
        p = torch.softmax(logits.float(), dim=1).clamp(KERAS_EPSILON, 1.0)
        per_pixel = (y * (y.log() - p.log())).sum(1)
        return (per_pixel * valid).sum().to(torch.float64)


def distributed() -> bool:
    """Whether this process is a rank of an initialised torch.distributed group (DDP)."""
    return dist.is_available() and dist.is_initialized()


class ConfusionMatrix:
    """Accumulates a (K, K) confusion matrix and the KLD over a whole split.

    ``update`` keeps everything on the batch's device (no host sync besides the label range
    check); ``all_reduce`` sums the state across processes when ``torch.distributed`` is
    initialised; ``compute`` returns :func:`metrics_from_confusion`'s dict plus ``"kld"`` (mean
    KL(one-hot || softmax) per valid pixel) when every update received logits.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        ignore_index: int = IGNORE_INDEX,
        device: torch.device | str | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else None
        self.ignore_index = ignore_index
        self._device = torch.device(device) if device is not None else None
        self.reset()

    def reset(self) -> None:
        """Zero the state (start of a new split / epoch)."""
        device = self._device or torch.device("cpu")
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64,
                                  device=device)
        # [sum of per-pixel KLD, number of pixels it covers]; float64 so counts stay exact.
        self.kld_state = torch.zeros(2, dtype=torch.float64, device=device)

    def _to(self, device: torch.device) -> None:
        if self.matrix.device != device:
            self.matrix = self.matrix.to(device)
            self.kld_state = self.kld_state.to(device)

    @torch.no_grad()
    def update(self, logits_or_pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch.

        Args:
            logits_or_pred: (B, K, H, W) float logits (also feeds the KLD) or (B, H, W) integer
                predicted labels.
            target: (B, H, W) integer labels, ``ignore_index`` for ignored pixels.
        """
        self._to(target.device)
        self.matrix += confusion_matrix(
            logits_or_pred, target, self.num_classes, self.ignore_index
        )
        if logits_or_pred.is_floating_point():
            logits = logits_or_pred.to(target.device)
            n_valid = (target != self.ignore_index).sum().to(torch.float64)
            self.kld_state += torch.stack([_kld_sum(logits, target, self.ignore_index), n_valid])

    def all_reduce(self) -> None:
        """Sum the state over all processes; a no-op unless torch.distributed is initialised.

        Every rank must call it (collective). With the NCCL backend the state is moved to the
        current CUDA device first (a rank that saw no batch still holds CPU tensors).
        """
        if not distributed():
            return
        if dist.get_backend() == "nccl" and self.matrix.device.type != "cuda":
            self._to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)
        dist.all_reduce(self.kld_state, op=dist.ReduceOp.SUM)

    def compute(self) -> dict[str, Any]:
        """Metrics of the accumulated state; see :func:`metrics_from_confusion`.

        ``"kld"`` is included only when the KLD covers every counted pixel (all updates got
        logits), so it is never a mean over a silently smaller subset.
        """
        cm = self.matrix.cpu()
        out = metrics_from_confusion(cm, self.class_names)
        kld_sum, kld_count = (float(v) for v in self.kld_state.cpu())
        if kld_count > 0 and int(kld_count) == int(cm.sum()):
            out["kld"] = kld_sum / kld_count
        return out


def _safe_div(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    out = np.full(num.shape, fill, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def metrics_from_confusion(
    cm: np.ndarray | torch.Tensor, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Flat metrics from a confusion matrix (rows = truth, columns = prediction).

    Per class c with ``tp = cm[c, c]``, ``fp = colsum - tp``, ``fn = rowsum - tp``:
    IoU ``tp / (tp + fp + fn)``, F1 = Dice ``2 tp / (2 tp + fp + fn)``, precision
    ``tp / (tp + fp)``, recall ``tp / (tp + fn)``. A class is *present* if it occurs in the truth
    or in the prediction; absent classes get NaN everywhere and are excluded from means. For a
    present class, precision (never predicted) or recall (never true) with a zero denominator is
    0, as in scikit-learn.

    Keys: ``"mean_iou"``, ``"mean_dice"`` (mean F1), ``"mean_precision"``, ``"mean_recall"``
    (means over present classes), ``"iou/<name>"``, ``"f1/<name>"``, ``"precision/<name>"``,
    ``"recall/<name>"``, ``"accuracy"`` (overall), ``"fw_iou"`` (IoU weighted by true-pixel
    frequency), ``"mcc"`` (multiclass Matthews correlation, Gorodkin 2004; 0 when undefined),
    ``"num_pixels"`` and ``"absent_classes"`` (list of names). With no pixels at all, every float
    is NaN.

    Args:
        cm: (K, K) non-negative integer counts.
        class_names: K names for the per-class keys; default ``"0"``, ``"1"``, ...

    Returns:
        dict of floats (NaN where undefined), one int and one list of names.
    """
    m = cm.detach().cpu().numpy() if isinstance(cm, torch.Tensor) else np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {m.shape}")
    if (m < 0).any():
        raise ValueError("confusion matrix has negative counts")
    k = m.shape[0]
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}-class confusion matrix")
    m = m.astype(np.float64)  # float64: exact for counts < 2**53, and no int overflow in MCC

    tp = np.diag(m)
    true_count = m.sum(axis=1)
    pred_count = m.sum(axis=0)
    fp = pred_count - tp
    fn = true_count - tp
    total = float(m.sum())
    present = (true_count + pred_count) > 0

    iou = _safe_div(tp, tp + fp + fn, math.nan)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn, math.nan)
    precision = np.where(present, _safe_div(tp, tp + fp, 0.0), math.nan)
    recall = np.where(present, _safe_div(tp, tp + fn, 0.0), math.nan)

    def mean_present(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else math.nan

    out: dict[str, Any] = {
        "mean_iou": mean_present(iou),
        "mean_dice": mean_present(f1),
        "mean_precision": mean_present(precision),
        "mean_recall": mean_present(recall),
    }
    for i, name in enumerate(names):
        out[f"iou/{name}"] = float(iou[i])
        out[f"f1/{name}"] = float(f1[i])
        out[f"precision/{name}"] = float(precision[i])
        out[f"recall/{name}"] = float(recall[i])

    if total > 0:
        out["accuracy"] = float(tp.sum() / total)
        in_truth = true_count > 0  # iou is defined wherever the class is in the truth
        out["fw_iou"] = float((true_count[in_truth] / total * iou[in_truth]).sum())
        # Gorodkin's R_K: (c s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)).
        cov_xy = tp.sum() * total - float(pred_count @ true_count)
        cov_xx = total**2 - float(pred_count @ pred_count)
        cov_yy = total**2 - float(true_count @ true_count)
        denom = math.sqrt(cov_xx * cov_yy)
        out["mcc"] = float(cov_xy / denom) if denom > 0 else 0.0
    else:
        out["accuracy"] = out["fw_iou"] = out["mcc"] = math.nan
    out["num_pixels"] = int(total)
    out["absent_classes"] = [names[i] for i in range(k) if not present[i]]
    return out


def json_safe(d: Any) -> Any:
    """Copy of ``d`` that ``json.dumps(..., allow_nan=False)`` accepts.

    NaN / inf floats become ``None``; numpy scalars and arrays and 0-d / small tensors become
    Python numbers and lists; mappings and sequences are converted recursively; anything else
    that JSON has no type for (a path, a dtype) becomes its ``str``.
    """
    if isinstance(d, torch.Tensor):
        d = d.detach().cpu().numpy()
    if isinstance(d, np.ndarray):
        return json_safe(d.tolist())
    if isinstance(d, np.generic):
        d = d.item()
    if isinstance(d, float):
        return d if math.isfinite(d) else None
    if isinstance(d, Mapping):
        return {str(k): json_safe(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [json_safe(v) for v in d]
    if d is None or isinstance(d, str | int | float | bool):
        return d
    return str(d)
