"""raygym: Ray + PyTorch hyperparameter search for geoscientific image segmentation.

The Python API (see the README, "Using models elsewhere") is imported on first use, so
``import raygym`` loads neither torch nor Ray:

- ``load_model(path)`` -> :class:`raygym.inference.scoring.LoadedModel`
- ``predict_array(model, image)`` -> ``(labels (H, W) uint8, probs (K, H, W) float32)``
- ``predict_file(model, images, out, **options)`` -> :class:`raygym.predict.PredictResult`
- ``prepare_dataset(experiment)`` -> the dataset folder
- ``train_model(experiment, ...)`` -> the run folder (``best/``: the model)
- ``evaluate_model(model, split=...)`` -> :class:`raygym.evaluate.EvaluationResult`
- ``run_search(experiment, ...)`` -> the results folder
- ``read_leaderboard(results)`` -> one dict per trial, best first
- ``rehearse_search(experiment, table, searches=30)`` -> simulated searches' figures, per row
- ``Predictor``: a model (or top-k ensemble) kept loaded to predict many arrays
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# PyTorch's OpenMP threads (libgomp) spin at every barrier by default: when anything else holds
# a core, each op then waits out a time slice (a gym_unet step took 6.4 s instead of 2.2-3.9 s
# at load ~2.6 on 2 cores; the same 2.1-2.4 s either way on an idle machine). Passive threads
# block, as TensorFlow's pool does. libgomp reads this once, when torch loads, so it is set
# here, before any raygym module imports torch; Ray workers a local Ray starts inherit it.
# A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from raygym.api import (
        evaluate_model,
        load_model,
        predict_array,
        predict_file,
        prepare_dataset,
        read_leaderboard,
        rehearse_search,
        run_search,
        train_model,
    )
    from raygym.predict.predictor import Predictor

__version__ = "0.1.0"

__all__ = [
    "Predictor",
    "__version__",
    "evaluate_model",
    "load_model",
    "predict_array",
    "predict_file",
    "prepare_dataset",
    "read_leaderboard",
    "rehearse_search",
    "run_search",
    "train_model",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        home = "raygym.predict.predictor" if name == "Predictor" else "raygym.api"
        return getattr(importlib.import_module(home), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
