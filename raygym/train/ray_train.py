"""Thin Ray Train adapter: run :func:`raygym.train.loop.fit` on N DDP workers.

Train data comes from Ray Data (``get_dataset_shard``: each worker streams its share, shuffled
every epoch with a seeded local buffer). Validation is read by every worker from the prepared
Parquet and evaluated on rows ``rank::world`` so that every image counts exactly once (Ray's
equal split may drop rows), and the confusion matrix is all-reduced.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from raygym.atomic import scratch_dir, temp_beside
from raygym.config import ExperimentConfig, ResourcesConfig, validate_experiment
from raygym.data.batch import Batch, to_batch
from raygym.errors import ResourceError
from raygym.inference.runtime import to_layout, uses_channels_last
from raygym.train.contract import diverged
from raygym.train.loop import NumpyBatches, OnlineAugmenter

METRICS_CSV = "metrics.csv"


class RayShardBatches:
    """Train batches from a Ray Data shard; validation from in-memory rows ``rank::world``."""

    def __init__(self, shard: Any, val: NumpyBatches, batch_size: int, seed: int,
                 augment: OnlineAugmenter | None) -> None:
        self.shard, self.val, self.batch_size, self.seed = shard, val, batch_size, seed
        self.augment = augment

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        for i, b in enumerate(self.shard.iter_batches(
                batch_size=self.batch_size, batch_format="numpy",
                local_shuffle_buffer_size=max(4 * self.batch_size, 64),
                local_shuffle_seed=self.seed * 1000 + epoch)):
            images, labels = b["image"], b["label"]
            if self.augment is not None:
                images, labels = self.augment(images, labels, epoch, i * self.batch_size)
            yield to_batch(images, labels, b["valid_hw"])

    def val_batches(self) -> Iterator[Batch]:
        return self.val.val_batches()


def append_metrics_row(path: Path, metrics: dict[str, Any]) -> None:
    """Append one epoch to ``metrics.csv`` (header from the first row's keys). An epoch
    reported again replaces its row: a run restored from its last epoch's checkpoint (a
    finished run resumed) reports that epoch once more, as final."""
    row = {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
    new = not path.exists()
    fields = list(row)
    if not new:
        with path.open(newline="") as fh:  # one read: the header and the rows
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = list(reader.fieldnames or fields)
        if rows and rows[-1].get("epoch") == str(row.get("epoch")):
            write_metrics_rows(path, fields, [*rows[:-1], row])
            return
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())


def write_metrics_rows(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    """Write ``metrics.csv`` whole, beside then renamed (never half a file; a killed
    writer's temp file is raygym's usual one, :func:`~raygym.atomic.temp_beside`)."""
    tmp = temp_beside(path)
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def train_worker(loop_config: dict[str, Any]) -> None:
    """Body of every Ray Train worker (must live in the package: workers import it)."""
    import ray.train
    import ray.train.torch
    import torch

    from raygym.data.dataset import PreparedDataset
    from raygym.train.loop import build_loss_for, build_model_for, fit

    config = validate_experiment(loop_config["config"], "<train>")
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    torch.manual_seed(config.train.seed)
    np.random.seed(config.train.seed)
    dataset = PreparedDataset(config.data.prepared)
    card = dataset.card
    model = build_model_for(config, card.bands, card.num_classes)
    # The layout before DDP wraps it: DDP's gradient buckets take the parameters' strides
    # when it is built (converting afterwards costs a gradient copy per parameter per step).
    model = to_layout(model, uses_channels_last(config))
    device = worker_device(config.resources)
    model = ray.train.torch.prepare_model(model, move_to_device=device)
    loss_fn = build_loss_for(config, card)
    per_worker = max(1, config.train.batch_size // world)
    val = NumpyBatches(train=None,
                       val=dataset.load_numpy("val") if dataset.has_split("val") else None,
                       batch_size=per_worker, rank=rank, world=world)
    augment = OnlineAugmenter(config) if config.data.augment.online else None
    source = RayShardBatches(ray.train.get_dataset_shard("train"), val, per_worker,
                             config.train.seed, augment)
    run_dir = Path(loop_config["run_dir"])

    # Ray's checkpoint (a restart after a failure, or a rerun of the same run name) and the
    # one `--resume` found on disk can differ: a killed run may have written a checkpoint
    # that Ray's snapshot never registered. Continue from the newer one.
    candidates: list[Path] = []
    checkpoint = ray.train.get_checkpoint()
    holder = contextlib.ExitStack()
    local_copy = holder.enter_context(scratch_dir("resume"))
    if checkpoint is not None:
        checkpoint.to_directory(str(local_copy))
        candidates.append(local_copy)
    if loop_config.get("resume_dir"):
        candidates.append(Path(loop_config["resume_dir"]))
    resume_dir = max(candidates, key=checkpoint_epoch, default=None)

    node_id = ray.get_runtime_context().get_node_id()

    def on_epoch(metrics: dict[str, Any], write_checkpoint: Any) -> None:
        metrics = {**metrics, "node_id": node_id, "workers": world}
        with scratch_dir("ckpt") as tmp:
            ckpt = None
            if rank == 0 and not diverged(metrics):
                write_checkpoint(tmp)
                ckpt = ray.train.Checkpoint.from_directory(str(tmp))
            if rank == 0:
                append_metrics_row(run_dir / METRICS_CSV, metrics)
            ray.train.report(metrics, checkpoint=ckpt)

    with holder:
        fit(config, model, loss_fn, source, card, device=device, on_epoch=on_epoch,
            resume_from=resume_dir)


def checkpoint_epoch(directory: Path) -> int:
    """Epochs done in a checkpoint folder (-1 if it has no readable state.json)."""
    import json

    try:
        return int(json.loads((directory / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return -1


def worker_device(resources: ResourcesConfig) -> Any:
    """The ``torch.device`` a Train worker runs on: the CUDA device Ray assigned to a worker
    with GPUs; otherwise ``resources.device`` as in search trials (``auto``: the CPU, since Ray
    knows no MPS resource; Apple's GPU when named ``mps``). :func:`check_device` has refused
    the combinations that cannot work before any worker starts."""
    import ray.train.torch

    from raygym.inference.runtime import resolve_device

    if resources.gpus_per_worker > 0:
        return ray.train.torch.get_device()
    return resolve_device("cpu" if resources.device == "auto" else resources.device)


def check_device(resources: ResourcesConfig) -> None:
    """Refuse ``resources.device`` values that :func:`worker_device` cannot honour."""
    device, gpus = resources.device, resources.gpus_per_worker
    if device.startswith("cuda") and not gpus:
        raise ResourceError(f"device {device!r} needs a GPU per worker, but gpus_per_worker "
                            "is 0", key="resources.device",
                            fix="set resources.gpus_per_worker (e.g. 1), or device: auto")
    if device in ("cpu", "mps") and gpus:
        raise ResourceError(f"device {device!r} with gpus_per_worker {gpus:g}: Ray would "
                            "hand each worker a GPU it does not use", key="resources.device",
                            fix="set resources.gpus_per_worker: 0, or device: auto")
    if device == "mps" and resources.workers_per_trial > 1:
        raise ResourceError("device 'mps' runs one worker (DDP has no MPS backend), got "
                            f"workers_per_trial {resources.workers_per_trial}",
                            key="resources.workers_per_trial", fix="set it to 1")


def check_resources(workers: int, cpus: float, gpus: float) -> None:
    """Refuse (instead of hanging) when no node could ever host a worker."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    fits = sum(
        int(min(n["Resources"].get("CPU", 0) // cpus if cpus else 10**6,
                n["Resources"].get("GPU", 0) // gpus if gpus else 10**6))
        for n in nodes
    )
    total = ray.cluster_resources()
    if fits < workers:
        raise ResourceError(
            f"{workers} worker(s) x {cpus:g} CPU" + (f" + {gpus:g} GPU" if gpus else "")
            + f" do not fit this Ray cluster ({total.get('CPU', 0):g} CPU, "
            f"{total.get('GPU', 0):g} GPU)",
            key="resources", fix="lower resources.workers_per_trial / cpus_per_worker / "
            "gpus_per_worker, or add nodes")


def run_torch_trainer(config: ExperimentConfig, run_dir: Path, *, resume_dir: Path | None = None,
                      name: str | None = None, callbacks: list[Any] | None = None) -> Any:
    """Build and fit a ``TorchTrainer``; returns Ray's ``Result``. ``callbacks``: Ray Train
    ``UserCallback`` objects (``raygym train``'s TensorBoard / MLflow logger)."""
    from raygym.data.dataset import PreparedDataset

    r = config.resources
    check_device(r)
    check_resources(r.workers_per_trial, r.cpus_per_worker, r.gpus_per_worker)
    dataset = PreparedDataset(config.data.prepared)
    # Materialised up front: with every CPU held by Train workers a lazy read would starve.
    train_ds = dataset.ray_dataset("train").materialize()
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")
    trainer = build_torch_trainer(config, run_dir, train_ds, name=name or run_dir.name,
                                  storage_path=str(run_dir / "ray"), resume_dir=resume_dir,
                                  num_to_keep=config.train.checkpoint_keep, max_failures=2,
                                  callbacks=callbacks)
    return trainer.fit()


def build_torch_trainer(config: ExperimentConfig, run_dir: Path, train_ds: Any, *, name: str,
                        storage_path: str, num_to_keep: int | None, max_failures: int,
                        resume_dir: Path | None = None, callbacks: list[Any] | None = None
                        ) -> Any:
    """A ``TorchTrainer`` running :func:`train_worker` on ``resources.workers_per_trial``
    workers, the materialised ``train_ds`` split across them; used by ``raygym train`` and
    by multi-worker search trials. ``run_dir`` gets metrics.csv and the exported model;
    ``storage_path/name`` Train's own checkpoints."""
    import ray.train
    from ray.train.torch import TorchTrainer

    r = config.resources
    resources = {"CPU": r.cpus_per_worker}
    if r.gpus_per_worker:
        resources["GPU"] = r.gpus_per_worker
    return TorchTrainer(
        train_worker,
        train_loop_config={"config": config.to_yaml_dict(), "run_dir": str(run_dir),
                           "resume_dir": str(resume_dir) if resume_dir else None},
        scaling_config=ray.train.ScalingConfig(
            num_workers=r.workers_per_trial, use_gpu=r.gpus_per_worker > 0,
            resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=num_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            callbacks=callbacks or []),
        datasets={"train": train_ds},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
