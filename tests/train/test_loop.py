"""The plain-PyTorch training loop (``raygym.train.loop``) on the real prepared S2 set, no Ray
Train: learning, early stopping with best-weight restore, checkpoint/resume, seeding, NaN stop,
whole-split evaluation and precision selection."""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from raygym.config import IGNORE_INDEX, ExperimentConfig, validate_experiment
from raygym.data.dataset import DatasetCard, PreparedDataset, SplitArrays
from raygym.train.batchnorm import recompute_batchnorm_statistics
from raygym.train.loop import (
    Batch,
    FitResult,
    NumpyBatches,
    build_loss_for,
    build_model_for,
    evaluate_model,
    fit,
)
from tests.ray_exposure import free_loopback_port

from . import cut_short, make_config, whole_checkpoint

CPU = torch.device("cpu")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def splits(prepared: PreparedDataset) -> tuple[SplitArrays, SplitArrays]:
    return prepared.load_numpy("train"), prepared.load_numpy("val")


def subset(split: SplitArrays, n: int) -> SplitArrays:
    return SplitArrays(split.images[:n], split.labels[:n], split.valid_hw[:n], split.keys[:n],
                       split.copies[:n])


def new_model(config: ExperimentConfig, card: DatasetCard, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model_for(config, card.bands, card.num_classes)


def run_fit(config: ExperimentConfig, card: DatasetCard, train: SplitArrays, val: SplitArrays,
            *, model: nn.Module | None = None, source: Any = None, **kwargs: Any
            ) -> tuple[nn.Module, FitResult]:
    model = model if model is not None else new_model(config, card, config.train.seed)
    source = source or NumpyBatches(train, val, config.train.batch_size, seed=config.train.seed)
    result = fit(config, model, build_loss_for(config, card), source, card, device=CPU,
                 **kwargs)
    return model, result


def val_metrics(model: nn.Module, config: ExperimentConfig, card: DatasetCard,
                val: SplitArrays, batch_size: int = 8) -> dict[str, Any]:
    source = NumpyBatches(None, val, batch_size)
    return evaluate_model(model, source.val_batches(), build_loss_for(config, card),
                          card.num_classes, CPU, "fp32", False, card.classes)


# -------------------------------------------------------------------------------- tests
def test_training_beats_the_untrained_model(prepared: PreparedDataset, splits: Any,
                                            base_sections: dict[str, Any]) -> None:
    train, val = splits
    card = prepared.card
    config = make_config(base_sections, max_epochs=3)
    untrained = val_metrics(new_model(config, card), config, card, val)
    rows: list[dict[str, Any]] = []
    model, result = run_fit(config, card, train, val,
                            on_epoch=lambda m, _w: rows.append(dict(m)))
    trained = val_metrics(model, config, card, val)
    assert result.stop_reason == "completed"
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert trained["mean_iou"] > untrained["mean_iou"] + 0.15, (untrained, trained)
    assert trained["loss"] < untrained["loss"]
    # Every epoch reports the metrics the CLI and the search rely on.
    for key in ("lr", "train_loss", "val_loss", "val_mean_iou", "images_per_s",
                "best_val_loss", "best_epoch", "stop_reason", "precision"):
        assert key in rows[-1]
    assert all(f"val_iou/{c}" in rows[-1] for c in card.classes)
    assert rows[-1]["stop_reason"] == "completed" and rows[0]["stop_reason"] == ""
    # Speed in view: achieved GFLOP/s and its share of the measured peak, every epoch.
    assert all(r["gflop_per_s"] > 0 and 0 < r["peak_share"] < 5 for r in rows), rows


class SpoiledAfter:
    """Real batches for the first ``good`` epochs, then every label set to one wrong class:
    validation loss must get worse from there on."""

    def __init__(self, inner: NumpyBatches, good: int, label: int) -> None:
        self.inner, self.good, self.label = inner, good, label

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        for x, y in self.inner.train_batches(epoch):
            if epoch >= self.good:
                y = torch.where(y == IGNORE_INDEX, y, torch.full_like(y, self.label))
            yield x, y

    def val_batches(self) -> Iterator[Batch]:
        return self.inner.val_batches()


def test_early_stopping_restores_the_best_weights(prepared: PreparedDataset, splits: Any,
                                                  base_sections: dict[str, Any]) -> None:
    train, val = splits
    train = subset(train, 48)
    card = prepared.card
    config = make_config(base_sections, max_epochs=8, patience=2, max_lr=1e-2)
    # a search that ranks by Dice: every epoch reports it at the kept (best) epoch too
    config = config.model_copy(update={
        "search": config.search.model_copy(update={"metric": "val_mean_dice",
                                                   "rung_metric": "max"})})
    source = SpoiledAfter(NumpyBatches(train, val, 8, seed=0), good=2, label=1)  # all 'surf'
    rows: list[dict[str, Any]] = []
    model, result = run_fit(config, card, train, val, source=source,
                            on_epoch=lambda m, _w: rows.append(dict(m)))
    assert result.stop_reason == "early-stopped"
    best = result.state.best_epoch
    assert len(rows) == best + config.train.patience < config.train.max_epochs
    assert rows[-1]["stop_reason"] == "early-stopped"
    best_loss = rows[best - 1]["val_loss"]
    assert result.state.best_val_loss == best_loss == min(r["val_loss"] for r in rows)
    assert rows[-1]["val_loss"] > best_loss + 1e-3  # the last weights are worse ...
    again = val_metrics(model, config, card, val)
    assert again["loss"] == pytest.approx(best_loss, abs=1e-6)  # ... and were not kept
    assert again["mean_iou"] == pytest.approx(rows[best - 1]["val_mean_iou"], abs=1e-9)
    assert result.state.best_metrics["epoch"] == best
    for row in rows:
        kept = rows[row["best_epoch"] - 1]
        assert row["best_val_mean_dice"] == kept["val_mean_dice"]
        assert row["best_val_mean_iou"] == kept["val_mean_iou"]
    assert rows[-1]["best_val_mean_dice"] != rows[-1]["val_mean_dice"]
    # what the search's scheduler judges (search.rung_metric: max): the best Dice so far
    for i, row in enumerate(rows):
        assert row["rung_val_mean_dice"] == max(r["val_mean_dice"] for r in rows[:i + 1])


def test_early_stopping_can_watch_a_score(prepared: PreparedDataset, splits: Any,
                                         base_sections: dict[str, Any]) -> None:
    """``train.monitor: val_mean_iou``: patience counts epochs without a better IoU and the
    best IoU's weights are kept. In this run (CCE at a high learning rate, validated with
    Keras' lagging BatchNorm averages) the validation loss is lowest at epoch 1 and the IoU
    highest at epoch 2, so watching the loss would have kept other weights and stopped an
    epoch sooner."""
    train, val = splits
    card = prepared.card
    sections = copy.deepcopy(base_sections)
    sections["loss"] = {"name": "cce"}
    config = make_config(sections, max_epochs=5, patience=2, max_lr=1e-2,
                         monitor="val_mean_iou", precise_bn_images=0)
    rows: list[dict[str, Any]] = []
    model, result = run_fit(config, card, subset(train, 32), val,
                            on_epoch=lambda m, _w: rows.append(dict(m)))
    ious = [r["val_mean_iou"] for r in rows]
    losses = [r["val_loss"] for r in rows]
    best = result.state.best_epoch
    assert best == 1 + int(np.argmax(ious)) != 1 + int(np.argmin(losses)), rows
    assert result.stop_reason == "early-stopped" and len(rows) == best + 2
    assert result.state.best_val_loss == rows[best - 1]["val_loss"] == rows[-1]["best_val_loss"]
    assert rows[-1]["best_val_mean_iou"] == max(ious)
    assert val_metrics(model, config, card, val)["mean_iou"] == pytest.approx(max(ious),
                                                                               abs=1e-9)


def test_a_checkpoint_from_before_the_monitor_resumes_on_its_loss(tmp_path: Path) -> None:
    """A ``state.json`` written before ``train.monitor`` existed has no ``best_monitored``:
    its run watched the validation loss, so that is the best to beat after the resume."""
    from raygym.train.loop import FitState, load_checkpoint, save_checkpoint

    model = nn.Conv2d(3, 2, 1)
    save_checkpoint(tmp_path, model, torch.optim.Adam(model.parameters()),
                    FitState(epoch=3, best_val_loss=0.42, best_monitored=0.42, best_epoch=2),
                    dict(model.state_dict()))
    saved = json.loads((tmp_path / "state.json").read_text())
    del saved["best_monitored"]
    (tmp_path / "state.json").write_text(json.dumps(saved))
    state, _ = load_checkpoint(tmp_path, model, None)
    assert (state.best_monitored, state.best_val_loss, state.epoch) == (0.42, 0.42, 3)


@pytest.mark.parametrize("damage", ["none", "empty state", "state without epoch", "model cut",
                                    "best missing", "optimizer cut"])
def test_a_checkpoint_cut_short_is_not_readable(tmp_path: Path, damage: str) -> None:
    """Tune copies a checkpoint's files in parallel: a kill mid-copy can leave any of them
    short, or ``state.json`` empty (seen in a driver-loss test). Only a whole one is readable,
    and a readable one loads."""
    from raygym.train.loop import checkpoint_readable, load_checkpoint

    ckpt = whole_checkpoint(tmp_path / "ckpt", epoch=4)
    if damage == "empty state":
        (ckpt / "state.json").write_text("")
    elif damage == "state without epoch":
        (ckpt / "state.json").write_text("{}")
    elif damage == "model cut":
        cut_short(ckpt / "model.safetensors")
    elif damage == "best missing":
        (ckpt / "best.safetensors").unlink()
    elif damage == "optimizer cut":
        cut_short(ckpt / "optimizer.pt")
    assert checkpoint_readable(ckpt) == (damage == "none")
    if damage == "none":
        model = nn.Conv2d(3, 2, 1)
        state, _ = load_checkpoint(ckpt, model, torch.optim.Adam(model.parameters()))
        assert state.epoch == 4


def test_checkpoint_and_resume_continue_where_they_stopped(
        tmp_path: Path, prepared: PreparedDataset, splits: Any,
        base_sections: dict[str, Any]) -> None:
    train, val = splits
    train = subset(train, 32)
    card = prepared.card
    config = make_config(base_sections, max_epochs=4)
    k = 2
    ckpt = tmp_path / "ckpt"

    def save_at_k(metrics: dict[str, Any], write: Callable[[Path], Path]) -> None:
        if metrics["epoch"] == k:
            write(ckpt)

    straight, full = run_fit(config, card, train, val, on_epoch=save_at_k)
    assert (ckpt / "state.json").is_file() and (ckpt / "best.safetensors").is_file()

    epochs: list[int] = []
    resumed, part = run_fit(config, card, train, val, model=new_model(config, card, seed=123),
                            resume_from=ckpt,
                            on_epoch=lambda m, _w: epochs.append(int(m["epoch"])))
    assert epochs == list(range(k + 1, config.train.max_epochs + 1))
    assert part.state.epoch == full.state.epoch == config.train.max_epochs
    assert len(part.state.history) == config.train.max_epochs
    assert [h["epoch"] for h in part.state.history] == [1, 2, 3, 4]
    # No dropout, seeded batch order, restored Adam state: the resumed run is the same run.
    for h_full, h_part in zip(full.state.history, part.state.history, strict=True):
        assert h_part["val_loss"] == pytest.approx(h_full["val_loss"], rel=1e-5)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=1e-4, atol=1e-5)


