"""The ``model``, ``loss`` and ``train`` sections: which network, which loss, how it is
optimised."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from raygym.config.base import StrictModel
from raygym.config_errors import KeyedError
from raygym.models.spec import GYM_ARCHS, GymParams, SmpParams
from raygym.train.loss_spec import LOSS_NAMES


# -------------------------------------------------------------------------------------- model
class _Arch(StrictModel):
    """``model.arch``, the first key of the section (pydantic orders inherited fields first)."""

    arch: str = "gym_resunet"

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value in GYM_ARCHS:  # no torch/smp import: config errors come back at once
            return value
        from raygym.models import list_models

        names = list_models()
        if value not in names:
            hint = difflib.get_close_matches(value, names, n=1)
            did = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ValueError(f"unknown model '{value}'{did}; valid: {', '.join(names)}")
        return value


class ModelConfig(SmpParams, GymParams, _Arch):
    """Architecture by registry name (``raygym models`` lists them) and its builder's
    keywords: the fields of :class:`~raygym.models.spec.GymParams` (Gym networks) and
    :class:`~raygym.models.spec.SmpParams` (smp architectures)."""

    @property
    def is_gym(self) -> bool:
        return self.arch in GYM_ARCHS

    def builder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`raygym.models.build_model`: the fields of this
        family that the arch's constructor names (``simple_*`` nets take no ``stride``)."""
        if self.is_gym:
            from raygym.models import model_params  # torch: only on the way to a model

            named = set(model_params(self.arch)) & set(GymParams.model_fields)
            return self.model_dump(include=named)
        kwargs: dict[str, Any] = {"encoder": self.encoder, "encoder_depth": self.encoder_depth}
        if self.encoder_weights is not None:
            kwargs["encoder_weights"] = str(self.encoder_weights)
        return kwargs


# --------------------------------------------------------------------------------------- loss
class LossConfig(StrictModel):
    """A loss name (``dice``, ``cce``, ``kld``, ``focal``, ``tversky``, ``lovasz``) or a
    weighted sum ``{dice: 0.5, cce: 0.5}``; ``class_weights: auto`` uses Gym's
    ``1 - freq / sum(freq)`` from the prepared dataset's train pixel counts."""

    name: str | dict[str, float] = "dice"
    class_weights: Literal["auto"] | list[float] | None = None

    @field_validator("name")
    @classmethod
    def _known_losses(cls, value: str | dict[str, float]) -> str | dict[str, float]:
        names = [value] if isinstance(value, str) else list(value)
        for name in names:
            if name not in LOSS_NAMES:
                hint = difflib.get_close_matches(name, list(LOSS_NAMES), n=1)
                did = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ValueError(
                    f"unknown loss '{name}'{did}; valid: {', '.join(sorted(LOSS_NAMES))}"
                )
        if isinstance(value, dict):
            example = "(fix: give weights >= 0 that are not all 0, e.g. {dice: 0.5, cce: 0.5})"
            bad = [f"{n}: {w}" for n, w in value.items() if not (math.isfinite(w) and w >= 0)]
            if bad or not any(value.values()):
                what = f"weight {bad[0]} is not a number >= 0" if bad else "every weight is 0"
                raise ValueError(f"{what}: the weighted loss would not train {example}")
        return value

    @field_validator("class_weights")
    @classmethod
    def _usable_class_weights(cls, value: Any) -> Any:
        if isinstance(value, list):
            fix = "(fix: one weight >= 0 per class in the order of data.classes, or `auto`)"
            bad = [w for w in value if not (math.isfinite(w) and w >= 0)]
            if bad:
                raise ValueError(f"weight {bad[0]:g} is not a number >= 0 {fix}")
            if not any(value):
                raise ValueError(f"every weight is 0: no pixel would count {fix}")
        return value

    @model_validator(mode="after")
    def _weights_supported(self) -> LossConfig:
        names = [self.name] if isinstance(self.name, str) else list(self.name)
        if self.class_weights is not None and "lovasz" in names:
            raise KeyedError("loss.class_weights", "loss 'lovasz' takes no class weights "
                             "(fix: remove class_weights, or use dice, cce, kld, focal or "
                             "tversky)")
        return self

    @property
    def label(self) -> str:
        if isinstance(self.name, str):
            return self.name
        return "+".join(f"{w:g}*{n}" for n, w in self.name.items())


