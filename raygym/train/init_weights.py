"""Start training from an exported model's weights (``train.init_weights``): a model of one
site fine-tuned on another's labels, or on a changed list of classes.

The experiment must build the same network as the artifact (architecture, layer sizes) with
as many bands. Only the head, the layer whose first dimension is the class count, may
differ: its row for each class of this experiment is the artifact's row of the class of the
same name, and a class the artifact does not name keeps its fresh (seeded) initialisation.
Plain PyTorch: the edge check (:func:`check_init_weights`, before Ray starts) and every
training run (:func:`load_init_weights`, from :func:`raygym.train.loop.fit` unless it resumes
from a checkpoint) take the same :func:`plan_init`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from raygym.errors import ConfigError

if TYPE_CHECKING:
    from raygym.config import ExperimentConfig
    from raygym.data.dataset import DatasetCard
    from raygym.inference.artifact import ModelCard

KEY = "train.init_weights"
# Model keys that change no weight's shape: a search may vary them from a starting model.
SHAPE_FREE_PARAMS = frozenset({"dropout", "dropout_change_per_layer", "dropout_type",
                               "dropout_on_upsampling", "encoder_weights"})


@dataclass(frozen=True)
class InitPlan:
    """How an artifact's state dict maps onto this experiment's network.

    ``head_rows``: for each head tensor (its first dimension is the class count), the
    artifact's row for each of this experiment's classes, or None for a class it lacks.
    Empty when both name the same classes in the same order (every tensor loads as it is).
    """

    summary: str
    head_rows: dict[str, list[int | None]] = field(default_factory=dict)


def network_shapes(config: ExperimentConfig, bands: int, num_classes: int
                   ) -> dict[str, torch.Size]:
    """The state dict's shapes of the network ``config`` builds for ``bands`` and
    ``num_classes``: on the meta device (no memory, no weights file read) where the network
    builds there, else on the CPU."""
    from raygym.models import build_model

    kwargs = {k: v for k, v in config.model.builder_kwargs().items() if k != "encoder_weights"}
    try:
        with torch.device("meta"):
            model = build_model(config.model.arch, in_channels=bands, num_classes=num_classes,
                                **kwargs)
    except (RuntimeError, NotImplementedError):  # e.g. an encoder that calls .item()
        model = build_model(config.model.arch, in_channels=bands, num_classes=num_classes,
                            **kwargs)
    return {k: v.shape for k, v in model.state_dict().items()}


def plan_init(config: ExperimentConfig, source: ModelCard,
              source_shapes: Mapping[str, Sequence[int]], classes: Sequence[str], bands: int,
              target_shapes: Mapping[str, torch.Size] | None = None) -> InitPlan:
    """Check that the artifact described by ``source`` (its card) and ``source_shapes``
    (its state dict's shapes) fits the network ``config`` builds for ``classes`` and
    ``bands``, and say how it loads; :class:`~raygym.errors.ConfigError` on ``train.init_weights``
    naming what differs and the fix. ``target_shapes``: the network's, where it is built."""
    where = f"the model at {config.train.init_weights}"
    if source.arch != config.model.arch:
        raise ConfigError(f"{where} is a {source.arch}; this experiment trains a "
                          f"{config.model.arch}", key=KEY,
                          fix=f"set model.arch: {source.arch} (and its layer sizes), or start "
                          "from a model of this architecture")
    if source.in_channels != bands:
        raise ConfigError(f"{where} takes {source.in_channels} band"
                          f"{'s' * (source.in_channels != 1)}; the prepared dataset has {bands}",
                          key=KEY, fix="give the dataset the model's bands (data.extra_bands), "
                          "or start from a model of this dataset's bands")
    same_classes = list(source.classes) == list(classes)
    target = dict(target_shapes or network_shapes(config, bands, len(classes)))
    head: set[str] = set()
    if not same_classes:
        probe = network_shapes(config, bands, len(classes) + 1)
        head = {k for k in target if k in probe and probe[k] != target[k]}
    for k in sorted(set(target) | set(source_shapes)):
        mine, theirs = target.get(k), source_shapes.get(k)
        fits = (mine is not None and theirs is not None and (
            tuple(mine) == tuple(theirs) if k not in head else
            tuple(mine[1:]) == tuple(theirs[1:]) and theirs[0] == len(source.classes)))
        if not fits:
            raise ConfigError(f"{where} has another network: {_first_difference(config, source)}"
                              f"{_layer_note(k, theirs, mine)}", key=KEY,
                              fix="give the model section the artifact's values (its "
                              "config.yaml), or start from a model of this network")
    if same_classes:
        return InitPlan(_summary(config, source, "every layer"))
    rows = [source.classes.index(c) if c in source.classes else None for c in classes]
    kept = [c for c, r in zip(classes, rows, strict=True) if r is not None]
    new = [c for c, r in zip(classes, rows, strict=True) if r is None]
    dropped = [c for c in source.classes if c not in classes]
    parts = [f"the head's classes kept: {', '.join(kept)}" if kept else "no class kept"]
    if new:
        parts.append(f"new (fresh head rows): {', '.join(new)}")
    if dropped:
        parts.append(f"dropped: {', '.join(dropped)}")
    if not new and not dropped:
        parts.append("reordered")
    return InitPlan(_summary(config, source, "every layer but the head; " + "; ".join(parts)),
                    {k: rows for k in sorted(head)})


def _first_difference(config: ExperimentConfig, source: ModelCard) -> str:
    here = config.model.builder_kwargs()
    for name in sorted(set(source.model_params) | set(here)):
        if name == "encoder_weights":
            continue
        if source.model_params.get(name) != here.get(name):
            return (f"model.{name} is {source.model_params.get(name)!r} there, "
                    f"{here.get(name)!r} here")
    return "its layers differ"


def _layer_note(key: str, theirs: Sequence[int] | None, mine: Sequence[int] | None) -> str:
    def shape(s: Sequence[int] | None) -> str:
        return "absent" if s is None else "x".join(str(v) for v in s)

    return f" (layer {key}: {shape(theirs)} there, {shape(mine)} here)"


def _summary(config: ExperimentConfig, source: ModelCard, what: str) -> str:
    score = source.metrics.get("val_mean_iou")
    scored = f", val mean IoU {score:.3f}" if isinstance(score, int | float) else ""
    return (f"starting from the weights of {config.train.init_weights} ({source.arch}"
            f"{scored}): {what}")


def check_init_weights(config: ExperimentConfig, card: DatasetCard) -> str | None:
    """At the edge, before Ray starts: the line that says what training starts from, or None
    without ``train.init_weights``; one-line errors for a missing or damaged artifact and for
    a network it does not fit."""
    if config.train.init_weights is None:
        return None
    source, state = _read(config)
    return plan_init(config, source, {k: v.shape for k, v in state.items()}, card.classes,
                     card.bands).summary


def load_init_weights(model: nn.Module, config: ExperimentConfig, card: DatasetCard) -> None:
    """Load ``train.init_weights`` into ``model`` (freshly initialised, seeded; not
    DDP-wrapped) as :func:`plan_init` says: a class the artifact lacks keeps its fresh head
    rows. Every DDP rank loads the same file, so the ranks start equal."""
    source, state = _read(config)
    fresh = model.state_dict()
    plan = plan_init(config, source, {k: v.shape for k, v in state.items()}, card.classes,
                     card.bands, target_shapes={k: v.shape for k, v in fresh.items()})
    for key, rows in plan.head_rows.items():
        mapped = fresh[key].detach().clone()
        for i, row in enumerate(rows):
            if row is not None:
                mapped[i] = state[key][row]
        state[key] = mapped
    model.load_state_dict(state)


def provenance(config: ExperimentConfig) -> dict[str, Any] | None:
    """What a model card records of the weights its training started from (path, the
    model's name and score, the weights' SHA-256), or None."""
    if config.train.init_weights is None:
        return None
    import json

    path = Path(config.train.init_weights)
    try:
        card = json.loads((path / "model_card.json").read_text())
        sums = json.loads((path / "checksums.json").read_text())
    except (OSError, ValueError):
        return {"path": str(path)}
    return {"path": str(path), "name": card.get("name"),
            "val_mean_iou": (card.get("metrics") or {}).get("val_mean_iou"),
            "weights_sha256": sums.get("model.safetensors")}


def _read(config: ExperimentConfig) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    from raygym.errors import RaygymError
    from raygym.inference.artifact import read_weights

    path = Path(str(config.train.init_weights))
    if not (path / "model_card.json").is_file() and (path / "best").is_dir():
        # a search's results: which of its models is the user's choice, fixed in the config
        from raygym.predict.predictor import resolve_models

        try:
            best = str(resolve_models(path, 1)[0])
        except RaygymError:
            best = f"{path}/best/rank1_<trial>"
        raise ConfigError(f"{path} is a search's results folder, not one model", key=KEY,
                          fix=f"name one of its models, e.g. {best}")
    try:
        return read_weights(path)
    except RaygymError as err:  # the artifact's own line, named as this key's
        err.key = err.key or KEY
        err.args = (err.format(),)
        raise