def test_a_run_restored_at_its_last_epoch_reports_it_again_as_final(
        tmp_path: Path, prepared: PreparedDataset, splits: Any,
        base_sections: dict[str, Any]) -> None:
    """A search killed after a trial's last checkpoint but before its result was recorded:
    the restored trial trains nothing more and says, once, how it ended."""
    train, val = splits
    config = make_config(base_sections, max_epochs=2)
    ckpt = tmp_path / "ckpt"
    last: list[dict[str, Any]] = []

    def save_last(metrics: dict[str, Any], write: Callable[[Path], Path]) -> None:
        last.append(metrics)
        write(ckpt)

    run_fit(config, prepared.card, subset(train, 16), val, on_epoch=save_last)
    again: list[dict[str, Any]] = []
    _, part = run_fit(config, prepared.card, subset(train, 16), val, resume_from=ckpt,
                      on_epoch=lambda m, _w: again.append(m))
    assert len(again) == 1 and len(part.state.history) == 2  # nothing trained again
    assert again[0]["stop_reason"] == "completed" == last[-1]["stop_reason"]
    assert again[0]["epoch"] == 2
    assert again[0]["best_val_mean_iou"] == pytest.approx(last[-1]["best_val_mean_iou"])


def test_same_seed_gives_identical_metrics(prepared: PreparedDataset, splits: Any,
                                           base_sections: dict[str, Any]) -> None:
    train, val = splits
    train = subset(train, 32)
    card = prepared.card
    config = make_config(base_sections, {"dropout": 0.1}, max_epochs=2, seed=7)
    runs = [run_fit(config, card, train, val)[1] for _ in range(2)]
    first, second = (scores(r) for r in runs)
    assert first == second
    assert len(first) == 2 and "val_mean_iou" in first[0]
    other = make_config(base_sections, {"dropout": 0.1}, max_epochs=2, seed=8)
    different = run_fit(other, card, train, val)[1]
    assert different.state.history[-1]["val_loss"] != runs[0].state.history[-1]["val_loss"]


