"""Where and how a model runs: device, precision (autocast) and memory layout.

One forward path (:func:`logits`) for the training step, validation, evaluation and
prediction, so a model is never run in a layout or precision its siblings do not use.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from raygym.config import ExperimentConfig


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: the first CUDA GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast where the hardware runs it natively, else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "fp16-mixed"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return "bf16-mixed" if native else "fp32"


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of ``precision`` (``fp32``: none)."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def uses_channels_last(config: ExperimentConfig) -> bool:
    """NHWC memory layout: asked for (``train.channels_last``) and a gym network (the smp
    encoders gain nothing from it on CPU)."""
    return bool(config.train.channels_last and config.model.is_gym)


def to_layout(model: nn.Module, channels_last: bool) -> nn.Module:
    """``model`` with its weights in the NHWC layout when ``channels_last`` (in place)."""
    return model.to(memory_format=torch.channels_last) if channels_last else model


def logits(model: nn.Module, x: torch.Tensor, *, device: torch.device, precision: str = "fp32",
           channels_last: bool = False) -> torch.Tensor:
    """Run ``model`` on ``x`` as it was trained to run.

    Args:
        model: ``(B, C, H, W) -> (B, K, H, W)`` logits, on ``device``.
        x: ``(B, C, H, W)`` float32 standardized input, any device.
        precision: ``fp32`` | ``bf16-mixed`` | ``fp16-mixed`` (autocast).
        channels_last: feed NHWC (the model's weights must be in that layout too).

    Returns:
        ``(B, K, H, W)`` float32 logits on ``device`` (gradients kept: callers choose
        ``no_grad``).
    """
    x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast_for(precision, device):
        out = model(x)
    return out.float()
