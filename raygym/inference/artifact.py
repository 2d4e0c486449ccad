"""The exported model: one folder that alone is enough to predict later, without Ray.

``ARTIFACT/``: ``model.safetensors`` (weights; never pickle), ``config.yaml`` (the resolved
experiment), ``model_card.json`` (architecture, bands, classes, input size, standardisation,
scores, dataset) and ``checksums.json`` (SHA-256 of the other files). The checksums guard the
artifact's *integrity* (a damaged or partly copied file is refused), not its authenticity; the
files are read once and parsed from the very bytes that were hashed.

An smp architecture's artifact also holds smp's ``config.json`` (its constructor arguments and
``_model_class``), so ``segmentation_models_pytorch.from_pretrained(ARTIFACT)`` loads it: smp
reads that file and the same ``model.safetensors`` (its state dict keys are smp's own). Gym
networks are not smp models and get no ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from raygym.atomic import replace_dir
from raygym.config import ExperimentConfig, dump_yaml, validate_experiment
from raygym.errors import DataError, RaygymError
from raygym.train.metrics import json_safe

ARTIFACT_FORMAT = "raygym-model/1"
FILES = ("model.safetensors", "config.yaml", "model_card.json")
SMP_CONFIG = "config.json"
"""smp's ``from_pretrained`` config, beside :data:`FILES` for smp architectures only."""


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

    @property
    def training_scale(self) -> float | None:
        """The median factor by which prepare resized the training scenes (output px per
        source px, per side; < 1 shrank); None where the card does not say (older models)."""
        return self._dataset_median("train_scale")

    @property
    def training_gsd_m(self) -> float | None:
        """The median ground sample distance (metres per pixel, after prepare's resize) of
        the training scenes, where they were all GeoTIFFs in a projected CRS; else None."""
        return self._dataset_median("train_gsd_m")

    def _dataset_median(self, key: str) -> float | None:
        median = (self.dataset.get(key) or {}).get("median")
        return float(median) if median is not None else None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_artifact_dir(path: Path) -> bool:
    """A folder raygym exported a model to (its card names raygym's artifact format), even
    if damaged since: the one kind of folder :func:`export_artifact` replaces."""
    try:
        card = json.loads((path / "model_card.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and str(card.get("format", "")).startswith("raygym-model/")


def export_artifact(out: Path, model: nn.Module, config: ExperimentConfig, *, in_channels: int,
                    classes: list[str], metrics: dict[str, Any], dataset: dict[str, Any],
                    training: dict[str, Any] | None = None,
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the artifact folder atomically (temp folder, then rename over any old one)."""
    from safetensors.torch import save_file

    core = model.module if hasattr(model, "module") else model
    sd = state_dict if state_dict is not None else core.state_dict()
    # Self-contained: pretrained encoder weights are inside model.safetensors already, so the
    # local file they came from is recorded, not required (it is absent on other machines).
    params = config.model.builder_kwargs()
    weights_source = params.pop("encoder_weights", None)
    if weights_source is not None:
        config = config.model_copy(
            update={"model": config.model.model_copy(update={"encoder_weights": None})})
        training = {**(training or {}), "encoder_weights_source": str(weights_source)}
    if config.train.init_weights is not None:
        from raygym.train.init_weights import provenance

        training = {**(training or {}), "init_weights": provenance(config)}
    tmp = out.with_name(f".{out.name}.tmp-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in sd.items()},
                  str(tmp / "model.safetensors"))
        dump_yaml(config, tmp / "config.yaml")
        card = ModelCard(
            name=config.name, arch=config.model.arch, model_params=params,
            in_channels=in_channels, classes=classes, target_size=list(config.data.target_size),
            metrics=json_safe(metrics),
            trainable_params=sum(p.numel() for p in core.parameters() if p.requires_grad),
            dataset=dataset, training=json_safe(training or {}),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        (tmp / "model_card.json").write_text(card.model_dump_json(indent=2))
        files = list(FILES)
        smp_config = _smp_config(core)
        if smp_config is not None:
            (tmp / SMP_CONFIG).write_text(smp_config)
            files.append(SMP_CONFIG)  # listed, so a damaged one is noticed; loading ignores it
        (tmp / "checksums.json").write_text(
            json.dumps({f: sha256_hex((tmp / f).read_bytes()) for f in files}, indent=2))
        replace_dir(tmp, out, owned=is_artifact_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _smp_config(model: nn.Module) -> str | None:
    """smp's ``config.json`` text for an smp model (what its ``save_pretrained`` writes:
    the constructor arguments plus ``_model_class``), or None for any other model.

    Not ``model.save_pretrained``: it would write a second copy of the weights. An smp model
    exists only once smp is imported, so a Gym model never pays for importing it here.
    """
    hub = sys.modules.get("segmentation_models_pytorch.base.hub_mixin")
    if hub is None or not isinstance(model, hub.SMPHubMixin):
        return None
    config = {**model.config, "_model_class": type(model).__name__}
    return json.dumps(config, sort_keys=True, indent=2)


def _verified_files(path: Path) -> dict[str, bytes]:
    """The artifact's files, read once each, after checking them against ``checksums.json``."""
    if not path.is_dir():
        raise DataError("model artifact folder not found", file=path,
                        fix="give a folder made by `raygym train` or `raygym search` (best/...)")
    missing = [f for f in (*FILES, "checksums.json") if not (path / f).is_file()]
    if missing:
        raise DataError(f"not a complete model artifact: missing {', '.join(missing)}", file=path,
                        fix="give a folder made by `raygym train` or `raygym search` (best/...)")
    try:
        sums = json.loads((path / "checksums.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError("checksums.json is damaged", file=path,
                        fix="export the model again") from None
    if not isinstance(sums, dict):
        raise DataError("checksums.json is damaged", file=path, fix="export the model again")
    files = {name: (path / name).read_bytes() for name in FILES}
    for name, data in files.items():
        if sums.get(name) != sha256_hex(data):
            raise DataError(f"{name} does not match its checksum: the artifact was modified "
                            "or damaged; refusing to load it", file=path,
                            fix="copy the whole folder again from where it was exported, or "
                            "export it again")
    return files


def _parse_card(path: Path, data: bytes) -> ModelCard:
    try:
        card = ModelCard.model_validate_json(data)
    except ValidationError as err:
        raise DataError(f"model_card.json is invalid: {err.errors()[0]['msg']}",
                        file=path, fix="export the model again") from None
    card.dataset = _with_dataset_facts(card.dataset)
    return card


# what model cards record of their dataset that older exports lack
_DATASET_FACTS = ("train_scale", "band_names")


def _with_dataset_facts(dataset: dict[str, Any]) -> dict[str, Any]:
    """A model card's ``dataset`` with what an older export did not record (the training
    resize factor, the band files' naming) read from its prepared dataset, where that is still
    on disk unchanged (same ``config_hash``); as recorded otherwise."""
    if all(k in dataset for k in _DATASET_FACTS) or not dataset.get("path"):
        return dataset
    from raygym.data.dataset import read_card

    folder = Path(str(dataset["path"]))
    try:
        prepared = read_card(folder)
    except (RaygymError, OSError, ValueError):
        return dataset
    if prepared.config_hash != dataset.get("config_hash"):
        return dataset
    now = prepared.model_dataset(folder)
    return {**dataset, **{k: now[k] for k in _DATASET_FACTS if k not in dataset and k in now}}


def read_model_card(path: Path) -> ModelCard:
    """Check the artifact's files and checksums, then parse its card."""
    return _parse_card(path, _verified_files(path)["model_card.json"])


def read_weights(path: Path) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """(card, state dict on the CPU) of the artifact at ``path``, checksums verified; no
    model is built (``train.init_weights`` maps them onto another experiment's network)."""
    from safetensors.torch import load as load_safetensors

    files = _verified_files(path)
    return (_parse_card(path, files["model_card.json"]),
            load_safetensors(files["model.safetensors"]))


def load_artifact(path: Path, device: str | torch.device = "cpu"
                  ) -> tuple[nn.Module, ModelCard, ExperimentConfig]:
    """(model in eval mode with weights loaded, its card, its config). No Ray, no pickle."""
    import yaml
    from safetensors.torch import load as load_safetensors

    from raygym.models import build_model

    files = _verified_files(path)
    card = _parse_card(path, files["model_card.json"])
    raw = yaml.safe_load(files["config.yaml"].decode("utf-8"))
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict):
        raw["model"].pop("encoder_weights", None)  # older artifacts named a local file
    config = validate_experiment(raw, str(path / "config.yaml"))
    params = {k: v for k, v in card.model_params.items() if k != "encoder_weights"}
    model = build_model(card.arch, in_channels=card.in_channels, num_classes=card.num_classes,
                        **params)
    model.load_state_dict(load_safetensors(files["model.safetensors"]))
    model.to(device).eval()
    return model, card, config
