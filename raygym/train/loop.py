"""The training loop: plain PyTorch that a unit test calls without Ray.

:func:`fit` trains one model for up to ``train.max_epochs`` epochs with Gym's LR schedule,
early stopping on ``train.monitor`` (the validation loss by default; the best epoch's weights
restored), BatchNorm statistics recomputed before each validation (``train.precise_bn_images``,
:mod:`raygym.train.batchnorm`), a checkpoint per epoch, and one ``on_epoch`` call per epoch.
The Ray adapters (``ray_train.py``, ``search/trainable.py``) only choose where batches come
from and where reports and checkpoints go.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from raygym.allocator import keep_freed_memory
from raygym.config import IGNORE_INDEX, ExperimentConfig
from raygym.data.batch import Batch, to_batch
from raygym.data.dataset import DatasetCard, SplitArrays
from raygym.inference.runtime import (
    explain_precision,
    logits,
    resolve_device,
    to_layout,
    uses_channels_last,
)
from raygym.train.batchnorm import (
    EpochSample,
    has_batchnorm,
    recompute_batchnorm_statistics,
    share_rank0_buffers,
)
from raygym.train.contract import (
    DIVERGED,
    RUNNING,
    StopReason,
    kept_scores,
    monitored_sign,
    rung_scores,
)
from raygym.train.metrics import distributed
from raygym.train.prefetch import prefetch
from raygym.train.schedule import parameter_groups, set_lr
from raygym.train.throughput import ThroughputMeter, synchronize


class BatchSource(Protocol):
    """Where one worker's batches come from."""

    def train_batches(self, epoch: int) -> Iterator[Batch]: ...

    def val_batches(self) -> Iterator[Batch]: ...


# ---------------------------------------------------------------------------- batches
class OnlineAugmenter:
    """Per-epoch albumentations on top of the offline copies (``data.augment.online``)."""

    def __init__(self, config: ExperimentConfig) -> None:
        from raygym.data.augment import build_augmenter

        self.seed = config.train.seed
        self.aug = build_augmenter(**config.data.augment.augmenter_kwargs(),
                                   ignore_index=IGNORE_INDEX)

    def __call__(self, images: np.ndarray, labels: np.ndarray, epoch: int, offset: int
                 ) -> tuple[np.ndarray, np.ndarray]:
        from raygym.data.augment import augment_pair

        out_i, out_l = [], []
        for j, (img, lab) in enumerate(zip(images, labels, strict=True)):
            seed = zlib.crc32(f"{self.seed}/{epoch}/{offset + j}".encode())
            a, b = augment_pair(self.aug, img, lab, seed)
            out_i.append(a)
            out_l.append(b)
        return np.stack(out_i), np.stack(out_l)


