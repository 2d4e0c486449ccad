"""Learning curves and the pruning picture from hand-written Tune trial folders."""

from __future__ import annotations

import json
from pathlib import Path

from raygym.report.curves import (
    LABELLED_CURVES,
    curves_section,
    draw_trial_curves,
    epoch_series,
    pruning_section,
)
from raygym.report.document import ReportDocument
from raygym.report.results import load_results

from . import (
    PNG_MAGIC,
    VAL_LOSS_SEARCH,
    write_bare_leaderboard,
    write_leaderboard,
    write_trial_folders,
)


def test_epoch_series_skips_missing_values() -> None:
    hist = [{"epoch": 1, "val_loss": 0.9}, {"epoch": 2}, {"training_iteration": 3,
                                                         "val_loss": "0.4"}]
    assert epoch_series(hist, "val_loss") == ([1, 3], [0.9, 0.4])


def test_curves_and_pruning_sections(tmp_path: Path) -> None:
    """Three trials (one pruned after 1 of 3 epochs): both figures, and 6 of 9 epochs spent."""
    res = load_results(write_trial_folders(tmp_path / "rep", VAL_LOSS_SEARCH))
    doc = ReportDocument(tmp_path)
    curves_section(doc, res)
    pruning_section(doc, res)
    curves, pruning = doc.sections
    assert [b.kind for b in curves.blocks] == ["figure"]
    assert [b.kind for b in pruning.blocks] == ["figure", "p"]
    assert "ASHA's rungs" in pruning.blocks[0].data[1]
    assert pruning.blocks[1].data == ("6 epochs trained out of 9 without early stopping "
                                      "(67 %).")
    for name in ("curves.png", "pruning.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC


def test_no_trial_folders_is_a_note(tmp_path: Path) -> None:
    res = load_results(write_bare_leaderboard(tmp_path))
    doc = ReportDocument(tmp_path)
    curves_section(doc, res)
    pruning_section(doc, res)
    for section in doc.sections:
        assert [b.kind for b in section.blocks] == ["note"]
        assert "no Tune trial folders" in section.blocks[0].data


def test_a_large_search_names_only_its_best_curves(tmp_path: Path) -> None:
    """15 trials that ran to their end and 4 pruned: the 10 best are named (one legend entry
    each), the other 5 and the pruned ones are one collection each, every trial drawn."""
    from matplotlib.collections import LineCollection

    from raygym.plots import pyplot

    results = tmp_path / "rep"
    rows, trials = [], []
    for i in range(19):
        tid, pruned = f"t{i:02d}", i >= 15
        epochs = 1 if pruned else 3
        rows.append([i + 1, tid, "asha-pruned" if pruned else "completed", 0.9 - 0.01 * i,
                     epochs, epochs, "n", ""])
        trials.append((tid, epochs))
    write_leaderboard(results, ["rank", "trial_id", "status", "best_val_mean_iou",
                                "best_epoch", "epochs", "node_id", "error"], rows)
    for tid, epochs in trials:
        folder = results / "ray" / "rep" / tid
        folder.mkdir(parents=True)
        (folder / "result.json").write_text("".join(
            json.dumps({"trial_id": tid, "epoch": e, "val_mean_iou": 0.1 * e}) + "\n"
            for e in range(1, epochs + 1)))
    (results / "search.json").write_text(json.dumps({"name": "rep", "config": {
        "name": "rep", "search": {"metric": "val_mean_iou", "mode": "max"}}}))
    res = load_results(results)
    fig, ax = pyplot().subplots()
    tids = [t for t in res.trial_ids() if res.histories.get(t)]
    assert draw_trial_curves(ax, res, tids, "val_mean_iou") == (3, 4, 0, 5)
    named = [line.get_label() for line in ax.get_lines()]
    assert named == [f"t{i:02d} (completed)" for i in range(LABELLED_CURVES)]
    others, pruned = (c for c in ax.collections if isinstance(c, LineCollection))
    assert len(others.get_segments()) == 5 and len(pruned.get_segments()) == 4
    pyplot().close(fig)
