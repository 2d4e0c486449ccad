"""The best-model section: the exported model scored again on its dataset's test split through
the one inference path, and notes when there is no model, a damaged one, or no dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raygym.report import SplitEvaluation, evaluate_best
from raygym.report.best_model import N_SAMPLES, best_model_section
from raygym.report.document import ReportDocument
from raygym.report.results import load_results

from . import write_bare_leaderboard


def _best(results: Path) -> list[tuple[str, object]]:
    doc = ReportDocument(results)
    best_model_section(doc, load_results(results))
    (section,) = doc.sections
    return [(b.kind, b.data) for b in section.blocks]


def test_no_or_damaged_model_is_a_note(tmp_path: Path) -> None:
    results = write_bare_leaderboard(tmp_path)
    (kind, text), = _best(results)
    assert kind == "note" and text.startswith("no exported model (best/rank1_*)")
    (results / "best" / "rank1_abc").mkdir(parents=True)
    (kind, text), = _best(results)
    assert kind == "note" and "rank1_abc" in text


@pytest.mark.slow
def test_evaluate_best_on_the_test_split(search_results: Path) -> None:
    """Confusion counts add up to the labelled pixels; best, median and worst samples, each
    cropped to its image's valid area, labels and predictions of one shape."""
    (artifact,) = (search_results / "best").glob("rank1_*")
    ev = evaluate_best(artifact, batch_size=2)
    assert isinstance(ev, SplitEvaluation)
    assert ev.split == "test" and ev.matrix.shape == (4, 4)
    assert int(ev.matrix.sum()) == ev.metrics["num_pixels"]
    assert 0.0 <= ev.metrics["mean_iou"] <= 1.0
    assert ev.units >= 2 and ev.mean_iou_interval is not None
    assert ev.mean_iou_interval.low <= ev.metrics["mean_iou"] <= ev.mean_iou_interval.high
    assert 1 <= len(ev.samples) <= N_SAMPLES
    ious = [s[4] for s in ev.samples]
    assert ious == sorted(ious, reverse=True)
    for _key, image, label, pred, _miou in ev.samples:
        assert image.shape[:2] == label.shape == pred.shape
        assert set(np.unique(pred)) <= {0, 1, 2, 3}


@pytest.mark.slow
def test_best_model_section_on_a_real_search(search_results: Path, tmp_path: Path) -> None:
    """Card, validation and per-class scores (test columns included), the recomputed
    scores, the confusion matrix and the samples, in that order."""
    doc = ReportDocument(tmp_path)
    best_model_section(doc, load_results(search_results))
    (section,) = doc.sections
    kinds = [b.kind for b in section.blocks]
    assert kinds == ["kv", "h3", "table", "h3", "table", "p", "figure", "figure"]
    card = dict(section.blocks[0].data)
    assert card["classes"] == "water, surf, wet_sand, dry_land"
    # S2 scenes (153 x 72 px) shrunk into 64 x 64: how predict will resample new images
    assert card["input"].startswith("4 bands, 64 x 64 px; training scenes resized by 0.4")
    cols, rows, _ = section.blocks[4].data
    assert cols[-1] == "test pixels" and [r[0] for r in rows] == [
        "water", "surf", "wet_sand", "dry_land"]
    assert [b.data[0].name for b in section.blocks if b.kind == "figure"] == [
        "confusion.png", "samples.png"]


def test_a_fine_tuned_model_says_where_it_started() -> None:
    from raygym.report.best_model import _started_from

    assert _started_from(None) == []
    (row,) = _started_from({"path": "/m/site_a/best", "name": "site_a", "val_mean_iou": 0.6746,
                            "weights_sha256": "4164b887f8ddf01c6bd8"})
    assert row == ("started from", "/m/site_a/best (model 'site_a', val mean IoU 0.675, "
                                   "weights SHA-256 4164b887f8dd)")
    assert _started_from({"path": "/m/gone"}) == [("started from", "/m/gone")]
