"""The table `raygym prepare` prints: rows, sources (and groups) and class pixel shares per
split."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def print_prepare_summary(result: Any, console: Console) -> None:
    """Rows per split, sources (groups, when split by ``data.split.group``), and the class
    pixel shares of a prepared dataset."""
    card = result.card
    grouped = card.group_rule is not None
    table = Table(title=f"dataset {card.name}: {result.path}")
    table.add_column("split")
    if grouped:
        table.add_column("groups", justify="right")
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
        groups = [str(info.get("groups", "-"))] if grouped else []
        table.add_row(split, *groups, str(info["sources"]), str(info["rows"]), *shares, ign)
    console.print(table)
    if grouped:
        total = sum(int(info.get("groups", 0)) for info in card.splits.values())
        rule = escape(str(card.group_rule))  # a regex's [...] is not rich markup
        console.print(f"split by data.split.group '{rule}': {total} groups, none in two "
                      "splits")
    if card.remap_changed:
        changed = ", ".join(f"{v}: {n} px" for v, n in card.remap_changed.items())
        console.print(f"label values changed by data.unknown_labels rule: {changed}")
    extra = " (reused)" if result.reused else ""
    console.print(f"{card.bands} bands, target {card.target_size[0]}x{card.target_size[1]}, "
                  f"{result.seconds:.1f} s{extra}")
