"""Gym network ports: parameter counts equal Keras', Keras padding, shapes, dropout, errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raygym.models.gym import (
    GymResUNet,
    GymUNet,
    SameConv2d,
    SimpleResUNet,
    SimpleUNet,
    keras_same_padding,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny networks: a second OpenMP thread only adds barrier waits, which on a busy shared
    machine cost a time slice per op (this module ~3x slower with 2 threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def bn_stat_count(model: nn.Module) -> int:
    """Keras' non-trainable BN moving mean + variance (two per channel)."""
    return sum(2 * m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))


FILTERS = (2, 4, 6, 8, 12)
# Keras model.summary() trainable counts for 3 bands, 4 classes (GYM_REFERENCE.md "Models").
EXPECTED = {
    ("unet", 7): (250_784, 1_001_788, 2_253_016, 4_004_468, 9_008_044),
    ("resunet", 7): (387_840, 1_548_572, 3_482_200, 6_188_724, 13_920_460),
    ("unet", 3): (46_624, 185_148, 415_576, 737_908, 1_658_284),
}
CLASSES = {"unet": GymUNet, "resunet": GymResUNet}
CASES = [
    pytest.param(arch, kernel, f, n, id=f"{arch}-k{kernel}-f{f}")
    for (arch, kernel), counts in EXPECTED.items()
    for f, n in zip(FILTERS, counts, strict=True)
]


@pytest.mark.parametrize(("arch", "kernel", "filters", "expected"), CASES)
def test_trainable_params_match_keras(arch: str, kernel: int, filters: int, expected: int) -> None:
    model = CLASSES[arch](in_channels=3, num_classes=4, filters=filters, kernel=kernel)
    assert trainable(model) == expected


@pytest.mark.parametrize("filters", [2, 8, 12])
def test_bn_statistics_match_keras_totals(filters: int) -> None:
    assert bn_stat_count(GymUNet(3, 4, filters, 7)) == 216 * filters
    assert bn_stat_count(GymResUNet(3, 4, filters, 7)) == 456 * filters


def test_keras_total_and_three_classes() -> None:
    unet = GymUNet(in_channels=3, num_classes=4, filters=8, kernel=7)
    assert trainable(unet) + bn_stat_count(unet) == 4_006_196  # Keras "Total params"
    assert trainable(GymUNet(in_channels=3, num_classes=3, filters=8, kernel=7)) == 4_004_451


@pytest.mark.parametrize(("cls", "gym_comment"), [(SimpleUNet, 242_812), (SimpleResUNet, 346_564)])
def test_simple_models_match_gym_counts(cls: type[nn.Module], gym_comment: int) -> None:
    """Gym's train script notes 242,812 / 346,564 Keras params (filters 8, 3 bands, 4 classes)
    from when the decoder used Conv2DTranspose(f, 2x2) (then concat f + f) instead of today's
    UpSampling2D (concat 2f + f). Per decoder level with f filters that swap adds
    4f^2 + f (simple_unet) or 3f^2 + f (simple_resunet: also its 1x1 shortcut shrinks)."""
    model = cls(in_channels=3, num_classes=4, filters=8)
    keras_total = trainable(model) + bn_stat_count(model)
    per_level = 4 if cls is SimpleUNet else 3
    deconv_delta = sum(per_level * f * f + f for f in (64, 32, 16, 8))
    assert keras_total + deconv_delta == gym_comment


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(256, 7, 1, (3, 3)), (256, 7, 2, (2, 3)), (256, 3, 2, (0, 1)), (256, 2, 1, (0, 1)),
     (256, 1, 2, (0, 0)), (7, 3, 2, (1, 1))],
)
def test_keras_same_padding(size: int, kernel: int, stride: int,
                            expected: tuple[int, int]) -> None:
    assert keras_same_padding(size, kernel, stride) == expected


