"""Seeded train / val / test split by source image, made before any augmentation.

Two ways, both deterministic (same scenes + seed -> same split, whatever the file order):

- :func:`assign_splits`: each source image on its own (the default, unchanged);
- :func:`assign_group_splits`: whole groups (``data.split.group``: a tile, site or date), so
  adjacent crops of one capture never sit in train and test (spatial leakage). The group of a
  scene comes from :func:`scene_groups`: a regex searched in its key, or a manifest column.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from raygym.config import SplitConfig
from raygym.data.pairing import Pair
from raygym.errors import DataError

SPLITS = ("train", "val", "test")
BLOCKS = "blocks"
"""A scene's split when its chips, not it, are split (``data.chips.blocks``)."""
GROUP_KEY = "data.split.group"
CROP_EXAMPLE = r"'^(.*)_\d+_\d+$' groups <scene>_<row>_<col> crops by scene"


def assign_splits(keys: list[str], val: float, test: float, seed: int) -> dict[str, str]:
    """Map each source key to 'train', 'val' or 'test'.

    The permutation depends only on the sorted keys and ``seed``, so the same folder always
    splits the same way. Non-zero fractions get at least one image when there are >= 3 images,
    a non-zero val gets one from 2 images (training needs val more than a test split), and train
    always keeps at least one.
    """
    ordered = sorted(keys)
    n = len(ordered)
    rng = np.random.default_rng(seed)
    perm = [ordered[i] for i in rng.permutation(n)]

    def count(frac: float, least_images: int) -> int:
        k = int(round(frac * n))
        return max(k, 1) if frac > 0 and n >= least_images else k

    n_test, n_val = count(test, 3), count(val, 2)
    while n_test + n_val >= n and (n_test or n_val):  # keep >= 1 for training
        if n_val > n_test:  # the larger gives way; on a tie test does, as training needs val
            n_val -= 1
        else:
            n_test -= 1
    out = {k: "test" for k in perm[:n_test]}
    out.update({k: "val" for k in perm[n_test:n_test + n_val]})
    out.update({k: "train" for k in perm[n_test + n_val:]})
    return out


