"""Per-epoch learning-rate schedules as pure functions ``epoch -> lr``.

Gym sets an absolute learning rate at the start of every epoch (Keras' ``LearningRateScheduler``).
raygym does the same: build ``fn = build_lr_schedule(name, **params)`` once, then call
``set_lr(optimizer, fn(epoch))`` at the start of each epoch. Because the LR is a pure function of
the epoch number there is no scheduler state to checkpoint, and resuming at epoch e is exact.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the config imports warmup_problem: loading a YAML must not import torch
    import torch

__all__ = [
    "LR_SCALE",
    "SCHEDULES",
    "build_lr_schedule",
    "constant_lr",
    "cosine_lr",
    "parameter_groups",
    "ramp_sustain_decay_lr",
    "set_lr",
    "warmup_problem",
]


def _check_epoch(epoch: int) -> None:
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")


def _check_lr(**lrs: float) -> None:
    for name, value in lrs.items():
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")


def ramp_sustain_decay_lr(
    epoch: int,
    *,
    start_lr: float,
    min_lr: float,
    max_lr: float,
    rampup_epochs: int,
    sustain_epochs: int,
    exp_decay: float,
) -> float:
    """Gym's schedule: linear ramp, plateau, exponential decay towards ``min_lr``.

    For epoch e (from 0), R = ``rampup_epochs``, S = ``sustain_epochs``:

    * e < R: ``(max_lr - start_lr) / R * e + start_lr``
    * R <= e < R + S: ``max_lr``
    * otherwise: ``(max_lr - min_lr) * exp_decay ** (e - R - S) + min_lr``

    With start = min = 1e-7, max = 1e-4, R = 20, S = 0, decay 0.9: epoch 10 -> 5.0e-5,
    20 -> 1e-4, 30 -> 3.5e-5, 60 -> 1.6e-6.
    """
    _check_epoch(epoch)
    _check_lr(start_lr=start_lr, min_lr=min_lr, max_lr=max_lr)
    if rampup_epochs < 0 or sustain_epochs < 0:
        raise ValueError(
            f"rampup_epochs and sustain_epochs must be >= 0, got {rampup_epochs}, {sustain_epochs}"
        )
    if not 0 < exp_decay <= 1:
        raise ValueError(f"exp_decay must be in (0, 1], got {exp_decay}")
    if epoch < rampup_epochs:  # never true for rampup_epochs == 0: no division by zero
        return (max_lr - start_lr) / rampup_epochs * epoch + start_lr
    if epoch < rampup_epochs + sustain_epochs:
        return max_lr
    return (max_lr - min_lr) * exp_decay ** (epoch - rampup_epochs - sustain_epochs) + min_lr


def cosine_lr(
    epoch: int, *, max_lr: float, min_lr: float, max_epochs: int, warmup_epochs: int = 0
) -> float:
    """Linear warm-up then half-cosine from ``max_lr`` to ``min_lr``.

    * e < W (``warmup_epochs``): ``max_lr * (e + 1) / W`` (never 0, reaches max_lr at e = W - 1)
    * otherwise: ``min_lr + (max_lr - min_lr) * (1 + cos(pi * t)) / 2`` with
      ``t = min(1, (e - W) / max(1, max_epochs - W - 1))``, so the last epoch
      ``max_epochs - 1`` gets exactly ``min_lr`` and later epochs stay there.
    """
    _check_epoch(epoch)
    _check_lr(max_lr=max_lr, min_lr=min_lr)
    if max_epochs < 1 or not 0 <= warmup_epochs <= max_epochs:
        raise ValueError(
            f"need max_epochs >= 1 and 0 <= warmup_epochs <= max_epochs, got {max_epochs}, "
            f"{warmup_epochs}"
        )
    if epoch < warmup_epochs:
        return max_lr * (epoch + 1) / warmup_epochs
    t = min(1.0, (epoch - warmup_epochs) / max(1, max_epochs - warmup_epochs - 1))
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def constant_lr(epoch: int, *, lr: float) -> float:
    """The same ``lr`` every epoch."""
    _check_epoch(epoch)
    _check_lr(lr=lr)
    return lr


SCHEDULES: dict[str, Callable[..., float]] = {
    "ramp_sustain_decay": ramp_sustain_decay_lr,
    "gym": ramp_sustain_decay_lr,  # alias: Gym's only schedule
    "cosine": cosine_lr,
    "constant": constant_lr,
}
"""Schedule name -> function ``(epoch, **params) -> lr``."""


def build_lr_schedule(name: str, **params: float) -> Callable[[int], float]:
    """Bind ``params`` to the named schedule and return ``epoch -> lr``.

    The parameters are checked now (names, and values by evaluating epoch 0), so a bad config
    fails before training starts.

    Raises:
        ValueError: unknown schedule (the message lists valid ones), missing / unexpected
            parameters (the message lists the expected ones), or invalid values.
    """
    key = name.strip().lower()
    if key not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {name!r}; valid schedules: "
                         f"{', '.join(sorted(SCHEDULES))}")
    fn = SCHEDULES[key]
    sig = inspect.signature(fn)
    try:
        sig.bind(0, **params)
    except TypeError as err:
        expected = [p for p in sig.parameters if p != "epoch"]
        raise ValueError(f"lr schedule {key!r}: {err}; expected parameters: "
                         f"{', '.join(expected)}") from None
    schedule = functools.partial(fn, **params)
    schedule(0)  # validates values (raises ValueError)
    return schedule


def warmup_problem(lr_schedule: str, max_epochs: int, rampup_epochs: int) -> str | None:
    """Why a warm-up of ``rampup_epochs`` (epochs) does not fit a run of ``max_epochs``
    (epochs) under ``lr_schedule`` (``train.lr_schedule``), with the fix; None when it fits.

    ``cosine`` needs ``rampup_epochs <= max_epochs`` (:func:`cosine_lr` raises otherwise, in
    every trial). ``gym`` runs with any ramp, but a ramp longer than the run never reaches
    ``max_lr``: the searched or configured peak is never used, so the same bound applies.
    ``constant`` has no warm-up.
    """
    if lr_schedule == "constant" or rampup_epochs <= max_epochs:
        return None
    shorter = max(1, max_epochs // 5)  # Gym's proportion: a 20-epoch ramp in 100 epochs
    return (f"rampup_epochs {rampup_epochs} is longer than max_epochs {max_epochs}: the "
            f"{lr_schedule} schedule's warm-up would not end before training does (fix: "
            f"set train.rampup_epochs to at most {max_epochs}, e.g. {shorter}, or "
            f"train.max_epochs to at least {rampup_epochs})")


LR_SCALE = "lr_scale"
"""A parameter group's key: its share of the schedule's learning rate (the encoder's,
``train.encoder_lr_scale``; see :func:`parameter_groups`)."""


def set_lr(optimizer: torch.optim.Optimizer, lr: float, *, scaled: bool = True) -> None:
    """Set ``lr`` on every parameter group (call at the start of each epoch); a group with an
    :data:`LR_SCALE` gets that share of it while ``scaled``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * (group.get(LR_SCALE, 1.0) if scaled else 1.0)


def parameter_groups(model: torch.nn.Module, encoder_lr_scale: float
                     ) -> list[dict[str, object]]:
    """The optimizer's parameter groups: one of every parameter, or, with an
    ``encoder_lr_scale`` below 1, the rest and then the encoder's (:data:`LR_SCALE` set).

    Raises:
        ValueError: a scale below 1 for a network whose encoder raygym does not know.
    """
    if encoder_lr_scale == 1.0:
        return [{"params": list(model.parameters())}]
    from raygym.models import encoder_parameter_names

    names = encoder_parameter_names(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no encoder raygym knows to scale")
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if n not in names]},
            {"params": [p for n, p in named if n in names], LR_SCALE: encoder_lr_scale}]
