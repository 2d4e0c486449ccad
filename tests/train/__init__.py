"""Helpers shared by the training tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from raygym.config import ExperimentConfig, validate_experiment


def whole_checkpoint(directory: Path, epoch: int) -> Path:
    """A checkpoint as training writes it (weights, best weights, optimizer state with a step
    taken, state.json), at ``epoch``."""
    import torch
    from torch import nn

    from raygym.train.loop import FitState, save_checkpoint

    model = nn.Conv2d(3, 2, 1)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3, 4, 4)).sum().backward()
    optimizer.step()
    return save_checkpoint(directory, model, optimizer, FitState(epoch=epoch),
                           dict(model.state_dict()))


def cut_short(path: Path) -> None:
    """``path`` as a copy stopped half-way leaves it."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def make_config(base: dict[str, Any], model: dict[str, Any] | None = None,
                **train: Any) -> ExperimentConfig:
    """The experiment of ``base`` sections (the ``base_sections`` fixture) with a tiny
    gym_unet and a short constant-LR fp32 run; ``model`` / ``train`` keys override."""
    sections = copy.deepcopy(base)
    sections["model"] = {"arch": "gym_unet", "filters": 4, "kernel": 3, "dropout": 0.0,
                         **(model or {})}
    sections["train"] = {"batch_size": 8, "max_epochs": 3, "lr_schedule": "constant",
                         "max_lr": 3e-3, "precision": "fp32", "seed": 0, **train}
    return validate_experiment(sections)
