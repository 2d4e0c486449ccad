"""What the model builders accept, declared without torch: names, types, bounds and defaults.

:class:`GymParams` is the keyword signature of Gym's networks: the constructors in
:mod:`raygym.models.gym` take their defaults from :data:`GYM_DEFAULTS`, and the registry passes
a config's values on only for the keywords a constructor's signature names (``simple_*`` nets
take no ``stride``). :class:`SmpParams` holds the three keywords raygym adds to smp's own
constructors (``raygym.models.model_params`` lists the rest). :class:`raygym.config.ModelConfig`
inherits both, so validating an experiment never imports torch or smp (seconds of CPU), and
every key and default is written here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

GymArch = Literal["gym_unet", "gym_resunet", "simple_unet", "simple_resunet"]
GYM_ARCHS: tuple[str, ...] = get_args(GymArch)
DropoutType = Literal["standard", "spatial"]
# Stride-2 levels of every Gym network: H and W must be multiples of 2 ** GYM_LEVELS.
GYM_LEVELS = 4
GYM_INPUT_MULTIPLE = 2**GYM_LEVELS
DEFAULT_ENCODER = "resnet18"


class GymParams(BaseModel):
    """Hyperparameters of Gym's networks (their constructors' keywords beyond ``in_channels``,
    ``num_classes`` and the Keras BatchNorm constants)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    filters: int = Field(8, ge=1, le=512, description="channels of the first level (doubling "
                         "per level)")
    kernel: int = Field(7, ge=1, le=15, description="square convolution kernel, pixels")
    # The decoder upsamples x2 per level, so 2 is the only stride whose skips line up.
    stride: Literal[2] = Field(2, description="downsampling stride of the gym_* encoders")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    dropout_change_per_layer: float = Field(0.0, ge=0.0, lt=1.0)
    dropout_type: DropoutType = "standard"
    dropout_on_upsampling: bool = False


GYM_DEFAULTS = GymParams()


class SmpParams(BaseModel):
    """The keywords raygym gives every segmentation_models_pytorch architecture."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    encoder: str = DEFAULT_ENCODER
    encoder_depth: int = Field(5, ge=3, le=5)
    encoder_weights: Path | None = Field(
        None, description="a local weights file for the smp encoder; nothing is downloaded"
    )