# ------------------------------------------------------------------------ by chip blocks
def axis_blocks(length: int, tile: int, blocks: int) -> dict[int, int]:
    """``{chip start: block index}`` along one axis of ``length`` px cut into ``tile``-px chips
    side by side (:func:`~raygym.data.transforms.window_starts` at overlap 0): ``blocks``
    chips a block. The last chip, shifted to end at the edge, overlaps the one before it, so
    it joins that chip's block: no pixel lies in two blocks."""
    from raygym.data.transforms import window_starts

    starts = window_starts(length, tile, 0.0)
    side_by_side = max(1, length // tile)
    return {s: min(i, side_by_side - 1) // blocks for i, s in enumerate(starts)}


def block_splits(sizes: dict[str, tuple[int, int]], chip_hw: tuple[int, int], blocks: int,
                 split: SplitConfig) -> dict[str, dict[str, str]]:
    """``{scene: {"<block row>/<block col>": split}}``: every block of ``blocks`` x ``blocks``
    chips of every scene (``sizes``: ``(h, w)`` px) drawn to a split as
    :func:`assign_splits` draws images (seeded, the fractions over all blocks)."""
    ids = [f"{key}/{by}/{bx}" for key, (h, w) in sizes.items()
           for by in sorted(set(axis_blocks(h, chip_hw[0], blocks).values()))
           for bx in sorted(set(axis_blocks(w, chip_hw[1], blocks).values()))]
    drawn = assign_splits(ids, split.val, split.test, split.seed)
    out: dict[str, dict[str, str]] = {key: {} for key in sizes}
    for block, where in drawn.items():
        key, by, bx = block.rsplit("/", 2)
        out[key][f"{by}/{bx}"] = where
    return out


# ------------------------------------------------------------------------------ by group
def group_of(key: str, pattern: re.Pattern[str]) -> str | None:
    """The group id of scene ``key``: the regex's capture groups joined with ``/`` (a group
    that took no part counts as empty), else its whole match; None if it finds nothing."""
    m = pattern.search(key)
    if m is None:
        return None
    gid = "/".join(g or "" for g in m.groups()) if m.groups() else m.group(0)
    return gid if gid.strip("/") else None


def scene_groups(pairs: list[Pair], split: SplitConfig,
                 manifest: Path | None = None) -> dict[str, str] | None:
    """``{scene key: group id}`` by ``split.group`` (None when no rule is set).

    Raises a one-line :class:`DataError` naming the key and the fix for a key the regex does
    not match, a ``column:`` rule without a manifest or that names no column of it, or an
    empty cell.
    """
    rule = split.group
    if rule is None:
        return None
    column = split.group_column
    if column is None:
        pattern = re.compile(rule)
        out = {p.key: group_of(p.key, pattern) for p in pairs}
        unmatched = sorted(k for k, g in out.items() if g is None)
        if unmatched:
            more = f" ({len(unmatched)} of {len(out)} keys do not)" if len(unmatched) > 1 else ""
            raise DataError(f"scene key '{unmatched[0]}' does not match the group regex "
                            f"'{rule}'{more}", key=GROUP_KEY,
                            fix="write a regex that finds a group in every scene key (the "
                            f"image file stem), e.g. {CROP_EXAMPLE}")
        return {k: g for k, g in out.items() if g is not None}
    if manifest is None:
        raise DataError(f"'{rule}' takes each scene's group from a manifest column, but the "
                        "scenes are paired by file name", key=GROUP_KEY,
                        fix=f"pair with data.manifest (a '{column}' column after 'label'), or "
                        f"use a regex over the scene key, e.g. {CROP_EXAMPLE}")
    cells = {p.key: p.column(column) for p in pairs}
    if any(v is None for v in cells.values()):
        names = [c for c, _ in pairs[0].columns] if pairs else []
        raise DataError(f"'{rule}': the manifest has no '{column}' column (its text columns: "
                        f"{', '.join(names) or 'none'})", file=manifest, key=GROUP_KEY,
                        fix=f"add a '{column}' column after 'label', or name an existing one")
    empty = sorted(k for k, v in cells.items() if not v)
    if empty:
        raise DataError(f"scene '{empty[0]}' has an empty '{column}' cell"
                        + (f" ({len(empty)} scenes do)" if len(empty) > 1 else ""),
                        file=manifest, key=GROUP_KEY,
                        fix=f"give every row a '{column}' value")
    return {k: str(v) for k, v in cells.items()}


def assign_group_splits(groups: dict[str, str], val: float, test: float, seed: int,
                        rule: str = "data.split.group") -> dict[str, str]:
    """Map each scene key of ``groups`` (``{key: group id}``) to 'train', 'val' or 'test',
    whole groups at a time.

    The rule: the group ids, sorted, are shuffled by ``seed`` (so the split depends only on
    the groups and the seed, never on file order). The fractions apply to *images*: target
    ``round(fraction * images)`` each. Test is filled first, then val: walking the groups in
    shuffled order, a group joins the split when it brings the split's image count strictly
    closer to its target (a group too large is skipped and a later, smaller one may fit).
    A non-zero split that took no group gets the smallest group left (the first in shuffled
    order among equals). Train keeps the rest, and always >= 1 group; each non-zero split gets
    >= 1 group, so there must be ``1 + (val > 0) + (test > 0)`` groups or more: fewer is a
    :class:`DataError` naming ``rule`` and the fix.
    """
    sizes = Counter(groups.values())
    ids = sorted(sizes)
    n = sum(sizes.values())
    needs = ["train"] + [s for s, f in (("val", val), ("test", test)) if f > 0]
    if len(ids) < len(needs) and n:
        shown = ", ".join(f"'{g}'" for g in ids[:3]) + (" ..." if len(ids) > 3 else "")
        raise DataError(f"'{rule}' gives {len(ids)} group{'s' * (len(ids) != 1)} ({shown}) but "
                        f"{', '.join(needs[:-1])} and {needs[-1]} need one each", key=GROUP_KEY,
                        fix="lower data.split.val / data.split.test (0 drops that split), or "
                        "a group rule that gives more groups")
    rng = np.random.default_rng(seed)
    pool = [ids[i] for i in rng.permutation(len(ids))]
    of_group: dict[str, str] = {}
    for split, frac in (("test", test), ("val", val)):
        target = int(round(frac * n))
        later = 1 + (split == "test" and val > 0)  # groups the splits filled after this need
        taken: list[str] = []
        count = 0
        for g in pool:
            if len(pool) - len(taken) <= later:
                break
            if sizes[g] < 2 * (target - count):  # |count + size - target| < |count - target|
                taken.append(g)
                count += sizes[g]
        if frac > 0 and not taken and len(pool) > later:
            taken.append(min(pool, key=lambda g: sizes[g]))  # min keeps the first of equals
        of_group.update(dict.fromkeys(taken, split))
        pool = [g for g in pool if g not in of_group]
    of_group.update(dict.fromkeys(pool, "train"))
    return {k: of_group[g] for k, g in groups.items()}


def split_group_counts(groups: dict[str, str], splits: dict[str, str]) -> dict[str, int]:
    """``{split: number of distinct groups}`` over ``SPLITS`` (0 for an empty split)."""
    seen: dict[str, set[str]] = {s: set() for s in SPLITS}
    for key, gid in groups.items():
        seen[splits[key]].add(gid)
    return {s: len(v) for s, v in seen.items()}


def straddling_groups(groups: dict[str, str], splits: dict[str, str]) -> dict[str, list[str]]:
    """``{group id: its splits}`` for every group found in more than one split (leakage);
    empty when the split is honest."""
    found: dict[str, set[str]] = {}
    for key, gid in groups.items():
        found.setdefault(gid, set()).add(splits[key])
    return {g: sorted(s) for g, s in sorted(found.items()) if len(s) > 1}
