"""The experiment schema: one YAML file, parsed and validated once at the edge.

Sections: ``data``, ``model``, ``loss``, ``train``, ``search``, ``resources``, ``mlflow``.
Any scalar may instead be a search distribution:
:func:`raygym.search.space_config.load_experiment` reads a file, resolves its relative paths
(modules below the CLI only ever see absolute :class:`~pathlib.Path` objects), separates
the distributions into a search space and validates the rest here.

The sections live in the modules beside this one (``data``, ``training``, ``run``); every
name is importable from ``raygym.config`` (configurations pickled before the split load too).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from raygym.atomic import write_text_atomic
from raygym.config.base import IGNORE_INDEX, StrictModel, dump_yaml_text
from raygym.config.data import (
    AugmentConfig,
    ChipConfig,
    DataConfig,
    FolderSource,
    RasterLabels,
    SplitConfig,
    VectorLabels,
    parse_colour,
)
from raygym.config.run import MlflowConfig, ResourcesConfig, SearchConfig, TpeConfig
from raygym.config.training import LossConfig, ModelConfig, TrainConfig
from raygym.config_errors import KeyedError, format_validation_error
from raygym.models.spec import GYM_ARCHS, GYM_INPUT_MULTIPLE

__all__ = [
    "ANY_VALUE", "IGNORE_INDEX", "NAME_PATTERN", "NAME_RULE", "AugmentConfig", "ChipConfig", "DataConfig",
    "ExperimentConfig", "FolderSource", "LossConfig", "MlflowConfig", "ModelConfig", "ResourcesConfig", "SearchConfig",
    "SplitConfig", "StrictModel", "TpeConfig", "TrainConfig", "RasterLabels", "VectorLabels", "dotted", "dump_yaml",
    "parse_colour", "validate_experiment",
]


# an experiment's or a run's name names folders (results/<name>, runs/<name>): no path in it
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit: it names a folder"


class ExperimentConfig(StrictModel):
    """One experiment: what ``prepare``, ``train`` and ``search`` all read."""

    name: str = Field("experiment", pattern=NAME_PATTERN, description=NAME_RULE)
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)

    @model_validator(mode="after")
    def _default_grace_period(self) -> ExperimentConfig:
        if self.search.grace_period is None:
            # the first epoch at the full learning rate, never the first epoch: scores while
            # it ramps up rank nothing, and with BatchNorm statistics recomputed the next
            # epoch ranks as the final score does (bench/RESULTS.md, twenty-second session)
            t = self.train
            ramp = t.rampup_epochs if t.lr_schedule in ("gym", "cosine") else 0
            grace = max(2, ramp + 1)
            self.search.grace_period = max(1, min(grace, t.max_epochs))
        return self

    @model_validator(mode="after")
    def _encoder_scale_has_weights_to_keep(self) -> ExperimentConfig:
        if (self.train.encoder_lr_scale < 1 and self.train.init_weights is None
                and self.model.encoder_weights is None):
            raise KeyedError("train.encoder_lr_scale", (
                f"is {self.train.encoder_lr_scale:g}, but the encoder starts from fresh "
                "weights, which it would keep (or learn slowly) (fix: start from a model, "
                "train.init_weights, or a pretrained encoder, model.encoder_weights; or "
                "remove it)"))
        return self

    @model_validator(mode="after")
    def _one_weight_per_class(self) -> ExperimentConfig:
        weights, classes = self.loss.class_weights, self.data.classes
        if isinstance(weights, list) and len(weights) != len(classes):
            raise KeyedError("loss.class_weights", (
                f"has {len(weights)} weights but data.classes names {len(classes)} classes "
                f"({', '.join(classes)}) (fix: one weight per class in that order, or `auto`)"))
        return self

    @model_validator(mode="after")
    def _size_fits_model(self) -> ExperimentConfig:
        if self.model.arch in GYM_ARCHS:
            multiple = GYM_INPUT_MULTIPLE
        else:
            from raygym.models import requires_multiple_of

            multiple = requires_multiple_of(self.model.arch,
                                            encoder_depth=self.model.encoder_depth)
        h, w = self.data.target_size
        if h % multiple or w % multiple:
            up = [math.ceil(v / multiple) * multiple for v in (h, w)]
            raise ValueError(
                f"data.target_size {[h, w]} must be divisible by {multiple} for model "
                f"'{self.model.arch}' (try {up})"
            )
        return self

    def to_yaml_dict(self) -> dict[str, Any]:
        """JSON/YAML-safe nested dict (paths as strings) that round-trips through the schema."""
        return json.loads(self.model_dump_json())

    def fingerprint(self, *sections: str, leaving_out: Mapping[str, Any] | None = None) -> str:
        """Short hash of the named sections (all when none), for cache and card keys;
        ``leaving_out``: ``{dotted key: value}``, each key hashed as if absent while it holds
        that value (:data:`ANY_VALUE`: always)."""
        d = self.to_yaml_dict()
        for key, value in (leaving_out or {}).items():
            *parents, last = key.split(".")
            node = d
            for part in parents:
                node = node.get(part, {})
            if last in node and (value is ANY_VALUE or node[last] == value):
                del node[last]
        picked = {s: d[s] for s in sections} if sections else d
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


ANY_VALUE = object()
"""For :meth:`ExperimentConfig.fingerprint`'s ``leaving_out``: whatever the key holds."""


def dotted(sections: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections -> ``{"train.max_lr": 0.0001, ...}``; lists and empty mappings stay
    one value."""
    out: dict[str, Any] = {}
    for key, value in sections.items():
        if isinstance(value, Mapping) and value:
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_values(old: Mapping[str, str], new: Mapping[str, str], most: int = 3) -> str:
    """``data.split.val 0.2 -> 0.5; ...`` for every key whose shown value differs (a key one
    side lacks shows ``null``), sorted, the first ``most`` then "and N more"; "" when none."""
    changed = [f"{k} {old.get(k, 'null')} -> {new.get(k, 'null')}"
               for k in sorted(set(old) | set(new)) if old.get(k, "null") != new.get(k, "null")]
    more = f" and {len(changed) - most} more" if len(changed) > most else ""
    return "; ".join(changed[:most]) + more


def validate_experiment(raw: dict[str, Any], file: str = "<config>") -> ExperimentConfig:
    """Validate a raw dict (no distributions) into an :class:`ExperimentConfig`."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise format_validation_error(err, file, ExperimentConfig) from None


def dump_yaml(config: ExperimentConfig, path: Path) -> None:
    """Write the resolved config atomically (temp file, then rename)."""
    write_text_atomic(path, dump_yaml_text(config.to_yaml_dict()))
