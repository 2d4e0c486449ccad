"""BatchNorm statistics recomputed for the weights being validated ("precise BN").

A BatchNorm layer validates with running averages of the batch statistics seen in training.
Those averages lag the weights: Keras' momentum (Gym's, 0.01 per step) keeps a quarter of the
layer's initial statistics after 140 steps, i.e. 20 epochs of a 56-image set at batch 8, and
while the learning rate is high they trail weights that move every step. A model that trains
well can then validate as one class (a validation loss of 1e7 at epoch 2 of the smoke search),
and the early epochs that a search scheduler judges rank nothing. Recomputing the statistics
with the epoch's final weights before each validation removes the lag ("PreciseBN": Wu &
Johnson, *Rethinking "Batch" in BatchNorm*, 2021). ``bench/RESULTS.md`` has the figures.

Plain PyTorch, no Ray. ``torch.optim.swa_utils.update_bn`` does the same pass but in training
mode, with dropout on; here only the BatchNorm layers see batch statistics, so the averages
describe the network that validates and predicts (dropout off).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from raygym.train.metrics import distributed

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
# images kept for the pass are the epoch's own input tensors: at most this much memory
SAMPLE_MAX_BYTES = 256 * 2**20


class EpochSample:
    """The first training batches of an epoch, up to ``max_images`` images and
    :data:`SAMPLE_MAX_BYTES` (an epoch's order is shuffled, so they are a random sample).

    ``add(x)`` keeps a reference to the batch ``x (B, C, H, W)`` (no copy) while room is left.
    """

    def __init__(self, max_images: int) -> None:
        self.max_images = max_images
        self.batches: list[torch.Tensor] = []
        self.images = 0
        self.bytes = 0

    def add(self, x: torch.Tensor) -> None:
        size = x.element_size() * x.nelement()
        if self.images >= self.max_images or self.bytes + size > SAMPLE_MAX_BYTES:
            return
        self.batches.append(x)
        self.images += len(x)
        self.bytes += size


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, BATCHNORMS) and m.track_running_stats]


def has_batchnorm(model: nn.Module) -> bool:
    return bool(batchnorm_layers(model))


def recompute_batchnorm_statistics(model: nn.Module, batches: Iterable[torch.Tensor],
                                   forward: Callable[[nn.Module, torch.Tensor], object]) -> int:
    """Set every BatchNorm layer's running mean and variance to the plain average of the
    statistics of ``batches`` under the current weights; returns the images seen here.

    ``forward(model, x)`` runs one batch as training runs it (device, precision, layout).
    The rest of the network is in eval mode (dropout off); the model's mode and each layer's
    momentum are restored. With no batches, nothing changes. Under DDP (a process group of
    more than one rank) every rank must call it at the same point: each rank's statistics are
    then the average over all ranks' batches (:func:`average_over_ranks`).
    """
    layers = batchnorm_layers(model)
    batches = list(batches)
    shared = distributed()
    if not layers or not (batches or shared):
        return 0
    seen = 0
    if batches:
        was_training = model.training
        momenta = [m.momentum for m in layers]
        model.eval()
        try:
            for m in layers:
                m.reset_running_stats()
                m.momentum = None  # PyTorch: a cumulative average, each batch weighed once
                m.train()
            with torch.no_grad():
                for x in batches:
                    forward(model, x)
                    seen += len(x)
        finally:
            for m, momentum in zip(layers, momenta, strict=True):
                m.momentum = momentum
            model.train(was_training)
    if shared:
        average_over_ranks(layers, len(batches))
    return seen


def average_over_ranks(layers: list[nn.Module], batches_here: int) -> None:
    """Give every rank the statistics one process would compute over all ranks' batches.

    Each rank's running mean and variance are averages over its ``batches_here`` batches, each
    batch weighed once; their batch-weighted average over the ranks (one all-reduce, float64)
    is then exactly the single-process average. Without it each DDP rank would validate with
    statistics of its own share, and the kept model (rank 0's) would not be the one whose
    scores were reported. A rank with no batches contributes nothing; if no rank has any,
    nothing changes.
    """
    stats = [s for m in layers for s in (m.running_mean, m.running_var)]
    flat = torch.cat([s.detach().double().flatten() for s in stats])
    # zeros, not 0 x its statistics: a rank's untouched NaN statistics would poison the sum
    weighted = flat * batches_here if batches_here else torch.zeros_like(flat)
    packed = torch.cat([weighted, weighted.new_tensor([float(batches_here)])])
    torch.distributed.all_reduce(packed)
    total = float(packed[-1])
    if total == 0:
        return
    _unpack(packed[:-1] / total, stats)
    for m in layers:
        m.num_batches_tracked.fill_(int(total))


def share_rank0_buffers(model: nn.Module) -> None:
    """Give every DDP rank rank 0's buffers (BatchNorm running statistics and counts), as
    DDP's forward would before validating; every rank must call it at the same point.

    Validation runs the bare module (DDP's forward is a collective that a rank with fewer
    validation batches would not join), so without it each rank would validate with the
    statistics of its own last training batches, not the kept model's (rank 0's).
    """
    buffers = [b for b in model.buffers() if b.numel()]
    if not buffers:
        return
    flat = torch.cat([b.detach().double().flatten() for b in buffers])  # exact for int64 counts
    torch.distributed.broadcast(flat, src=0)
    _unpack(flat, buffers)


def _unpack(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy ``flat`` (the tensors' values concatenated, float64) back into ``tensors``, each
    in its own shape and dtype."""
    offset = 0
    with torch.no_grad():
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
