"""The exported model: one folder that alone is enough to predict later, without Ray.

``ARTIFACT/``: ``model.safetensors`` (weights; never pickle), ``config.yaml`` (the resolved
experiment), ``model_card.json`` (architecture, bands, classes, input size, standardisation,
scores, dataset) and ``checksums.json`` (SHA-256 of the other files: tampering is refused).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from raygym.atomic import replace_dir
from raygym.config import ExperimentConfig, dump_yaml, validate_experiment
from raygym.errors import DataError

ARTIFACT_FORMAT = "raygym-model/1"
FILES = ("model.safetensors", "config.yaml", "model_card.json")


class ModelCard(BaseModel):
    """What a model is, what it expects as input, and how well it scored."""

    format: str = ARTIFACT_FORMAT
    name: str
    arch: str
    model_params: dict[str, Any]
    in_channels: int
    classes: list[str]
    target_size: list[int]
    ignore_index: int = 255
    standardization: str = "per-image (x - mean) / max(std, 1/sqrt(h*w)) over valid pixels"
    metrics: dict[str, Any] = {}
    trainable_params: int = 0
    dataset: dict[str, Any] = {}
    training: dict[str, Any] = {}
    created: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_artifact(out: Path, model: nn.Module, config: ExperimentConfig, *, in_channels: int,
                    classes: list[str], metrics: dict[str, Any], dataset: dict[str, Any],
                    training: dict[str, Any] | None = None,
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the artifact folder atomically (temp folder, then rename over any old one)."""
    from safetensors.torch import save_file

    core = model.module if hasattr(model, "module") else model
    sd = state_dict if state_dict is not None else core.state_dict()
    tmp = out.with_name(f".{out.name}.tmp-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()},
                  str(tmp / "model.safetensors"))
        dump_yaml(config, tmp / "config.yaml")
        card = ModelCard(
            name=config.name, arch=config.model.arch, model_params=config.model.builder_kwargs(),
            in_channels=in_channels, classes=classes, target_size=list(config.data.target_size),
            metrics=_json_safe(metrics),
            trainable_params=sum(p.numel() for p in core.parameters() if p.requires_grad),
            dataset=dataset, training=_json_safe(training or {}),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        (tmp / "model_card.json").write_text(card.model_dump_json(indent=2))
        (tmp / "checksums.json").write_text(
            json.dumps({f: _sha256(tmp / f) for f in FILES}, indent=2))
        replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_model_card(path: Path) -> ModelCard:
    """Check the artifact's files and checksums, then parse its card."""
    if not path.is_dir():
        raise DataError("model artifact folder not found", file=path,
                        fix="give a folder made by `raygym train` or `raygym search` (best/...)")
    missing = [f for f in (*FILES, "checksums.json") if not (path / f).is_file()]
    if missing:
        raise DataError(f"not a complete model artifact: missing {', '.join(missing)}", file=path)
    try:
        sums = json.loads((path / "checksums.json").read_text())
    except json.JSONDecodeError:
        raise DataError("checksums.json is damaged", file=path) from None
    for name in FILES:
        if sums.get(name) != _sha256(path / name):
            raise DataError(f"{name} does not match its checksum: the artifact was modified "
                            "or damaged; refusing to load it", file=path)
    try:
        return ModelCard.model_validate_json((path / "model_card.json").read_text())
    except ValidationError as err:
        raise DataError(f"model_card.json is invalid: {err.errors()[0]['msg']}",
                        file=path) from None


def load_artifact(path: Path, device: str | torch.device = "cpu"
                  ) -> tuple[nn.Module, ModelCard, ExperimentConfig]:
    """(model in eval mode with weights loaded, its card, its config). No Ray, no pickle."""
    import yaml
    from safetensors.torch import load_file

    from raygym.models import build_model

    card = read_model_card(path)
    config = validate_experiment(yaml.safe_load((path / "config.yaml").read_text()),
                                 str(path / "config.yaml"))
    model = build_model(card.arch, in_channels=card.in_channels, num_classes=card.num_classes,
                        **card.model_params)
    model.load_state_dict(load_file(str(path / "model.safetensors"), device="cpu"))
    model.to(device).eval()
    return model, card, config


def _json_safe(value: Any) -> Any:
    """Recursively replace NaN/inf by None and numpy/torch scalars by Python numbers."""
    import math

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