@dataclass
class NumpyBatches:
    """Batches from in-memory splits; ``rank``/``world`` give each DDP worker its share.

    Every epoch is a new seeded permutation (Gym never shuffled); all ranks draw the same
    permutation and take every ``world``-th item, so shares never overlap.
    """

    train: SplitArrays | None
    val: SplitArrays | None
    batch_size: int
    seed: int = 0
    shuffle: bool = True
    rank: int = 0
    world: int = 1
    augment: OnlineAugmenter | None = None
    drop_last_single: bool = True

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        if self.train is None:
            return
        n = len(self.train)
        order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle
                 else np.arange(n))
        mine = order[self.rank::self.world]
        if self.world > 1:  # DDP needs the same number of steps on every rank
            mine = mine[: n // self.world]
        for start in range(0, len(mine), self.batch_size):
            idx = np.sort(mine[start:start + self.batch_size])
            if len(idx) == 1 and self.drop_last_single and len(mine) > 1:
                continue  # BatchNorm cannot train on a single image
            images, labels = self.train.images[idx], self.train.labels[idx]
            if self.augment is not None:
                images, labels = self.augment(images, labels, epoch, int(start))
            yield to_batch(images, labels, self.train.valid_hw[idx])

    def val_batches(self) -> Iterator[Batch]:
        if self.val is None:
            return
        idx_all = np.arange(len(self.val))[self.rank::self.world]
        for start in range(0, len(idx_all), self.batch_size):
            idx = idx_all[start:start + self.batch_size]
            yield to_batch(self.val.images[idx], self.val.labels[idx], self.val.valid_hw[idx])


# ------------------------------------------------------------------------ model + loss
def build_model_for(config: ExperimentConfig, bands: int, num_classes: int) -> nn.Module:
    from raygym.models import build_model

    return build_model(config.model.arch, in_channels=bands, num_classes=num_classes,
                       **config.model.builder_kwargs())


def build_loss_for(config: ExperimentConfig, card: DatasetCard) -> nn.Module:
    from raygym.train.losses import build_loss, gym_class_weights

    weights = config.loss.class_weights
    if weights == "auto":
        weights = gym_class_weights(card.pixel_counts("train"))
    elif weights is not None and len(weights) != card.num_classes:
        from raygym.errors import ConfigError

        raise ConfigError(f"has {len(weights)} weights but the dataset has "
                          f"{card.num_classes} classes", key="loss.class_weights")
    return build_loss(config.loss.name, card.num_classes, weights)


def lr_for_epoch(config: ExperimentConfig) -> Callable[[int], float]:
    from raygym.train.schedule import build_lr_schedule

    t = config.train
    if t.lr_schedule == "gym":
        return build_lr_schedule("gym", start_lr=t.start_lr, min_lr=t.min_lr, max_lr=t.max_lr,
                                 rampup_epochs=t.rampup_epochs, sustain_epochs=t.sustain_epochs,
                                 exp_decay=t.exp_decay)
    if t.lr_schedule == "cosine":
        return build_lr_schedule("cosine", max_lr=t.max_lr, min_lr=t.min_lr,
                                 max_epochs=t.max_epochs, warmup_epochs=t.rampup_epochs)
    return build_lr_schedule("constant", lr=t.max_lr)


# ------------------------------------------------------------------------------- state
@dataclass
class FitState:
    """Everything a resumed run needs besides the weights and the optimizer."""

    epoch: int = 0  # next epoch to run
    best_val_loss: float = math.inf  # the kept epoch's validation loss
    # the kept epoch's train.monitor, signed so that lower is better (monitored_sign)
    best_monitored: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    """How training ended (:data:`~raygym.train.contract.StopReason`)."""

    state: FitState
    stop_reason: StopReason
    best_state_dict: dict[str, torch.Tensor]
    precision: str
    seconds: float


def save_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: FitState, best_state_dict: dict[str, torch.Tensor]) -> Path:
    """Weights (safetensors), best weights, optimizer state and loop state, in ``directory``."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file(_cpu_state(model), str(directory / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in best_state_dict.items()},
              str(directory / "best.safetensors"))
    torch.save(optimizer.state_dict(), directory / "optimizer.pt")
    (directory / "state.json").write_text(json.dumps(state.__dict__, default=_json_default))
    return directory


def checkpoint_readable(directory: Path) -> bool:
    """Whether ``directory`` holds a whole checkpoint of :func:`save_checkpoint` (see
    :func:`_whole_checkpoint_epoch`)."""
    return _whole_checkpoint_epoch(directory) is not None


def newest_whole_checkpoint(folders: Iterable[Path]) -> Path | None:
    """The one of ``folders`` whose whole checkpoint holds the highest epoch; None if none is
    whole."""
    best: tuple[int, Path] | None = None
    for folder in folders:
        epoch = _whole_checkpoint_epoch(folder)
        if epoch is not None and (best is None or epoch > best[0]):
            best = (epoch, folder)
    return best[1] if best else None


def _whole_checkpoint_epoch(directory: Path) -> int | None:
    """The epoch in ``directory``'s ``state.json`` if the checkpoint there is whole: both weight
    files complete (their headers cover the file exactly) and, if present, an optimizer file
    whose every member passes its CRC; None otherwise.

    Tune copies a checkpoint's files into storage in parallel threads, so a driver or node
    killed mid-copy leaves a folder whose ``state.json`` may exist while it, or the weights
    beside it, are cut short (seen: an empty ``state.json``)."""
    import zipfile

    from safetensors import safe_open

    try:
        epoch = int(json.loads((directory / "state.json").read_text())["epoch"])
        for name in ("model.safetensors", "best.safetensors"):
            with safe_open(str(directory / name), framework="pt"):
                pass
        optimizer = directory / "optimizer.pt"
        if optimizer.exists():
            with zipfile.ZipFile(optimizer) as archive:
                if archive.testzip() is not None:
                    return None
    except Exception:  # noqa: BLE001 - whatever fails to read makes the checkpoint unusable
        return None
    return epoch


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None
                    ) -> tuple[FitState, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    if optimizer is not None and (directory / "optimizer.pt").exists():
        optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    saved = json.loads((directory / "state.json").read_text())
    # a checkpoint written before train.monitor existed watched the validation loss
    saved.setdefault("best_monitored", saved.get("best_val_loss", math.inf))
    state = FitState(**saved)
    best = load_file(str(directory / "best.safetensors"))
    return state, best


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    core = model.module if hasattr(model, "module") else model
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in core.state_dict().items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, float | np.floating) and not math.isfinite(float(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


# -------------------------------------------------------------------------------- loop
_SAID: set[str] = set()


def _say_once(message: str) -> None:
    """Print ``message`` once per process, from DDP rank 0 only (not once per trial epoch)."""
    if message in _SAID or (distributed() and torch.distributed.get_rank() != 0):
        return
    _SAID.add(message)
    print(f"raygym: {message}", flush=True)


def _finite_everywhere(loss: torch.Tensor) -> bool:
    """``loss`` is finite on this rank and on every other DDP rank.

    Under DDP every rank must take the same decision: a rank that stopped alone would leave the
    others waiting forever in the gradient all-reduce of ``backward()``.
    """
    bad = (~torch.isfinite(loss.detach())).to(torch.float32).reshape(1)
    if distributed():
        torch.distributed.all_reduce(bad)
    return not bool(bad.item())


def evaluate_model(model: nn.Module, batches: Iterator[Batch], loss_fn: nn.Module | None,
                   num_classes: int, device: torch.device, precision: str = "fp32",
                   channels_last: bool = False, class_names: list[str] | None = None
                   ) -> dict[str, Any]:
    """Loss and confusion-matrix metrics over *all* batches (all-reduced across DDP ranks)."""
    from raygym.train.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes, class_names=class_names)
    loss_sum = torch.zeros(2, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        for x, y in batches:
            y = y.to(device)
            out = logits(model, x, device=device, precision=precision,
                         channels_last=channels_last)
            if loss_fn is not None:
                loss_sum += torch.tensor([float(loss_fn(out, y)) * len(x), len(x)],
                                         dtype=torch.float64)
            cm.update(out, y)
    cm.all_reduce()
    if distributed():
        torch.distributed.all_reduce(loss_sum)
    metrics = cm.compute()
    metrics["loss"] = float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else math.nan
    return metrics


def _with_rung_scores(metrics: dict[str, Any], config: ExperimentConfig,
                      history: list[dict[str, Any]]) -> dict[str, Any]:
    """``metrics`` plus what the search's scheduler judges at a rung (``rung_scores`` over
    the search metric of every epoch in ``history``, the reported one last)."""
    values = [h.get(config.search.metric, math.nan) for h in history]
    return {**metrics, **rung_scores(config.search, values)}


def fit(config: ExperimentConfig, model: nn.Module, loss_fn: nn.Module, source: BatchSource,
        card: DatasetCard, *, device: torch.device | None = None,
        on_epoch: Callable[[dict[str, Any], Callable[[Path], Path]], None] | None = None,
        resume_from: Path | None = None) -> FitResult:
    """Train ``model`` (already on ``device``, possibly DDP-wrapped) until done.

    ``device=None``: ``resources.device`` (``auto``: CUDA, else MPS, else CPU), and the model
    is moved there.

    ``on_epoch(metrics, write_checkpoint)`` is called once per epoch on every rank; calling
    ``write_checkpoint(dir)`` saves the full resumable state into ``dir``. ``metrics`` is the
    flat dict of :mod:`raygym.train.contract` (``epoch``, ``lr``, ``train_loss``,
    ``val_loss``, ``val_mean_iou``, ``val_iou/<class>`` ..., ``best_*``, ``stop_reason``).
    """
    t = config.train
    if device is None:
        device = resolve_device(config.resources.device)
        model = model.to(device)
    if device.type == "cpu":
        # large activations reused, not page-faulted afresh every step (-12 % CPU per step)
        keep_freed_memory()
    precision, why = explain_precision(t.precision, device)
    _say_once(f"precision {precision} on {device.type}: {why}")
    meter = ThroughputMeter(device, precision)

    def layout(batch: Batch) -> Batch:
        """NHWC input made in the prefetch thread: ``logits`` then has no copy left to do."""
        x, y = batch
        return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y
    channels_last = uses_channels_last(config)
    model = to_layout(model, channels_last)
    core = model.module if hasattr(model, "module") else model
    opt_cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    # the encoder in a group of its own with train.encoder_lr_scale < 1 (fine-tuning)
    optimizer = opt_cls(parameter_groups(core, t.encoder_lr_scale), lr=t.start_lr,
                        weight_decay=t.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16-mixed")
    schedule = lr_for_epoch(config)
    if resume_from is None and t.init_weights is not None:  # a checkpoint replaces them all
        from raygym.train.init_weights import load_init_weights

        load_init_weights(core, config, card)
    state = FitState()
    best_state = _cpu_state(core)
    if resume_from is not None:
        state, best_state = load_checkpoint(resume_from, core, optimizer)
    started = time.perf_counter()
    # A checkpoint taken at the stopping epoch must not train one epoch more when restored.
    stop_reason: StopReason | Literal[""] = (
        "early-stopped" if state.bad_epochs >= t.patience else RUNNING)
    ended_before = resume_from is not None and (bool(stop_reason) or state.epoch >= t.max_epochs)

    def write_checkpoint(directory: Path) -> Path:
        return save_checkpoint(directory, core, optimizer, state, best_state)

    precise_bn = t.precise_bn_images > 0 and has_batchnorm(core)

    def forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return logits(module, x, device=device, precision=precision, channels_last=channels_last)

    while state.epoch < t.max_epochs and not stop_reason:
        epoch = state.epoch
        lr = schedule(epoch)
        set_lr(optimizer, lr, scaled=t.encoder_lr_epochs is None or epoch < t.encoder_lr_epochs)
        model.train()
        tick = time.perf_counter()
        loss_sum, n_images = 0.0, 0
        sample = EpochSample(t.precise_bn_images if precise_bn else 0)
        # the next batch is standardised (and laid out) by a thread while this one trains
        for x, y in prefetch(source.train_batches(epoch), prepare=layout):
            meter.observe(model, x)
            y = y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(logits(model, x, device=device, precision=precision,
                                  channels_last=channels_last), y)
            if not _finite_everywhere(loss):
                stop_reason = DIVERGED
                break
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += float(loss.detach()) * len(x)
            n_images += len(x)
            sample.add(x)
        synchronize(device)  # GPU work is queued: the epoch's time is when it has run
        train_seconds = time.perf_counter() - tick
        if stop_reason == DIVERGED:
            metrics = {"epoch": epoch + 1, "stop_reason": DIVERGED, "train_loss": math.nan,
                       "val_loss": math.nan, "lr": lr}
            if on_epoch:
                on_epoch(metrics, write_checkpoint)
            break
        # the statistics of the weights validated, not running averages that lag them
        if precise_bn:
            recompute_batchnorm_statistics(core, sample.batches, forward)
        elif distributed():
            share_rank0_buffers(core)  # validate with the statistics of the model kept
        sample = EpochSample(0)  # the batches' memory back before validation
        # the bare module: DDP's forward broadcasts buffers (a collective), and a rank with
        # fewer validation batches (1 val image, 2 workers) would leave the others waiting
        val = evaluate_model(core, prefetch(source.val_batches(), prepare=layout), loss_fn,
                             card.num_classes, device, precision, channels_last, card.classes)
        val_loss = val.pop("loss")
        watched = monitored_sign(t.monitor) * (
            val_loss if t.monitor == "val_loss" else val.get(t.monitor.removeprefix("val_"), math.nan))
        improved = watched < state.best_monitored - 1e-12  # NaN never improves
        state.epoch = epoch + 1
        if improved:
            state.best_monitored, state.best_epoch, state.bad_epochs = watched, epoch + 1, 0
            state.best_val_loss = val_loss
            best_state = _cpu_state(core)
        else:
            state.bad_epochs += 1
        if state.bad_epochs >= t.patience:
            stop_reason = "early-stopped"
        elif state.epoch >= t.max_epochs:
            stop_reason = "completed"
        metrics = {
            "epoch": epoch + 1, "lr": lr,
            "train_loss": loss_sum / max(n_images, 1), "val_loss": val_loss,
            **{f"val_{k}": v for k, v in val.items() if not isinstance(v, list | dict)},
            "images_per_s": n_images / max(train_seconds, 1e-9),
            **meter.metrics(n_images, train_seconds),
            "epoch_seconds": time.perf_counter() - tick,
            "best_epoch": state.best_epoch, "best_val_loss": state.best_val_loss,
            "stop_reason": stop_reason, "precision": precision,
        }
        if improved:
            state.best_metrics = {k: v for k, v in metrics.items()
                                  if k.startswith("val_") or k in ("epoch", "train_loss")}
        search_metric = config.search.metric
        # setdefault: best_val_loss stays the loop's own (the same value, inf before a kept
        # epoch)
        for key, value in kept_scores(state.best_metrics, search_metric).items():
            metrics.setdefault(key, value)
        state.history.append({k: v for k, v in metrics.items() if not isinstance(v, str)})
        if on_epoch:
            on_epoch(_with_rung_scores(metrics, config, state.history), write_checkpoint)
    if ended_before and on_epoch and state.history:
        # Restored from its last epoch's checkpoint: that epoch's result may not have been
        # recorded (a search killed between the two), so it is reported again, as final.
        stop_reason = stop_reason or "completed"
        final = {**state.history[-1], "stop_reason": stop_reason, "precision": precision}
        on_epoch(_with_rung_scores(final, config, state.history), write_checkpoint)
    core.load_state_dict(best_state)  # restore the best weights (Gym kept the last ones)
    return FitResult(state=state, stop_reason=stop_reason or "completed",
                     best_state_dict=best_state, precision=precision,
                     seconds=time.perf_counter() - started)
