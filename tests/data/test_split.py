"""Seeded train / val / test split by source key, and by whole groups (data.split.group)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from raygym.config import SplitConfig
from raygym.data.pairing import Pair
from raygym.data.split import (
    SPLITS,
    assign_group_splits,
    assign_splits,
    group_of,
    scene_groups,
    split_group_counts,
    straddling_groups,
)
from raygym.errors import DataError

KEYS = [f"scene_{i:03d}" for i in range(80)]


def _by_split(assignment: dict[str, str]) -> dict[str, set[str]]:
    return {s: {k for k, v in assignment.items() if v == s} for s in SPLITS}


def test_deterministic_and_order_independent() -> None:
    a = assign_splits(KEYS, 0.2, 0.1, seed=42)
    b = assign_splits(list(reversed(KEYS)), 0.2, 0.1, seed=42)
    assert a == b


def test_every_key_in_exactly_one_split() -> None:
    out = assign_splits(KEYS, 0.2, 0.1, seed=1)
    assert set(out) == set(KEYS)
    parts = _by_split(out)
    assert set(out.values()) <= set(SPLITS)
    assert sum(len(p) for p in parts.values()) == len(KEYS)
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
    assert not (parts["val"] & parts["test"])


@pytest.mark.parametrize(("n", "val", "test"), [(80, 0.2, 0.1), (100, 0.15, 0.15),
                                                (10, 0.3, 0.0), (57, 0.25, 0.05)])
def test_fractions_respected(n, val, test) -> None:
    keys = [f"k{i}" for i in range(n)]
    parts = _by_split(assign_splits(keys, val, test, seed=3))
    assert len(parts["val"]) == round(val * n)
    assert len(parts["test"]) == round(test * n)
    assert len(parts["train"]) == n - round(val * n) - round(test * n)


def test_different_seed_different_split() -> None:
    a = _by_split(assign_splits(KEYS, 0.2, 0.1, seed=0))
    b = _by_split(assign_splits(KEYS, 0.2, 0.1, seed=1))
    assert a["val"] != b["val"] and a["test"] != b["test"]
    assert len(a["val"]) == len(b["val"])


def test_split_is_shuffled_not_by_name() -> None:
    parts = _by_split(assign_splits(KEYS, 0.2, 0.1, seed=42))
    assert parts["test"] != set(sorted(KEYS)[:8]) and parts["val"] != set(sorted(KEYS)[-16:])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_tiny_datasets_keep_training_data(n) -> None:
    keys = [f"k{i}" for i in range(n)]
    parts = _by_split(assign_splits(keys, 0.3, 0.3, seed=0))
    assert len(parts["train"]) >= 1
    assert sum(len(p) for p in parts.values()) == n
    if n >= 3:  # non-zero fractions get at least one image once there are three
        assert len(parts["val"]) >= 1 and len(parts["test"]) >= 1
    if n == 2:  # training needs val more than a test split
        assert len(parts["val"]) == 1 and not parts["test"]


@pytest.mark.parametrize(("val", "test"), [(0.1, 0.1), (0.2, 0.0), (0.3, 0.3), (0.2, 0.6)])
def test_two_scenes_give_train_and_val(val, test) -> None:
    # 2 scenes at val 0.1 had no val image, and training refused the dataset
    parts = _by_split(assign_splits(["a", "b"], val, test, seed=0))
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (1, 1, 0)


def test_large_fractions_still_leave_train() -> None:
    keys = [f"k{i}" for i in range(5)]
    parts = _by_split(assign_splits(keys, 0.6, 0.39, seed=0))
    assert len(parts["train"]) >= 1 and len(parts["val"]) >= 1 and len(parts["test"]) >= 1


def test_zero_fractions_mean_all_train() -> None:
    assert set(assign_splits(KEYS, 0.0, 0.0, seed=0).values()) == {"train"}
    assert assign_splits([], 0.2, 0.1, seed=0) == {}


def test_split_without_group_is_pinned() -> None:
    # The exact split every dataset prepared so far got: data.split.group must not move it.
    out = assign_splits(KEYS, 0.2, 0.1, seed=42)
    assert sorted(k for k, v in out.items() if v == "test") == [
        f"scene_{i:03d}" for i in (0, 25, 28, 33, 40, 51, 60, 61)]
    assert sorted(k for k, v in out.items() if v == "val") == [
        f"scene_{i:03d}" for i in (4, 7, 17, 18, 21, 24, 26, 27, 29, 37, 42, 50, 57, 71, 75, 79)]


# ------------------------------------------------------------------------------ by group
def _groups(sizes: list[int]) -> dict[str, str]:
    """``{key: group}`` with ``sizes[g]`` crops named ``site<g>_<i>`` in group ``site<g>``."""
    return {f"site{g:02d}_{i}": f"site{g:02d}" for g, n in enumerate(sizes) for i in range(n)}


def _uneven(n_groups: int = 60, seed: int = 0) -> dict[str, str]:
    return _groups([int(v) for v in np.random.default_rng(seed).integers(1, 7, n_groups)])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_no_group_in_two_splits(seed) -> None:
    groups = _uneven(seed=seed)
    out = assign_group_splits(groups, 0.2, 0.1, seed)
    assert set(out) == set(groups)
    assert straddling_groups(groups, out) == {}
    owner: dict[str, str] = {}
    for key, split in out.items():  # independently of straddling_groups
        assert owner.setdefault(groups[key], split) == split


@pytest.mark.parametrize(("val", "test"), [(0.2, 0.1), (0.15, 0.15), (0.3, 0.0), (0.1, 0.25)])
def test_group_fractions_near_the_image_targets(val, test) -> None:
    groups = _uneven()
    n, biggest = len(groups), max(Counter(groups.values()).values())
    images = Counter(assign_group_splits(groups, val, test, seed=5).values())
    for split, frac in (("val", val), ("test", test)):
        # greedy by groups: off the target by less than one group's images
        assert abs(images[split] - round(frac * n)) < biggest, (split, images)
    assert images["train"] == n - images["val"] - images["test"]


def test_group_split_is_deterministic_and_order_independent() -> None:
    groups = _uneven()
    a = assign_group_splits(groups, 0.2, 0.1, seed=7)
    shuffled = dict(sorted(groups.items(), key=lambda kv: hash(kv[0]) % 97, reverse=True))
    assert list(shuffled) != list(groups)
    assert assign_group_splits(shuffled, 0.2, 0.1, seed=7) == a
    b = assign_group_splits(groups, 0.2, 0.1, seed=8)
    assert {k for k, v in a.items() if v == "test"} != {k for k, v in b.items() if v == "test"}


def test_one_scene_per_group_is_the_split_by_image() -> None:
    # With singleton groups the greedy fill takes exactly round(fraction * n) images in the
    # seeded order, which is what assign_splits does.
    assert assign_group_splits({k: k for k in KEYS}, 0.2, 0.1, 42) == assign_splits(
        KEYS, 0.2, 0.1, 42)


def test_big_groups_still_give_every_split_one() -> None:
    # 3 groups of 10, 10 and 1: a 10% test target (3 images) fits no group by closeness;
    # each non-zero split still gets one, the smallest left, and train keeps one.
    groups = _groups([10, 10, 1])
    out = assign_group_splits(groups, 0.1, 0.1, seed=0)
    per = split_group_counts(groups, out)
    assert per == {"train": 1, "val": 1, "test": 1}
    assert out["site02_0"] == "test"  # the 1-image group: the smallest overshoot
    assert set(assign_group_splits(_groups([4, 4]), 0.3, 0.0, 0).values()) == {"train", "val"}
    assert set(assign_group_splits(_groups([4]), 0.0, 0.0, 0).values()) == {"train"}


@pytest.mark.parametrize(("sizes", "val", "test", "says"), [
    ([5], 0.2, 0.0, "gives 1 group ('site00') but train and val need one each"),
    ([5, 5], 0.2, 0.1, "gives 2 groups ('site00', 'site01') but train, val and test need"),
])
def test_too_few_groups_is_refused(sizes, val, test, says) -> None:
    with pytest.raises(DataError) as info:
        assign_group_splits(_groups(sizes), val, test, seed=0, rule=r"^(site\d+)_")
    assert says in info.value.message and r"'^(site\d+)_'" in info.value.message
    assert info.value.key == "data.split.group" and "data.split.val" in (info.value.fix or "")


def test_group_of_joins_captures_or_takes_the_match() -> None:
    assert group_of("S2A_T10SEG_20190125_3_7", re.compile(r"_(T\w{5})_(\d{8})_")) == \
        "T10SEG/20190125"
    assert group_of("tile07_3_4", re.compile(r"^tile\d+")) == "tile07"
    assert group_of("ab_1", re.compile(r"^(x)?(a)")) == "/a", "a group not taking part: empty"
    assert group_of("scene_3_4", re.compile(r"^(.*)_\d+_\d+$")) == "scene"
    assert group_of("scene", re.compile(r"^(.*)_\d+_\d+$")) is None
    assert group_of("scene_1_2", re.compile(r"^(x*)")) is None, "an empty id is no group"


def _pairs(keys: list[str], **columns: list[str]) -> list[Pair]:
    return [Pair(k, (Path(f"{k}.png"),), Path(f"{k}_label.png"),
                 tuple((c, v[i]) for c, v in columns.items())) for i, k in enumerate(keys)]


def test_scene_groups_by_regex_names_the_key_it_misses() -> None:
    keys = ["beach_0_0", "beach_0_1", "cliff_2_3", "odd"]
    with pytest.raises(DataError) as info:
        scene_groups(_pairs(keys), SplitConfig(group=r"^(.*)_\d+_\d+$"))
    assert r"scene key 'odd' does not match the group regex '^(.*)_\d+_\d+$'" in str(
        info.value)
    assert info.value.key == "data.split.group" and "<scene>_<row>_<col>" in info.value.fix
    assert scene_groups(_pairs(keys[:3]), SplitConfig(group=r"^(.*)_\d+_\d+$")) == {
        "beach_0_0": "beach", "beach_0_1": "beach", "cliff_2_3": "cliff"}
    assert scene_groups(_pairs(keys), SplitConfig()) is None


def test_scene_groups_by_manifest_column() -> None:
    split = SplitConfig(group="column:site")
    pairs = _pairs(["a", "b", "c"], site=["north", "north", "south"], date=["1", "2", "3"])
    manifest = Path("pairs.csv")
    assert scene_groups(pairs, split, manifest) == {"a": "north", "b": "north", "c": "south"}
    with pytest.raises(DataError, match="paired by file name") as info:
        scene_groups(pairs, split, None)
    assert "data.manifest" in (info.value.fix or "")
    with pytest.raises(DataError, match=r"no 'site' column \(its text columns: tile\)"):
        scene_groups(_pairs(["a"], tile=["t1"]), split, manifest)
    with pytest.raises(DataError, match="scene 'b' has an empty 'site' cell"):
        scene_groups(_pairs(["a", "b"], site=["north", ""]), split, manifest)