def first_batchnorm(model: nn.Module) -> nn.BatchNorm2d:
    return next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_validation_uses_batchnorm_statistics_of_the_validated_weights(
        prepared: PreparedDataset, splits: Any, base_sections: dict[str, Any]) -> None:
    """The kept model's BatchNorm statistics are those of its own weights over the training
    images (what its validation used); with ``precise_bn_images: 0`` they are Keras' running
    averages (momentum 0.01), which after 8 steps still hold mostly the initial 0 and 1."""
    train, val = splits
    train = subset(train, 32)  # 4 batches of 8: the plain average of batch means is exact
    card = prepared.card
    images = [x for x, _ in NumpyBatches(train, None, 8, shuffle=False).train_batches(0)]
    gaps = {}
    for precise_bn_images in (128, 0):
        config = make_config(base_sections, max_epochs=2, patience=5,
                             precise_bn_images=precise_bn_images)
        model, _ = run_fit(config, card, train, val)
        again = copy.deepcopy(model)
        recompute_batchnorm_statistics(again, images, lambda m, x: m(x))
        kept, own = first_batchnorm(model), first_batchnorm(again)
        gaps[precise_bn_images] = (float((kept.running_mean - own.running_mean).abs().max()),
                                   float((kept.running_var - own.running_var).abs().max()))
    # the mean of equal batches' means is exact; their variances depend on which images met
    assert gaps[128][0] < 1e-4 and gaps[128][1] < 0.02, gaps
    assert max(gaps[0]) > 0.3, gaps


