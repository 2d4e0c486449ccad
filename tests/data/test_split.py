"""Seeded train / val / test split by source key."""

from __future__ import annotations

import pytest

from raygym.data.split import SPLITS, assign_splits

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


def test_large_fractions_still_leave_train() -> None:
    keys = [f"k{i}" for i in range(5)]
    parts = _by_split(assign_splits(keys, 0.6, 0.39, seed=0))
    assert len(parts["train"]) >= 1 and len(parts["val"]) >= 1 and len(parts["test"]) >= 1


def test_zero_fractions_mean_all_train() -> None:
    assert set(assign_splits(KEYS, 0.0, 0.0, seed=0).values()) == {"train"}
    assert assign_splits([], 0.2, 0.1, seed=0) == {}
