"""The table `raygym prepare` prints: rows, sources and class pixel shares per split."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_prepare_summary(result: Any, console: Console) -> None:
    """Rows per split, sources, and the class pixel shares of a prepared dataset."""
    card = result.card
    table = Table(title=f"dataset {card.name}: {result.path}")
    table.add_column("split")
    table.add_column("sources", justify="right")
    table.add_column("rows", justify="right")
    for name in card.classes:
        table.add_column(f"{name} %", justify="right")
    table.add_column("ignored %", justify="right")
    for split, info in card.splits.items():
        counts = info["pixels_per_class"]
        total = sum(counts) + info["ignored_pixels"]
        shares = [f"{100 * c / total:.1f}" if total else "-" for c in counts]
        ign = f"{100 * info['ignored_pixels'] / total:.1f}" if total else "-"
        table.add_row(split, str(info["sources"]), str(info["rows"]), *shares, ign)
    console.print(table)
    if card.remap_changed:
        changed = ", ".join(f"{v}: {n} px" for v, n in card.remap_changed.items())
        console.print(f"label values changed by data.unknown_labels rule: {changed}")
    extra = " (reused)" if result.reused else ""
    console.print(f"{card.bands} bands, target {card.target_size[0]}x{card.target_size[1]}, "
                  f"{result.seconds:.1f} s{extra}")
