"""BatchNorm statistics recomputed for the current weights (``raygym.train.batchnorm``), plain
PyTorch on hand-made tensors."""

from __future__ import annotations

import torch
from torch import nn

from raygym.train.batchnorm import (
    SAMPLE_MAX_BYTES,
    EpochSample,
    has_batchnorm,
    recompute_batchnorm_statistics,
)


def plain_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def batches(n: int = 4, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [3.0 + 2.0 * torch.randn(8, 2, 5, 5, generator=g) for _ in range(n)]


def test_statistics_are_the_plain_average_over_the_batches() -> None:
    bn = nn.BatchNorm2d(2, momentum=0.01)  # Keras' momentum: the running mean barely moves
    xs = batches()
    seen = recompute_batchnorm_statistics(bn, xs, plain_forward)
    assert seen == 32
    per_batch_mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in xs])
    per_batch_var = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in xs])
    torch.testing.assert_close(bn.running_mean, per_batch_mean.mean(0))
    torch.testing.assert_close(bn.running_var, per_batch_var.mean(0))


def test_dropout_is_off_while_the_statistics_are_taken() -> None:
    """Dropout before the layer would scale and zero inputs; the statistics must be those of
    the network that validates (dropout off)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.5), nn.BatchNorm2d(2))
    xs = batches()
    recompute_batchnorm_statistics(model, xs, plain_forward)
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm2d)
    torch.testing.assert_close(bn.running_mean,
                               torch.stack([x.mean(dim=(0, 2, 3)) for x in xs]).mean(0))


def test_mode_and_momentum_are_restored() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, momentum=0.01), nn.Dropout(0.1))
    for training in (True, False):
        model.train(training)
        recompute_batchnorm_statistics(model, batches(), plain_forward)
        assert all(m.training == training for m in model.modules())
        assert model[1].momentum == 0.01


def test_no_batches_change_nothing() -> None:
    bn = nn.BatchNorm2d(2)
    bn.running_mean.fill_(5.0)
    assert recompute_batchnorm_statistics(bn, [], plain_forward) == 0
    assert torch.all(bn.running_mean == 5.0)
    assert not has_batchnorm(nn.Conv2d(2, 2, 1))
    assert not has_batchnorm(nn.BatchNorm2d(2, track_running_stats=False))


def test_an_epoch_sample_stops_at_its_image_count_and_its_memory() -> None:
    sample = EpochSample(max_images=20)
    for x in batches(5):
        sample.add(x)
    assert sample.images == 24  # whole batches: 8, 16, then 24 >= 20 stops it
    assert len(sample.batches) == 3
    big = torch.zeros(1, 1, 1, SAMPLE_MAX_BYTES // 4 + 1)  # one byte-cap's worth and more
    capped = EpochSample(max_images=10**6)
    capped.add(big)
    assert capped.images == 0
    off = EpochSample(0)
    off.add(batches(1)[0])
    assert not off.batches
