"""Matplotlib pieces the report's figures share."""

from __future__ import annotations

from raygym.report.figures import close_all_figures, epoch_axis, legend_outside, pyplot, shorten


def test_legend_outside_keeps_labels_and_adds_extra() -> None:
    from matplotlib.lines import Line2D

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([1, 2], [0, 1], label="trial a")
    ax.plot([1, 2], [1, 0])  # unlabelled: not in the legend
    legend_outside(ax, [Line2D([], [], label="pruned (2)")])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["trial a", "pruned (2)"]
    epoch_axis(ax, "epochs spent")
    assert ax.get_xlabel() == "epochs spent"
    close_all_figures()
    assert plt.get_fignums() == []


def test_shorten() -> None:
    assert shorten("filters") == "filters"
    assert shorten("a" * 30, 10) == "a" * 9 + "…"
