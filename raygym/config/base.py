"""What every section of the experiment schema shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

IGNORE_INDEX = 255


class StrictModel(BaseModel):
    """A schema section: unknown keys, NaN and inf are refused, assignments re-validated."""

    # no NaN / inf: `max_lr: .inf` would pass `gt=0` and fail in every trial instead
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
