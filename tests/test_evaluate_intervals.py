"""Bootstrap intervals of evaluation scores (``raygym.evaluate_intervals``) on hand-made
confusion matrices with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from raygym.evaluate_intervals import (
    difference_interval,
    iou_per_class,
    mean_iou,
    score_intervals,
)
from raygym.train.metrics import metrics_from_confusion

CLASSES = ["water", "sand", "land"]


def _images(n: int, seed: int, errors: int = 200) -> np.ndarray:
    """``n`` images' (3, 3) confusions: ~1000 right pixels per class, ``errors`` wrong."""
    rng = np.random.default_rng(seed)
    cms = rng.integers(0, errors, size=(n, 3, 3))
    cms[:, np.arange(3), np.arange(3)] = rng.integers(600, 1400, size=(n, 3))
    return cms


def test_vectorised_scores_equal_the_metrics_module() -> None:
    cms = _images(5, seed=0)
    cms[1, 2, :] = 0
    cms[1, :, 2] = 0  # land absent from image 1
    for cm in cms:
        m = metrics_from_confusion(cm, CLASSES)
        ious = iou_per_class(cm)
        for c, name in enumerate(CLASSES):
            expected = m[f"iou/{name}"]
            assert (np.isnan(ious[c]) if expected is None or np.isnan(expected)
                    else ious[c] == pytest.approx(expected))
        assert mean_iou(cm) == pytest.approx(m["mean_iou"])
    assert mean_iou(cms).shape == (5,)


def test_the_interval_holds_the_score_and_narrows_with_more_images() -> None:
    few, many = _images(8, seed=1), _images(200, seed=1)
    spans = {}
    for name, cms in (("few", few), ("many", many)):
        found = score_intervals(cms)
        assert found is not None
        point = mean_iou(cms.sum(axis=0))
        assert found["mean_iou"].low < point < found["mean_iou"].high
        assert len(found["iou"]) == 3
        spans[name] = found["mean_iou"].high - found["mean_iou"].low
    assert spans["many"] < spans["few"] / 2  # ~ 1 / sqrt(images)
    assert score_intervals(few) == score_intervals(few)  # seeded


def test_identical_images_and_single_images() -> None:
    same = np.repeat(_images(1, seed=2), 6, axis=0)
    found = score_intervals(same)
    point = float(mean_iou(same[0]))
    assert found["mean_iou"].low == pytest.approx(point)
    assert found["mean_iou"].high == pytest.approx(point)
    assert score_intervals(same[:1]) is None
    assert difference_interval(same[:1], same[:1]) is None


def test_a_paired_difference_sees_what_unpaired_intervals_hide() -> None:
    first = _images(12, seed=3)
    second = first.copy()
    second[:, 0, 1] += 40  # every image a little worse: water taken for sand
    a, b = score_intervals(first), score_intervals(second)
    assert a["mean_iou"].low < b["mean_iou"].high  # the two intervals overlap ...
    diff = difference_interval(second, first)
    assert diff is not None and diff.high < 0  # ... yet the paired difference is below 0
    assert difference_interval(first, first) == type(diff)(0.0, 0.0)
    assert difference_interval(first, first[:5]) is None  # not the same images


def test_units_are_summed_and_ordered_whatever_the_row_order() -> None:
    from raygym.evaluate_intervals import unit_confusions

    cms = _images(6, seed=4)
    units = ["b", "a", "b", "c", "a", "b"]
    order, summed = unit_confusions(cms, units)
    assert order == ["a", "b", "c"]
    np.testing.assert_array_equal(summed[1], cms[0] + cms[2] + cms[5])
    shuffled = [5, 3, 1, 0, 4, 2]
    again = unit_confusions(cms[shuffled], [units[i] for i in shuffled])
    assert again[0] == order and np.array_equal(again[1], summed)
    assert score_intervals(summed) == score_intervals(again[1])
