"""How sure a score is: bootstrap intervals over the evaluated images.

A test split of a few dozen scenes gives a mean IoU that another draw of scenes would move by
several hundredths. The images (scenes, or chips) are resampled with replacement and the
scores recomputed from their summed confusion matrices (scipy's percentile bootstrap,
seeded): an interval for the mean IoU and each class's IoU, and, for two models scored on the
same images, for the difference of their mean IoU (a paired bootstrap: both models see the
same resampled images). Pixels within an image are not independent, so images, not pixels,
are the unit resampled; and where images are not independent either (the chips of one
scene, the scenes of one ``data.split.group``), their confusions are summed per scene or group
first (:func:`unit_confusions`) and those are resampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
BATCH_VALUES = 2**24
"""Confusion counts one bootstrap batch holds (128 MiB of int64): resamples per batch."""


@dataclass(frozen=True)
class Interval:
    """A ``level`` two-sided percentile bootstrap interval ``[low, high]``."""

    low: float
    high: float

    def text(self) -> str:
        return f"{self.low:.3f}-{self.high:.3f}"


def iou_per_class(counts: np.ndarray) -> np.ndarray:
    """``(..., K)`` IoU of ``(..., K, K)`` confusion counts (rows truth); NaN for a class
    absent from truth and prediction, as :func:`raygym.train.metrics.metrics_from_confusion`."""
    tp = np.diagonal(counts, axis1=-2, axis2=-1).astype(np.float64)
    union = counts.sum(axis=-1) + counts.sum(axis=-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(counts: np.ndarray) -> np.ndarray:
    """``(...)`` mean IoU over the classes present in each ``(..., K, K)`` confusion."""
    iou = iou_per_class(counts)
    present = ~np.isnan(iou)
    n = present.sum(axis=-1)
    return np.where(n > 0, np.nansum(iou, axis=-1) / np.maximum(n, 1), np.nan)


def _bootstrap(n_images: int, statistic: Any, values_per_image: int) -> Any:
    import warnings

    from scipy.stats import DegenerateDataWarning, bootstrap

    batch = max(1, BATCH_VALUES // max(1, n_images * values_per_image))
    with warnings.catch_warnings():  # e.g. every image perfect: the interval is one point
        warnings.simplefilter("ignore", DegenerateDataWarning)
        return bootstrap((np.arange(n_images),), statistic, n_resamples=RESAMPLES,
                         batch=batch, vectorized=True, confidence_level=LEVEL,
                         method="percentile", rng=np.random.default_rng(SEED))


def unit_confusions(image_confusions: np.ndarray, units: Sequence[str]
                    ) -> tuple[list[str], np.ndarray]:
    """The units, sorted, and ``(U, K, K)``: the ``(N, K, K)`` per-image confusions summed per
    unit (``units[i]``: image i's scene or group). Sorted, so the intervals and the pairing of
    two models' units do not depend on the order rows were scored in (Ray Data's is not
    fixed)."""
    order = sorted(set(units))
    index = {u: i for i, u in enumerate(order)}
    summed = np.zeros((len(order), *image_confusions.shape[1:]), image_confusions.dtype)
    np.add.at(summed, [index[u] for u in units], image_confusions)
    return order, summed


def score_intervals(image_confusions: np.ndarray) -> dict[str, Any] | None:
    """``{"mean_iou": Interval | None, "iou": [Interval | None per class]}`` of ``(N, K, K)``
    confusions of N independent units (images, scenes or groups), or None with fewer than 2
    (nothing to resample). None where a resample lacks the class in truth and prediction
    alike (its IoU is undefined there)."""
    n, k, _ = image_confusions.shape
    if n < 2:
        return None

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        """``(K + 1, ...)``: mean IoU then each class's, of the images ``idx`` (..., N)."""
        summed = image_confusions[idx].sum(axis=-3)  # (..., K, K)
        return np.moveaxis(np.concatenate([mean_iou(summed)[..., None],
                                           iou_per_class(summed)], axis=-1), -1, 0)

    with np.errstate(invalid="ignore"):
        low, high = _bootstrap(n, stat, k * k).confidence_interval
    pairs = [Interval(float(a), float(b)) if np.isfinite(a) and np.isfinite(b) else None
             for a, b in zip(low, high, strict=True)]
    return {"mean_iou": pairs[0], "iou": pairs[1:]}


def difference_interval(first: np.ndarray, second: np.ndarray) -> Interval | None:
    """The interval of ``mean IoU(first) - mean IoU(second)``, two models' ``(N, K, K)``
    confusions of the same N images in the same order (paired: each resample draws the same
    images for both); None with fewer than 2 images."""
    if first.shape != second.shape or first.shape[0] < 2:
        return None

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return (mean_iou(first[idx].sum(axis=-3)) - mean_iou(second[idx].sum(axis=-3)))

    with np.errstate(invalid="ignore"):
        low, high = _bootstrap(first.shape[0], stat, 2 * first.shape[1] ** 2
                               ).confidence_interval
    return Interval(float(low), float(high)) if np.isfinite(low) and np.isfinite(high) else None


def method_text(n_units: int, unit: str = "images") -> str:
    """How the intervals were made, for reports; ``unit``: what was resampled, in words
    (``images``, ``scenes``, ``scenes (their chips summed)``, ...)."""
    return (f"{LEVEL * 100:g} % interval, percentile bootstrap over the {n_units} {unit}; "
            f"{RESAMPLES:,} resamples, seed {SEED}")


def intervals_json(intervals: dict[str, Any] | None, classes: list[str], n_units: int,
                   unit: str = "images") -> dict[str, Any] | None:
    """``metrics.json``'s ``intervals``: ``method``, ``mean_iou`` and ``iou/<class>`` as
    ``[low, high]`` (null where undefined); None without intervals."""
    if intervals is None:
        return None

    def pair(i: Interval | None) -> list[float] | None:
        return None if i is None else [round(i.low, 6), round(i.high, 6)]

    return {"method": method_text(n_units, unit), "units": unit,
            "mean_iou": pair(intervals["mean_iou"]),
            **{f"iou/{c}": pair(i) for c, i in zip(classes, intervals["iou"], strict=True)}}