def scores(result: FitResult) -> list[dict[str, Any]]:
    """Each epoch's losses and validation metrics (timings left out)."""
    return [{k: v for k, v in h.items() if k not in TIMINGS} for h in result.state.history]


TIMINGS = ("images_per_s", "epoch_seconds", "gflop_per_s", "peak_share")


class InfAt:
    """Real batches, except one infinite pixel in the first batch of epoch ``epoch``."""

    def __init__(self, inner: NumpyBatches, epoch: int) -> None:
        self.inner, self.epoch = inner, epoch

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        for i, (x, y) in enumerate(self.inner.train_batches(epoch)):
            if epoch == self.epoch and i == 0:
                x = x.clone()
                x[0, 0, 0, 0] = math.inf
            yield x, y

    def val_batches(self) -> Iterator[Batch]:
        return self.inner.val_batches()


def test_non_finite_loss_stops_with_reason_nan(prepared: PreparedDataset, splits: Any,
                                               base_sections: dict[str, Any]) -> None:
    train, val = splits
    train = subset(train, 24)
    card = prepared.card
    config = make_config(base_sections, max_epochs=4)
    rows: list[dict[str, Any]] = []
    model, result = run_fit(config, card, train, val, source=InfAt(NumpyBatches(
        train, val, 8), epoch=1), on_epoch=lambda m, _w: rows.append(dict(m)))
    assert result.stop_reason == "nan"
    assert [r["stop_reason"] for r in rows] == ["", "nan"]
    assert result.state.epoch == 1 and result.state.best_epoch == 1
    # The returned weights are the last good ones: finite, and they still predict.
    assert all(torch.isfinite(v).all() for v in model.state_dict().values()
               if v.is_floating_point())
    assert math.isfinite(val_metrics(model, config, card, val)["loss"])


