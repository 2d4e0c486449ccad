"""Segmentation networks: Gym's own U-Nets (PyTorch ports) and smp architectures by name.

All models map ``(B, C, H, W)`` float input to ``(B, K, H, W)`` logits.
"""

from typing import Any

from raygym.models import registry as _registry
from raygym.models.gym import GymResUNet, GymUNet, SimpleResUNet, SimpleUNet
from raygym.models.registry import (
    GYM_MODELS,
    build_model,
    freeze_unused_parameters,
    list_models,
    load_encoder_weights,
    min_input_size,
    model_params,
    requires_multiple_of,
)
from raygym.models.summary import LayerRow, ModelSummary, format_summary, model_summary

__all__ = [
    "GYM_MODELS",
    "MODEL_REGISTRY",
    "SMP_MODELS",
    "GymResUNet",
    "GymUNet",
    "LayerRow",
    "ModelSummary",
    "SimpleResUNet",
    "SimpleUNet",
    "build_model",
    "format_summary",
    "freeze_unused_parameters",
    "list_models",
    "load_encoder_weights",
    "min_input_size",
    "model_params",
    "model_summary",
    "requires_multiple_of",
]


def __getattr__(name: str) -> Any:
    # MODEL_REGISTRY and SMP_MODELS import smp: only when asked for (see registry)
    if name in ("MODEL_REGISTRY", "SMP_MODELS"):
        return getattr(_registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
