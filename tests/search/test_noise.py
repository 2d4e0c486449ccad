"""The noise of a recorded table: hand-made tables with known answers (no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raygym.search.noise import noise_floor
from raygym.search.replay import GroundTruth


def test_noise_floor_on_a_table_with_a_known_answer() -> None:
    per = np.array([[0.8, 0.6], [0.65, 0.65], [0.1, 0.1]])  # A lucky/unlucky, B steady, C poor
    truth = GroundTruth(scores=per.mean(axis=1), epochs=np.ones(3), ranks=np.array([1, 2, 3]),
                        best=0.7, grid_epochs=3.0, mode="max", per_seed=per)
    noise = noise_floor(truth, draws=20_000)
    assert noise["run_sd"] == pytest.approx(math.sqrt(0.02 / 3))
    assert noise["mean_se"] == pytest.approx(math.sqrt(0.02 / 3) / math.sqrt(2))
    assert noise["within_se"] == 2  # B (0.65) is within one SE (0.058) of A (0.70)
    # A stays best unless both resampled seeds are its 0.6 (1 in 4)
    assert noise["boot_same"] == pytest.approx(0.75, abs=0.02)
    assert noise["boot_best"][2] == pytest.approx(0.8)
    # one run each: A's 0.8 wins (A is the best) or its 0.6 loses to B (not within 0.01)
    assert noise["single_within"] == pytest.approx(0.5, abs=0.02)
    assert noise["single_top3"] == 1.0
    # seeds split 1 vs 1: seed 0 picks A (judged 0.6 against B's 0.65), seed 1 picks B
    # (judged 0.65 against A's 0.8): 0.05 and 0.15 below, never within 0.01
    assert noise["split_gap"] == pytest.approx(-0.10)
    assert noise["split_within"] == 0.0
    assert noise["split_top3"] == 3.0


def test_seed_splits_confirm_a_leader_that_every_seed_names() -> None:
    # D leads on every seed; E and F trade 2nd and 3rd place, G is never in the top 3
    per = np.array([[0.9, 0.9, 0.9], [0.5, 0.7, 0.6], [0.6, 0.5, 0.7], [0.0, 0.1, 0.0]])
    truth = GroundTruth(scores=per.mean(axis=1), epochs=np.ones(4),
                        ranks=np.array([1, 2, 3, 4]), best=0.9, grid_epochs=4.0, mode="max",
                        per_seed=per)
    noise = noise_floor(truth, draws=100)
    assert noise["split_gap"] == 0.0 and noise["split_within"] == 1.0  # 2 vs 1, 3 splits
    assert noise["split_top3"] == 3.0


def test_table_noise_needs_two_seeds_and_a_score_to_maximise() -> None:
    from raygym.search.noise import table_noise

    per = np.array([[0.9, 0.8], [0.5, 0.6]])

    def truth(per_seed: np.ndarray, mode: str = "max") -> GroundTruth:
        return GroundTruth(scores=per_seed.mean(axis=1), epochs=np.ones(2),
                           ranks=np.array([1, 2]), best=0.85, grid_epochs=2.0, mode=mode,
                           per_seed=per_seed)

    assert table_noise(truth(per[:, :1])) is None  # one seed: no spread to measure
    assert table_noise(truth(per, mode="min")) is None
    noise = table_noise(truth(per))
    assert noise is not None and noise["split_within"] == 1.0
    assert noise["run_sd"] == pytest.approx(math.sqrt(0.01 / 2))  # 4 x 0.05^2 over 2 x (2 - 1)