def _ddp_worker(rank: int, world: int, port: int, out_dir: str, sections: dict[str, Any],
                card_json: str, train: SplitArrays, val: SplitArrays, inf_on_rank0: bool) -> None:
    """One DDP rank of fit(); with ``inf_on_rank0`` only rank 0 meets an infinite pixel."""
    from torch.nn.parallel import DistributedDataParallel

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        config = validate_experiment(sections)
        card = DatasetCard.model_validate_json(card_json)
        torch.manual_seed(0)
        model = build_model_for(config, card.bands, card.num_classes)
        model = DistributedDataParallel(model.to(memory_format=torch.channels_last))
        inner = NumpyBatches(train, val, 4, seed=0, rank=rank, world=world)
        source = InfAt(inner, epoch=1) if rank == 0 and inf_on_rank0 else inner
        scores: list[float] = []
        result = fit(config, model, build_loss_for(config, card), source, card, device=CPU,
                     on_epoch=lambda m, _: scores.append(m.get("val_mean_iou", math.nan)))
        Path(out_dir, f"{rank}.json").write_text(json.dumps(
            {"stop": result.stop_reason, "epoch": result.state.epoch, "scores": scores}))
        dist.barrier()  # both ranks are done and have written what the test reads
    except BaseException:
        dist.destroy_process_group()
        raise
    # Leave without tearing gloo down: its threads aborted the process at teardown on a
    # loaded CI machine ("terminate called without an active exception", SIGABRT), even after
    # a barrier (2026-12-07, a fresh clone's CI). What the test checks is on disk already; each
    # rank leaves once every rank is out of the barrier (no gloo message is then in flight).
    Path(out_dir, f"{rank}.left").touch()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(
            Path(out_dir, f"{r}.left").exists() for r in range(world)):
        time.sleep(0.01)
    os._exit(0)


@pytest.mark.timeout(300)
def test_non_finite_loss_on_one_ddp_rank_stops_every_rank(
        tmp_path: Path, prepared: PreparedDataset, splits: Any,
        base_sections: dict[str, Any]) -> None:
    """A rank that stopped alone would leave the other blocked in backward's all-reduce."""
    train, val = splits
    config = make_config(base_sections, {"filters": 2}, max_epochs=3)
    mp.spawn(_ddp_worker, nprocs=2, join=True,
             args=(2, free_loopback_port(), str(tmp_path), config.to_yaml_dict(),
                   prepared.card.model_dump_json(), subset(train, 16), subset(val, 4), True))
    for rank in range(2):
        ended = json.loads((tmp_path / f"{rank}.json").read_text())
        assert (ended["stop"], ended["epoch"]) == ("nan", 1)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("precise_bn_images", [0, 64])
