"""Seeded train / val / test split by source image, made before any augmentation."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def assign_splits(keys: list[str], val: float, test: float, seed: int) -> dict[str, str]:
    """Map each source key to 'train', 'val' or 'test'.

    The permutation depends only on the sorted keys and ``seed``, so the same folder always
    splits the same way. Non-zero fractions get at least one image when there are >= 3 images,
    and train always keeps at least one.
    """
    ordered = sorted(keys)
    n = len(ordered)
    rng = np.random.default_rng(seed)
    perm = [ordered[i] for i in rng.permutation(n)]

    def count(frac: float) -> int:
        k = int(round(frac * n))
        return max(k, 1) if frac > 0 and n >= 3 else k

    n_test, n_val = count(test), count(val)
    while n_test + n_val >= n and (n_test or n_val):  # keep >= 1 for training
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    out = {k: "test" for k in perm[:n_test]}
    out.update({k: "val" for k in perm[n_test:n_test + n_val]})
    out.update({k: "train" for k in perm[n_test + n_val:]})
    return out
