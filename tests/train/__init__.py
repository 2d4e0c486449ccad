"""Helpers shared by the training tests."""

from __future__ import annotations

from pathlib import Path


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
