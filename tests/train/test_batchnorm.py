"""BatchNorm statistics recomputed for the current weights (``raygym.train.batchnorm``), plain
PyTorch on hand-made tensors; DDP over two real gloo processes on 127.0.0.1."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from raygym.train.batchnorm import (
    SAMPLE_MAX_BYTES,
    EpochSample,
    has_batchnorm,
    recompute_batchnorm_statistics,
)
from tests.ray_exposure import free_loopback_port


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


# ---------------------------------------------------------------------- distributed (gloo)
def _conv_bn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, momentum=0.01))


# unequal shares (3 batches and 1): the average must weigh batches, not ranks
RANK_BATCHES = {0: (3, 1), 1: (1, 2)}  # rank -> (batches, seed)


def _statistics_rank(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        model = _conv_bn()
        n, seed = RANK_BATCHES[rank]
        recompute_batchnorm_statistics(model, batches(n, seed), plain_forward)
        bn = model[1]
        torch.save({"mean": bn.running_mean, "var": bn.running_var,
                    "batches": bn.num_batches_tracked}, Path(out_dir) / f"{rank}.pt")
        dist.barrier()  # tear gloo down only when both ranks are done with it
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_ddp_ranks_share_the_statistics_of_all_their_batches(tmp_path: Path) -> None:
    """Two ranks end with identical statistics, equal to one process's pass over both
    ranks' batches: the model each rank validates is the model rank 0 keeps."""
    mp.spawn(_statistics_rank, args=(2, free_loopback_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1)]
    alone = _conv_bn()
    every_batch = [x for n, seed in RANK_BATCHES.values() for x in batches(n, seed)]
    recompute_batchnorm_statistics(alone, every_batch, plain_forward)
    bn = alone[1]
    for state in ranks:
        torch.testing.assert_close(state["mean"], bn.running_mean)
        torch.testing.assert_close(state["var"], bn.running_var)
        assert int(state["batches"]) == 4
    assert torch.equal(ranks[0]["mean"], ranks[1]["mean"])
    assert torch.equal(ranks[0]["var"], ranks[1]["var"])
