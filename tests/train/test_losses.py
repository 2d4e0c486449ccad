"""Losses: hand-computed values, ignore-index handling, registry, gradients, autocast."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from raygym.train.losses import (
    IGNORE_INDEX,
    LOSS_REGISTRY,
    WeightedSumLoss,
    build_loss,
    cce_loss,
    dice_loss,
    gym_class_weights,
    kld_loss,
)

ALL_LOSSES = sorted(LOSS_REGISTRY)


def _known_case() -> tuple[torch.Tensor, torch.Tensor]:
    """1 x 1 x 3 image, 2 classes: p = (0.75, 0.25) | (0.5, 0.5) | ignored; targets 0, 1, 255."""
    probs = torch.tensor([[0.75, 0.5, 0.9], [0.25, 0.5, 0.1]])  # (K, W)
    logits = probs.log().reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, IGNORE_INDEX]]])
    return logits, target


def _random_case(k: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 6, 5, generator=g)
    target = torch.randint(0, k, (2, 6, 5), generator=g)
    target[0, :2] = IGNORE_INDEX  # padding rows
    target[1, :, -1] = IGNORE_INDEX  # padding column
    return logits, target


# ---------------------------------------------------------------------------------------- dice
def test_dice_known_probabilities_exact() -> None:
    logits, target = _known_case()
    s = 1e-5
    # class 0: y = (1, 0), p = (0.75, 0.5): 2*0.75 / (1 + 1.25); class 1: y = (0, 1), p = (0.25, 0.5)
    dice0 = (2 * 0.75 + s) / (1 + 1.25 + s)
    dice1 = (2 * 0.5 + s) / (1 + 0.75 + s)
    expected = 1 - (dice0 + dice1) / 2
    assert dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)
    # without smoothing: 1 - (2/3 + 4/7) / 2 = 8/21
    assert dice_loss(logits, target).item() == pytest.approx(8 / 21, abs=1e-5)


def test_dice_weighted_exact() -> None:
    logits, target = _known_case()
    s = 1e-5
    dice0 = (2 * 0.75 + s) / (1 + 1.25 + s)
    dice1 = (2 * 0.5 + s) / (1 + 0.75 + s)
    # weights (3, 1) are normalised to (0.75, 0.25)
    expected = 1 - (0.75 * dice0 + 0.25 * dice1)
    assert dice_loss(logits, target, class_weights=[3.0, 1.0]).item() == pytest.approx(
        expected, abs=1e-6
    )
    module = build_loss("dice", 2, class_weights=[3.0, 1.0])
    assert module(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_dice_perfect_prediction_is_zero() -> None:
    target = torch.tensor([[[0, 1, 2], [2, 1, IGNORE_INDEX]]])
    safe = target.clamp(max=2)
    logits = F.one_hot(safe, 3).permute(0, 3, 1, 2).float() * 40.0
    assert dice_loss(logits, target).item() < 1e-6
    # a wrong prediction is far from 0
    assert dice_loss(-logits, target).item() > 0.9


def test_gym_class_weights() -> None:
    assert gym_class_weights([30, 10]) == pytest.approx([0.25, 0.75])
    assert gym_class_weights([1, 1, 2, 0]) == pytest.approx([0.75, 0.75, 0.5, 1.0])
    with pytest.raises(ValueError, match="sum to 0"):
        gym_class_weights([0, 0])
    with pytest.raises(ValueError, match="only one class"):
        gym_class_weights([5])


# ----------------------------------------------------------------------------------- cce / kld
def test_cce_matches_torch_cross_entropy() -> None:
    logits, target = _random_case()
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    assert cce_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    w = [0.1, 0.2, 0.3, 0.4]
    expected_w = F.cross_entropy(logits, target, weight=torch.tensor(w), ignore_index=IGNORE_INDEX)
    assert cce_loss(logits, target, class_weights=w).item() == pytest.approx(
        expected_w.item(), rel=1e-6
    )
    assert build_loss("cat", 4)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_kld_hand_value_and_equals_cce_for_hard_labels() -> None:
    logits, target = _known_case()
    # KL(onehot || p) = -log p_true: mean of -log 0.75 and -log 0.5 over the 2 valid pixels
    expected = (-math.log(0.75) - math.log(0.5)) / 2
    assert kld_loss(logits, target).item() == pytest.approx(expected, abs=1e-5)

    # KL = CE - H(onehot) and H(onehot) = 0: equal up to Keras' eps clipping
    for seed in range(3):
        logits, target = _random_case(seed=seed)
        diff = kld_loss(logits, target) - cce_loss(logits, target)
        assert abs(diff.item()) < 1e-5
        w = [1.0, 2.0, 3.0, 4.0]
        diff_w = kld_loss(logits, target, class_weights=w) - cce_loss(logits, target, w)
        assert abs(diff_w.item()) < 1e-5


# ------------------------------------------------------------------------------- every loss
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_ignored_pixels_have_no_effect(name: str) -> None:
    loss_fn = build_loss(name, 4)
    logits, target = _random_case()
    ignored = (target == IGNORE_INDEX).unsqueeze(1).expand_as(logits)
    logits = logits.clone().requires_grad_(True)
    loss = loss_fn(logits, target)
    loss.backward()
    assert logits.grad is not None
    # gradient is exactly zero at ignored pixels, and non-zero elsewhere
    assert logits.grad[ignored].abs().max().item() == 0.0
    assert logits.grad[~ignored].abs().sum().item() > 0.0
    # arbitrary (even huge) scores at ignored pixels do not change the loss
    perturbed = logits.detach().clone()
    perturbed[ignored] = torch.randn(int(ignored.sum())) * 100.0
    assert loss_fn(perturbed, target).item() == pytest.approx(loss.item(), abs=1e-6)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_all_ignored_batch_gives_zero_not_nan(name: str) -> None:
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), IGNORE_INDEX)
    loss = build_loss(name, 3)(logits, target)
    assert loss.dim() == 0 and loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradients_flow_and_training_reduces_loss(name: str) -> None:
    torch.manual_seed(0)
    logits, target = _random_case(k=3, seed=1)
    param = torch.nn.Parameter(logits)
    loss_fn = build_loss(name, 3)
    opt = torch.optim.SGD([param], lr=0.5)
    first = loss_fn(param, target)
    for _ in range(20):
        opt.zero_grad()
        loss = loss_fn(param, target)
        loss.backward()
        assert param.grad is not None and torch.isfinite(param.grad).all()
        opt.step()
    assert loss_fn(param, target).item() < first.item()


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_bf16_autocast_computes_in_float32(name: str) -> None:
    logits, target = _random_case()
    loss_fn = build_loss(name, 4)
    ref = loss_fn(logits, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss_fn(logits.bfloat16(), target)
    assert out.dtype == torch.float32
    # only the bf16 rounding of the logits themselves differs
    assert out.item() == pytest.approx(ref.item(), rel=2e-2, abs=2e-3)


# -------------------------------------------------------------------------------- registry
def test_weighted_sum_spec() -> None:
    logits, target = _random_case()
    combo = build_loss({"Dice": 0.3, "cce": 0.7}, 4)
    assert isinstance(combo, WeightedSumLoss)
    expected = 0.3 * dice_loss(logits, target) + 0.7 * cce_loss(logits, target)
    assert combo(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    parts = combo.parts(logits, target)
    assert set(parts) == {"dice", "cce"}
    assert parts["dice"].item() == pytest.approx(dice_loss(logits, target).item(), rel=1e-6)


def test_unknown_loss_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'dise'.*dice.*lovasz"):
        build_loss("dise", 3)
    with pytest.raises(ValueError, match=r"unknown loss 'iou'.*valid losses"):
        build_loss({"dice": 1.0, "iou": 1.0}, 3)


def test_bad_specs_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty mapping"):
        build_loss({}, 3)
    with pytest.raises(ValueError, match=">= 0"):
        build_loss({"dice": -1.0}, 3)
    with pytest.raises(ValueError, match="at least one loss weight"):
        build_loss({"dice": 0.0}, 3)
    with pytest.raises(ValueError, match="2 entries, expected 3"):
        build_loss("dice", 3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="does not support class_weights"):
        build_loss("lovasz", 3, class_weights=[1.0, 1.0, 1.0])
    logits, target = _random_case(k=4)
    with pytest.raises(ValueError, match=r"expects logits \(B, 3, H, W\)"):
        build_loss("cce", 3)(logits, target)


def test_loss_names_without_torch_match_the_registry() -> None:
    """Configs are validated against the torch-free names; every name must build."""
    from raygym.train.loss_spec import LOSS_NAMES
    from raygym.train.losses import LOSS_REGISTRY

    assert set(LOSS_NAMES) == set(LOSS_REGISTRY)
