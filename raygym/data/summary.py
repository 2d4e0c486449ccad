"""What `raygym prepare` tells: the split line, the padding warning, the chips line, then the
table of rows, sources (and groups) and class pixel shares per split."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from raygym.config import DataConfig
from raygym.data.split import BLOCKS, SPLITS, split_group_counts
from raygym.errors import DataError


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


def asked_splits(data: DataConfig) -> list[str]:
    """The splits data.split asks for: train, and val / test when their fraction is not 0."""
    fractions = {"train": 1.0, "val": data.split.val, "test": data.split.test}
    return [s for s in SPLITS if fractions[s] > 0]


def unlabelled_line(keys: list[str], data: DataConfig) -> str:
    """A note on the scenes without one labelled pixel: they train and score nothing."""
    where = ("outside data.label_raster, or where it holds nodata" if data.label_raster
             else "under no polygon of data.label_vector" if data.label_vector
             else "every label value ignored, or every pixel nodata")
    shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
    return (f"[yellow]note:[/] {len(keys)} scene(s) hold no labelled pixel ({where}), so "
            f"they train and score nothing: {shown}")


def chips_line(kept: dict[str, int], dropped: int, splits_drawn: set[str],
               data: DataConfig) -> str:
    """``cut into 412 chips of 256 x 256 px (train 300, val 70, test 42); 17 dropped ...``
    from the chips ``kept`` per split.

    Raises:
        DataError: a split drawn (``splits_drawn``: scenes', or ``blocks``) with not one chip
            kept (nothing to validate or test on).
    """
    assert data.chips is not None
    wanted = (asked_splits(data) if BLOCKS in splits_drawn
              else [s for s in SPLITS if s in splits_drawn])
    empty = [s for s in wanted if kept[s] == 0]
    th, tw = data.target_size
    if empty:
        raise DataError(f"not one chip of the {empty[0]} split has "
                        f"{100 * data.chips.min_labelled:g} % of its pixels labelled",
                        key="data.chips.min_labelled",
                        fix="lower data.chips.min_labelled, or check the labels' nodata / "
                        "ignored values" + (", or use smaller data.chips.blocks"
                                            if data.chips.blocks else ""))
    line = (f"cut into {sum(kept.values())} chips of {th} x {tw} px ("
            + ", ".join(f"{s} {kept[s]}" for s in SPLITS) + ")")
    if dropped:
        line += (f"; {dropped} dropped with under {100 * data.chips.min_labelled:g} % of their "
                 "pixels labelled (data.chips.min_labelled)")
    return line


def block_line(blocks_of: dict[str, dict[str, str]], blocks: int, data: DataConfig) -> str:
    """``split by 9 blocks of 2 x 2 chips: train 5, val 2, test 2 (blocks)``.

    Raises:
        DataError: too few blocks to give every split with a fraction one.
    """
    drawn = [s for scene in blocks_of.values() for s in scene.values()]
    line = (f"split by {len(drawn)} block{'s' * (len(drawn) != 1)} of {blocks} x {blocks} "
            "chips: " + ", ".join(f"{s} {drawn.count(s)}" for s in SPLITS) + " (blocks)")
    empty = [s for s in asked_splits(data) if s not in drawn]
    if empty:
        raise DataError(f"{line}: too few blocks to give the {empty[0]} split one",
                        key="data.chips.blocks", fix="use smaller blocks (each holds blocks x "
                        "blocks chips of data.target_size), or more scenes")
    return line


def padding_line(sizes: list[tuple[int, int]], data: DataConfig) -> str | None:
    """A warning when padding fills over 40 % of the median ``data.target_size`` tile (the
    scenes' aspect far from the target's, e.g. height and width swapped, or scenes smaller than
    the tile), with the fix: a target size of about the same pixels in the scenes' shape, a
    smaller one (or ``upscale``); None when the target fits them."""
    from raygym.data.transforms import padding_share, target_size_like

    target = (int(data.target_size[0]), int(data.target_size[1]))
    share = padding_share(sizes, target, data.upscale)
    if share <= 0.4:  # aerial 614 x 920 into 96 x 128: 11 %
        return None
    med = sorted(sizes, key=lambda hw: hw[0] / hw[1])[len(sizes) // 2]
    said = (f"padding fills {100 * share:.0f} % of each {target[0]} x {target[1]} px tile "
            f"(median; scenes are about {med[0]} x {med[1]} px, height x width): losses and "
            "metrics skip it, so that share of the compute is wasted; ")
    better = target_size_like(sizes, target)
    if padding_share(sizes, better, data.upscale) <= share - 0.2:
        return (said + f"data.target_size: [{better[0]}, {better[1]}] keeps about as many "
                "pixels in the scenes' shape")
    if not data.upscale and padding_share(sizes, target, True) <= share - 0.2:
        fit = (-(-med[0] // 32) * 32, -(-med[1] // 32) * 32)
        return (said + f"the scenes are smaller than the tile: data.target_size: "
                f"[{fit[0]}, {fit[1]}], or data.upscale: true to enlarge them")
    return said + "no tile in multiples of 32 px fits scenes this thin: cut them into squarer tiles first"


def split_line(splits: dict[str, str], groups: dict[str, str] | None) -> str:
    """``split train 56, val 16, test 8`` (images), with groups when split by group."""
    images = {s: sum(v == s for v in splits.values()) for s in SPLITS}
    if groups is None:
        return "split " + ", ".join(f"{s} {images[s]}" for s in SPLITS)
    count = split_group_counts(groups, splits)
    return (f"split by {len(set(groups.values()))} groups: "
            + ", ".join(f"{s} {images[s]} ({count[s]} group{'s' * (count[s] != 1)})"
                        for s in SPLITS))