def test_same_conv_pads_bottom_right_like_tensorflow() -> None:
    """Stride 2, kernel 3, even input: TF pads 0 top / 1 bottom, so output (0, 0) sees rows and
    columns 0..2 (PyTorch's symmetric padding=1 would see -1..1)."""
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    nn.init.ones_(conv.weight)
    x = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    y = conv(x)
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, 0, 0].item() == x[0, 0, :3, :3].sum().item()
    assert y[0, 0, 3, 3].item() == x[0, 0, 6:, 6:].sum().item()  # last row/col padded with 0
    # 2x2 stride 1: one pixel of padding on the bottom/right only, shape preserved
    conv2 = SameConv2d(1, 1, 2, bias=False)
    nn.init.ones_(conv2.weight)
    y2 = conv2(x)
    assert y2.shape == x.shape
    assert torch.equal(y2, F.conv2d(F.pad(x, (0, 1, 0, 1)), torch.ones(1, 1, 2, 2)))


@pytest.mark.parametrize("cls", [GymUNet, GymResUNet, SimpleUNet, SimpleResUNet])
@pytest.mark.parametrize("bands", [1, 4])
def test_forward_backward(cls: type[nn.Module], bands: int) -> None:
    torch.manual_seed(0)
    model = cls(in_channels=bands, num_classes=3, filters=2)
    x = torch.randn(2, bands, 32, 48)
    logits = model(x)
    assert logits.shape == (2, 3, 32, 48)
    logits.logsumexp(1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_eval_is_deterministic_and_train_applies_dropout() -> None:
    torch.manual_seed(0)
    model = GymUNet(3, 2, filters=2, kernel=3, dropout=0.5)
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("size", [(63, 64), (64, 72), (8, 8)])
def test_size_not_divisible_by_16_is_a_clear_error(size: tuple[int, int]) -> None:
    model = GymUNet(3, 2, filters=2, kernel=3)
    with pytest.raises(ValueError, match="divisible by 16") as info:
        model(torch.zeros(1, 3, *size))
    assert f"{size[0]}x{size[1]}" in str(info.value)


def test_wrong_band_count_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="3 input channels"):
        GymResUNet(3, 2, filters=2)(torch.zeros(1, 4, 32, 32))


def test_invalid_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="stride must be 2"):
        GymUNet(3, 2, stride=1)
    with pytest.raises(ValueError, match="dropout_type"):
        GymUNet(3, 2, dropout_type="gaussian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 1"):
        GymUNet(3, 0)


def test_dropout_schedule_follows_gym() -> None:
    """dropout on e2, +change for e3, e4, e5 and the bridge; decoder mirrors it only when
    dropout_on_upsampling; the stem never drops."""
    m = GymUNet(3, 2, filters=2, dropout=0.1, dropout_change_per_layer=0.05,
                dropout_type="spatial", dropout_on_upsampling=True)
    probs = {n: mod.p for n, mod in m.named_modules() if isinstance(mod, nn.Dropout2d)}
    expected = {"e2": 0.1, "e3": 0.15, "e4": 0.2, "e5": 0.25, "b1": 0.25, "b2": 0.25,
                "d4": 0.25, "d3": 0.2, "d2": 0.15, "d1": 0.1}
    assert probs.keys() == {f"{k}.drop" for k in expected}
    for k, p in expected.items():
        assert probs[f"{k}.drop"] == pytest.approx(p)
    plain = GymResUNet(3, 2, filters=2, dropout=0.1)
    dropped = {n.split(".")[0] for n, mod in plain.named_modules() if isinstance(mod, nn.Dropout)}
    assert dropped == {"e2", "e3", "e4", "e5", "b1", "b2"}  # standard dropout, encoder only


def test_keras_batchnorm_and_init() -> None:
    m = GymUNet(3, 2, filters=2)
    bn = m.e2.bn
    assert bn.momentum == pytest.approx(0.01) and bn.eps == pytest.approx(1e-3)
    assert all(torch.count_nonzero(c.bias) == 0 for c in m.modules() if isinstance(c, SameConv2d))
    w = m.b1.conv.weight  # glorot uniform bound sqrt(6 / (fan_in + fan_out))
    fan_in, fan_out = w.shape[1] * 49, w.shape[0] * 49
    assert w.abs().max() <= (6 / (fan_in + fan_out)) ** 0.5
