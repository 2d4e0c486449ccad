"""Segmentation networks: Gym's own U-Nets (PyTorch ports) and smp architectures by name.

All models map ``(B, C, H, W)`` float input to ``(B, K, H, W)`` logits. The package imports
torch only when one of these names is first used, so :mod:`raygym.models.spec` (what the
builders accept) stays cheap to import for config validation; ``MODEL_REGISTRY`` and
``SMP_MODELS`` import smp as well (see :mod:`raygym.models.registry`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raygym.models.gym import GymResUNet, GymUNet, SimpleResUNet, SimpleUNet
    from raygym.models.registry import (
        GYM_MODELS,
        MODEL_REGISTRY,
        SMP_MODELS,
        build_model,
        encoder_parameter_names,
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
    "encoder_parameter_names",
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
    if name in __all__:  # the registry holds the networks too; the summary is on its own
        for home in ("registry", "summary"):
            module = importlib.import_module(f"raygym.models.{home}")
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