def test_a_rank_without_validation_images_validates_with_the_others(
        tmp_path: Path, prepared: PreparedDataset, splits: Any, base_sections: dict[str, Any],
        precise_bn_images: int) -> None:
    """One validation image, two ranks: rank 1 has no validation batch. Validating through
    DDP's forward (a collective) left rank 0 waiting for it for ever (`raygym train` with
    workers_per_trial 2 on 6 scenes hung at "starting Ray Train"). Both ranks report the
    same scores: those of the model one process validates with rank 0's statistics."""
    train, val = splits
    config = make_config(base_sections, {"filters": 2}, max_epochs=2,
                         precise_bn_images=precise_bn_images)
    mp.spawn(_ddp_worker, nprocs=2, join=True,
             args=(2, free_loopback_port(), str(tmp_path), config.to_yaml_dict(),
                   prepared.card.model_dump_json(), subset(train, 8), subset(val, 1), False))
    ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    assert ranks[0]["epoch"] == ranks[1]["epoch"] == 2
    assert ranks[0]["scores"] == ranks[1]["scores"] and len(ranks[0]["scores"]) == 2


def test_huge_learning_rate_stops_with_reason_nan(prepared: PreparedDataset, splits: Any,
                                                  base_sections: dict[str, Any]) -> None:
    """Adam moves every weight by ~lr per step: at 1e25 the next forward overflows."""
    train, val = splits
    train = subset(train, 24)
    card = prepared.card
    config = make_config(base_sections, max_epochs=3, max_lr=1e25)
    _, result = run_fit(config, card, train, val)
    assert result.stop_reason == "nan"
    assert result.state.epoch == 0  # the first epoch never finished


def test_evaluate_model_counts_every_pixel_of_the_split(prepared: PreparedDataset, splits: Any,
                                                        base_sections: dict[str, Any]) -> None:
    _, val = splits
    card = prepared.card
    k = card.num_classes
    config = make_config(base_sections)
    model = new_model(config, card, seed=3).eval()
    # Batches of 5 do not divide the 16 validation rows: the last, short batch must count too.
    metrics = evaluate_model(model, NumpyBatches(None, val, 5).val_batches(), None, k, CPU,
                             class_names=card.classes)
    x, y = next(NumpyBatches(None, val, len(val)).val_batches())
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    truth = y.numpy()
    keep = truth != IGNORE_INDEX
    cm = np.bincount(truth[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    assert metrics["num_pixels"] == int(keep.sum()) == int(cm.sum())
    assert int(keep.sum()) == sum(card.splits["val"]["pixels_per_class"])
    tp = np.diag(cm)
    for c, name in enumerate(card.classes):
        union = cm[c].sum() + cm[:, c].sum() - tp[c]
        if union:
            assert metrics[f"iou/{name}"] == pytest.approx(tp[c] / union, abs=1e-12)
    assert metrics["accuracy"] == pytest.approx(tp.sum() / cm.sum(), abs=1e-12)
    assert math.isnan(metrics["loss"])  # no loss function given


def test_bf16_mixed_trains_on_cpu(prepared: PreparedDataset, splits: Any,
                                  base_sections: dict[str, Any]) -> None:
    train, val = splits
    train = subset(train, 24)
    card = prepared.card
    config = make_config(base_sections, max_epochs=1, precision="bf16-mixed")
    rows: list[dict[str, Any]] = []
    model, result = run_fit(config, card, train, val,
                            on_epoch=lambda m, _w: rows.append(dict(m)))
    assert result.precision == "bf16-mixed" and rows[0]["precision"] == "bf16-mixed"
    assert result.stop_reason == "completed"
    assert math.isfinite(rows[0]["train_loss"]) and math.isfinite(rows[0]["val_loss"])
    assert 0.0 <= rows[0]["val_mean_iou"] <= 1.0
    assert rows[0]["gflop_per_s"] > 0 and rows[0]["peak_share"] > 0
    # Weights stay fp32 (autocast only changes the compute dtype).
    assert all(p.dtype == torch.float32 for p in model.parameters())
