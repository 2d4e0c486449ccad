"""Hyperparameter effects: the per-key figure and Gym's grouped view from a leaderboard, a note
when there is too little to compare."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raygym.report.document import ReportDocument
from raygym.report.effects import effects_section
from raygym.report.results import load_results

from . import PNG_MAGIC, write_bare_leaderboard


def _effects(results: Path) -> ReportDocument:
    doc = ReportDocument(results)
    effects_section(doc, load_results(results))
    return doc


def test_effects_figures_from_a_leaderboard(tmp_path: Path) -> None:
    """Two categorical keys (filters, loss): the per-key figure and the grouped view."""
    doc = _effects(write_bare_leaderboard(tmp_path))
    (section,) = doc.sections
    figures = [b.data[0].name for b in section.blocks if b.kind == "figure"]
    assert figures == ["effects.png", "effects_grouped.png"]
    assert all((tmp_path / f).read_bytes()[:8] == PNG_MAGIC for f in figures)
    assert any(b.kind == "p" and "read the means together with their n" in b.data
               for b in section.blocks)


def test_effects_needs_two_successful_trials(tmp_path: Path) -> None:
    (tmp_path / "leaderboard.csv").write_text(
        "rank,trial_id,status,best_val_mean_iou,node_id,model.filters,error\n"
        "1,a,completed,0.5,n,4,\n2,b,failed,,n,2,boom\n")
    (section,) = _effects(tmp_path).sections
    assert [(b.kind, b.data) for b in section.blocks] == [
        ("note", "needs at least two successful trials and a searched key.")]


def test_trials_are_drawn_as_one_scatter_per_kind() -> None:
    """Pruned trials grey triangles under the finished ones' blue dots, every trial once: one
    call per kind (a call per trial cost a 1,000-trial report 18 s of matplotlib)."""
    from raygym.plots import pyplot
    from raygym.report.effects import _scatter_trials

    pts = [(float(i), 0.1 * i, f"t{i}") for i in range(6)]
    statuses = {"t0": "completed", "t1": "asha-pruned", "t2": "early-stopped",
                "t3": "median-pruned", "t4": "completed"}  # t5: no status, drawn as pruned
    fig, ax = pyplot().subplots()
    _scatter_trials(ax, pts, statuses)
    pruned, ran = ax.collections
    assert np.asarray(pruned.get_offsets()) == pytest.approx(
        np.array([[1, 0.1], [3, 0.3], [5, 0.5]]))
    assert np.asarray(ran.get_offsets()) == pytest.approx(np.array([[0, 0], [2, 0.2], [4, 0.4]]))
    assert tuple(pruned.get_facecolor()[0][:3]) != tuple(ran.get_facecolor()[0][:3])
    pyplot().close(fig)


def test_the_grouped_view_of_a_conditional_space_uses_what_the_trials_set(
        tmp_path: Path) -> None:
    """model.filters belongs to the gym branch, which no trial took: the grouped view is by
    arch (the key the trials varied), never by a key every trial left unset; the best
    parameters leave the unset key out."""
    from raygym.report.overview import summary_section

    (tmp_path / "leaderboard.csv").write_text(
        "rank,trial_id,status,best_val_mean_iou,node_id,model.arch,model.filters,loss.name,"
        "error\n"
        "1,a,completed,0.7,n,unet,,dice,\n2,b,completed,0.6,n,fpn,,cce,\n"
        "3,c,completed,0.5,n,fpn,,dice,\n")
    doc = _effects(tmp_path)
    grouped = [b for b in doc.sections[0].blocks
               if b.kind == "figure" and b.data[0].name == "effects_grouped.png"]
    assert len(grouped) == 1 and "by model.arch for each combination" in grouped[0].data[1]
    summary = ReportDocument(tmp_path)
    summary_section(summary, load_results(tmp_path))
    rows = dict(summary.sections[0].blocks[0].data)
    assert rows["best parameters"] == "model.arch=unet, loss.name=dice"
