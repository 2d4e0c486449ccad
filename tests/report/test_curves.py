"""Learning curves and the pruning picture from hand-written Tune trial folders."""

from __future__ import annotations

from pathlib import Path

from raygym.report.curves import curves_section, epoch_series, pruning_section
from raygym.report.document import ReportDocument
from raygym.report.results import load_results

from . import PNG_MAGIC, VAL_LOSS_SEARCH, write_bare_leaderboard, write_trial_folders


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
