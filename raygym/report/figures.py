"""Matplotlib pieces the report's figures share: pyplot on Agg, a legend right of the axes,
epoch axes, short labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raygym.plots import pyplot

__all__ = ["close_all_figures", "epoch_axis", "legend_outside", "pyplot", "shorten"]


def close_all_figures() -> None:
    """Close every open figure (a section that failed halfway leaves its figure open)."""
    pyplot().close("all")


def legend_outside(ax: Any, extra: Sequence[Any] = ()) -> None:
    """The axes' legend, plus the proxy artists ``extra``, right of the plot: the curves it
    explains stay uncovered however many trials there are."""
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + list(extra), fontsize=7, loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False)


def epoch_axis(ax: Any, label: str = "epoch") -> None:
    """x axis counting epochs: labelled, whole-number ticks, a light grid."""
    ax.set_xlabel(label)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)


def shorten(label: str, n: int = 18) -> str:
    """``label`` cut to ``n`` characters (an ellipsis the last) so tick labels do not overlap."""
    return label if len(label) <= n else label[: n - 1] + "…"
