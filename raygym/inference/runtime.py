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

DEVICES = ("auto", "cpu", "cuda", "mps")
"""What ``resources.device`` names (``cuda:N`` picks one GPU)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: the first CUDA GPU, else Apple's GPU (MPS), else the CPU.

    An explicit ``cuda`` / ``mps`` that this machine lacks raises a ``RuntimeError`` naming it
    (rather than failing later inside the first forward pass).
    """
    name = str(device)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA GPU here "
                           f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")
    if dev.type == "mps" and not mps_available():
        raise RuntimeError(f"device {name!r} asked for, but Apple's MPS backend is not "
                           "available here (it needs macOS on Apple silicon)")
    return dev


def mps_available() -> bool:
    """Apple's Metal backend is built into this torch and usable on this machine."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def explain_precision(precision: str, device: torch.device) -> tuple[str, str]:
    """``(precision, why)``: what ``precision`` (possibly ``auto``) resolves to on ``device``,
    and a one-line reason a user can act on."""
    if precision != "auto":
        return precision, "set in the config (train.precision)"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"{torch.cuda.get_device_name(device)} runs bf16 natively"
        return "fp16-mixed", (f"{torch.cuda.get_device_name(device)} has no native bf16: "
                              "fp16 autocast with loss scaling")
    if device.type == "mps":
        # bf16 on Metal needs macOS 14; before that fp16 is the GPU's fast half precision
        if torch.backends.mps.is_macos_or_newer(14, 0):
            return "bf16-mixed", "Apple GPU on macOS >= 14 runs bf16"
        return "fp16-mixed", "Apple GPU before macOS 14: fp16 autocast (no bf16)"
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    if native:
        return "bf16-mixed", "this CPU runs bf16 natively (AVX512-BF16 / AMX): ~2x fp32"
    return "fp32", ("this CPU has no native bf16 (it would be emulated, slower than fp32); "
                    "set train.precision: bf16-mixed to force it")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast where the hardware runs it natively, fp16 on GPUs without
    it, else fp32 (:func:`explain_precision` says why)."""
    return explain_precision(precision, device)[0]


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
