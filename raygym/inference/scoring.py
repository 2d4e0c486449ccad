"""A loaded model and what is done with it: score prepared samples, average softmax.

:class:`LoadedModel` is an artifact ready to run (weights verified, on its device, in its
memory layout and precision); :func:`score_batch` scores prepared samples with it
(``evaluate``, ``report``), :func:`ensemble_softmax` averages the softmax of several,
weighted (``predict``). All go through :func:`raygym.inference.runtime.logits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raygym.config import ExperimentConfig
from raygym.data.batch import to_batch
from raygym.inference.artifact import ModelCard, load_artifact
from raygym.inference.runtime import (
    logits,
    resolve_device,
    resolve_precision,
    to_layout,
    uses_channels_last,
)


@dataclass
class LoadedModel:
    """A model artifact in eval mode on ``device``, with how it must be run."""

    model: nn.Module
    card: ModelCard
    config: ExperimentConfig
    device: torch.device
    precision: str
    channels_last: bool
    path: Path | None = None

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` standardized float32 -> ``(B, K, H, W)`` float32 logits on the
        model's device."""
        return logits(self.model, x, device=self.device, precision=self.precision,
                      channels_last=self.channels_last)


def load_model(path: Path, *, device: str | torch.device = "auto", precision: str = "fp32"
               ) -> LoadedModel:
    """Load the artifact at ``path`` (checksums verified, no pickle) ready to run.

    Args:
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda:0``...
        precision: ``fp32`` | ``bf16-mixed`` | ``fp16-mixed`` | ``auto``.
    """
    dev = resolve_device(device)
    model, card, config = load_artifact(path, dev)
    channels_last = uses_channels_last(config)
    to_layout(model, channels_last)
    return LoadedModel(model, card, config, dev, resolve_precision(precision, dev),
                       channels_last, path)


@dataclass
class EnsembleScorer:
    """Several loaded models scored as one, as ``raygym predict --top-k`` maps with them:
    :meth:`logits` are the log of their weighted mean softmax (:func:`ensemble_softmax`), so
    the argmax is the ensemble's map and a softmax of them gives back its probabilities."""

    models: Sequence[LoadedModel]
    weights: Sequence[float]

    @property
    def card(self) -> ModelCard:
        """The first member's card (members share classes and bands)."""
        return self.models[0].card

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` standardized float32 -> ``(B, K, H, W)`` float32 log-probabilities
        on the CPU (a probability of 0 becomes log 1e-12: finite, so the KLD stays finite)."""
        probs = ensemble_softmax(self.models, x, weights=self.weights)
        return torch.log(probs.clamp_min(1e-12))


def score_batch(loaded: LoadedModel | EnsembleScorer, images: np.ndarray, labels: np.ndarray,
                valid_hw: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Score a batch of prepared samples, image by image, with a model or an ensemble.

    Args:
        images: ``(B, H, W, C)`` raw uint8/uint16 samples; labels: ``(B, H, W)`` uint8 class
            ids (the card's ``ignore_index`` = padding / unlabelled); valid_hw: ``(B, 2)`` int.

    Returns:
        ``(cms (B, K, K) int64, kld_sum (B,) float64, n_valid (B,) int64,
        pred (B, H, W) uint8)``: per image confusion matrix, summed per-pixel KLD and number of
        valid pixels (the KLD of a set is ``kld_sum.sum() / n_valid.sum()``), and argmax.
    """
    from raygym.train.metrics import ConfusionMatrix

    k = loaded.card.num_classes
    x, y = to_batch(images, labels, valid_hw)
    out = loaded.logits(x).cpu()
    b = len(images)
    cms = np.zeros((b, k, k), np.int64)
    kld = np.zeros(b, np.float64)
    n_valid = np.zeros(b, np.int64)
    for i in range(b):
        cm = ConfusionMatrix(k, ignore_index=loaded.card.ignore_index)
        cm.update(out[i:i + 1], y[i:i + 1])
        cms[i] = cm.matrix.numpy()
        kld[i], n = (float(v) for v in cm.kld_state)
        n_valid[i] = int(n)
    pred = out.argmax(dim=1).to(torch.uint8).numpy()
    return cms, kld, n_valid, pred


@torch.no_grad()
def ensemble_softmax(models: Sequence[LoadedModel], x: torch.Tensor, *, tta: bool = False,
                     weights: Sequence[float] | None = None) -> torch.Tensor:
    """Weighted average softmax of ``models`` on ``x`` (each first averaged over its flips
    with ``tta``).

    Args:
        models: loaded models sharing bands and classes.
        x: ``(B, C, H, W)`` float32 standardized input.
        tta: average identity, horizontal, vertical and both flips (outputs un-flipped).
        weights: one per model, > 0 (normalised to sum 1; None: equal). The rule that picks
            them for ``raygym predict --top-k`` is :mod:`raygym.predict.ensemble`'s.

    Returns:
        ``(B, K, H, W)`` float32 probabilities on the CPU.
    """
    w = [1.0] * len(models) if weights is None else [float(v) for v in weights]
    if len(w) != len(models) or not models or min(w) <= 0:
        raise ValueError(f"need one positive weight per model, got {w} for {len(models)}")
    flips: list[tuple[int, ...]] = [()] + ([(-1,), (-2,), (-2, -1)] if tta else [])
    total: torch.Tensor | None = None
    for loaded, share in zip(models, w, strict=True):
        xd = x.to(loaded.device)
        member: torch.Tensor | None = None
        for dims in flips:
            p = torch.softmax(loaded.logits(torch.flip(xd, dims) if dims else xd), dim=1)
            if dims:
                p = torch.flip(p, dims)
            p = p.cpu()
            member = p if member is None else member + p
        assert member is not None
        member = member * (share / (sum(w) * len(flips)))
        total = member if total is None else total + member
    assert total is not None
    return total.contiguous()
