"""Segmentation networks: Gym's own U-Nets (PyTorch ports) and smp architectures by name.

All models map ``(B, C, H, W)`` float input to ``(B, K, H, W)`` logits.
"""

from raygym.models.gym import GymResUNet, GymUNet, SimpleResUNet, SimpleUNet
from raygym.models.registry import (
    GYM_MODELS,
    MODEL_REGISTRY,
    SMP_MODELS,
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