# -------------------------------------------------------------------------------------- train
class TrainConfig(StrictModel):
    """Optimisation: Adam, Gym's ramp/sustain/decay LR schedule, early stopping (on the
    validation loss, as Gym, or on a validation score: ``monitor``)."""

    batch_size: int = Field(8, ge=1)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(10, ge=1)
    monitor: str = Field(
        "val_loss", description="what early stopping watches: training stops after patience "
        "epochs without improvement of it, and the weights of its best epoch are kept; "
        "val_loss (Gym's rule) or a validation score the loop reports, e.g. val_mean_iou "
        "(higher is better)")
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0.0)
    lr_schedule: Literal["gym", "cosine", "constant"] = "gym"
    start_lr: float = Field(1e-7, gt=0.0)
    min_lr: float = Field(1e-7, gt=0.0)
    max_lr: float = Field(1e-4, gt=0.0)
    rampup_epochs: int = Field(20, ge=0)
    sustain_epochs: int = Field(0, ge=0)
    exp_decay: float = Field(0.9, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1,
                      description="the seed of the weights, the shuffling and the dropout")
    precision: Literal["auto", "fp32", "bf16-mixed", "fp16-mixed"] = "auto"
    channels_last: bool = True
    precise_bn_images: int = Field(
        128, ge=0, description="before each validation, BatchNorm's statistics are "
        "recomputed from up to this many of the epoch's training images with the epoch's final "
        "weights (dropout off; at most 256 MiB of them; DDP workers average theirs); 0: validate with the running averages "
        "of training, as Keras and Gym do (they lag the weights when an epoch has few steps)")
    num_threads: int | None = Field(None, ge=1)
    shuffle: bool = True
    output_dir: Path = Path("runs")
    init_weights: Path | None = Field(
        None, description="a model artifact (runs/<name>/best, results/<name>/best/rank1_*) "
        "whose weights training starts from instead of fresh ones: fine-tuning a model on "
        "another site's labels. It must be this experiment's network (model.arch and layer "
        "sizes) and take the dataset's bands; where the classes differ, the head keeps the "
        "rows of the classes both name (matched by name) and the others start fresh")
    encoder_lr_scale: float = Field(
        1.0, ge=0.0, le=1.0, description="the encoder's learning rate as a share of the "
        "schedule's, for fine-tuning (train.init_weights) or pretrained encoders "
        "(model.encoder_weights): 0 keeps its weights as loaded (its BatchNorm statistics "
        "still follow the new images), 0.1 lets it adapt slowly while the decoder and head "
        "learn at the full rate")
    encoder_lr_epochs: int | None = Field(
        None, ge=1, description="the first epochs encoder_lr_scale applies to, then the "
        "encoder learns at the full rate too (null: the whole run)")
    checkpoint_keep: int = Field(2, ge=1)

    @field_validator("monitor")
    @classmethod
    def _monitor_is_reported(cls, value: str) -> str:
        from raygym.train.contract import MONITORS

        if value not in MONITORS:
            hint = difflib.get_close_matches(value, MONITORS, n=1)
            raise ValueError(f"early stopping cannot watch '{value}'"
                             + (f" (did you mean '{hint[0]}'?)" if hint else "")
                             + "; valid: " + ", ".join(MONITORS))
        return value

    @model_validator(mode="after")
    def _lr_order(self) -> TrainConfig:
        if self.min_lr > self.max_lr:
            raise ValueError(f"min_lr ({self.min_lr:g}) must be <= max_lr ({self.max_lr:g})")
        return self

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        # no torch import: the rule lives beside the schedules that need it
        from raygym.train.schedule import warmup_problem

        problem = warmup_problem(self.lr_schedule, self.max_epochs, self.rampup_epochs)
        if problem:
            raise KeyedError("train.rampup_epochs", problem)
        return self
