"""The Tune trial: one experiment config -> the training loop, one report per epoch.

One worker per trial (the default) runs :func:`raygym.train.loop.fit` directly inside the Tune
function: no nested ``TorchTrainer``, so no ~8-10 s worker start-up per trial, and real Tune
checkpoints (ASHA and PBT can use them). More workers per trial build a ``TorchTrainer`` whose
reports reach Tune through ``TuneReportCallback`` (Ray Train V2's documented pattern).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from raygym.atomic import scratch_dir
from raygym.config import ExperimentConfig
from raygym.data.dataset import SplitArrays
from raygym.search.space import trial_config
from raygym.search.space_config import SearchSpace
from raygym.train.contract import NonFiniteLossError, diverged, finished

logger = logging.getLogger(__name__)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def fetch_checkpoint(checkpoint: Any, dest: Path) -> bool:
    """Copy a Tune trial checkpoint into ``dest`` (an empty folder of raygym's); False when
    there is none to resume from.

    A registered checkpoint that is not whole (:func:`raygym.train.loop.checkpoint_readable`)
    is either one that the restored snapshot named after Tune had already deleted (see
    :func:`raygym.search.tune.mend_checkpoints`, which leaves an empty folder there) or one
    cut short by a kill. The newest whole checkpoint of the trial's folder is used instead:
    a replaced one holds a later epoch; one cut short is skipped. With none at all the trial
    starts again from epoch 1. Both cases are logged.
    """
    import posixpath
    import shutil

    import pyarrow.fs as pafs

    from raygym.train.loop import checkpoint_readable

    fs, path = checkpoint.filesystem, checkpoint.path.rstrip("/")

    def has_state(folder: str) -> bool:
        return fs.get_file_info(posixpath.join(folder, "state.json")).type == pafs.FileType.File

    def clear() -> None:  # what an earlier candidate left
        for child in dest.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()

    def fetched_whole(folder: str) -> bool:
        clear()
        type(checkpoint)(folder, filesystem=fs).to_directory(str(dest))
        return checkpoint_readable(dest)

    if has_state(path) and fetched_whole(path):
        return True
    siblings = fs.get_file_info(pafs.FileSelector(posixpath.dirname(path),
                                                  allow_not_found=True))
    found = sorted((info.path for info in siblings if info.type == pafs.FileType.Directory
                    and info.base_name.startswith("checkpoint_") and info.path != path
                    and has_state(info.path)), key=posixpath.basename, reverse=True)
    for newest in found:
        if fetched_whole(newest):
            logger.warning("checkpoint %s was gone or cut short (Tune had replaced it, or a "
                           "kill stopped its copy): resuming from %s", path, newest)
            return True
    clear()
    logger.warning("checkpoint %s is empty or cut short and its trial folder holds no other "
                   "whole checkpoint: the trial starts again from epoch 1", path)
    return False


def trial_in_process(params: dict[str, Any], *, config: ExperimentConfig, train: SplitArrays,
                     val: SplitArrays | None, space: SearchSpace) -> None:
    """Tune function for one-worker trials. ``params`` are the sampled ``{path: value}``."""
    import torch
    from ray import tune

    from raygym.data.dataset import read_card
    from raygym.inference.runtime import resolve_device
    from raygym.train.loop import (
        NumpyBatches,
        OnlineAugmenter,
        build_loss_for,
        build_model_for,
        fit,
    )

    config, _ = trial_config(params, config, space)
    threads = config.train.num_threads or max(1, int(config.resources.cpus_per_worker))
    torch.set_num_threads(threads)
    torch.manual_seed(config.train.seed)
    card = read_card(config.data.prepared)
    model = build_model_for(config, card.bands, card.num_classes)
    # auto: a GPU only for trials that Ray gave one (gpus_per_worker); Ray knows no MPS
    # resource, so Apple's GPU is used when asked for by name (resources.device: mps)
    r = config.resources
    device = resolve_device(r.device if r.device != "auto" or r.gpus_per_worker > 0 else "cpu")
    model.to(device)
    loss_fn = build_loss_for(config, card)
    augment = OnlineAugmenter(config) if config.data.augment.online else None
    source = NumpyBatches(train=train, val=val, batch_size=config.train.batch_size,
                          seed=config.train.seed, shuffle=config.train.shuffle, augment=augment)
    node = _node_id()
    resume_dir: Path | None = None
    checkpoint = tune.get_checkpoint()
    holder = contextlib.ExitStack()
    if checkpoint is not None:  # a retried / restored / PBT-exploited trial
        local = holder.enter_context(scratch_dir("resume"))
        if fetch_checkpoint(checkpoint, local):
            resume_dir = local

    def on_epoch(metrics: dict[str, Any], write_checkpoint: Any) -> None:
        # training_iteration (the schedulers' clock) is the epoch, also when a restore had to
        # start from another checkpoint than the one Tune registered (fetch_checkpoint)
        metrics = {**metrics, "node_id": node, "workers": 1,
                   "training_iteration": metrics["epoch"]}
        if finished(metrics):
            # Tune's own "finished" flag: the scheduler is not asked about the last epoch
            # (PBT would otherwise "exploit" a finished trial and restart it for nothing).
            metrics["done"] = True
        if diverged(metrics):
            raise NonFiniteLossError(
                f"training loss became NaN/inf at epoch {metrics['epoch']} "
                f"(lr {metrics.get('lr', 0):.2g}); lower train.max_lr or check the data")
        with scratch_dir("ckpt") as tmp:
            write_checkpoint(tmp)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(tmp)))

    with holder:
        fit(config, model, loss_fn, source, card, device=device, on_epoch=on_epoch,
            resume_from=resume_dir)


def trial_with_trainer(params: dict[str, Any], *, config: ExperimentConfig, space: SearchSpace,
                       train_ds: Any, train_storage: str) -> None:
    """Tune function for multi-worker trials: a ``TorchTrainer`` per trial (DDP inside).

    ``train_ds`` is the train split as a *materialized* Ray Dataset (read by the driver);
    ``train_storage`` is ``<Tune storage>/train_runs``: each trial's Train run (checkpoints,
    ``metrics.csv``) goes to ``train_storage/<trial_id>``, where the leaderboard finds it.
    """
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from raygym.train.ray_train import build_torch_trainer

    config, _ = trial_config(params, config, space)

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    # Not ctx.get_trial_dir(): that is a local staging folder inside Ray's session dir, which
    # is neither the results folder nor shared between nodes.
    storage = train_storage
    if "://" in storage:  # s3://... : Train writes there; metrics.csv stays in the trial dir
        run_dir = Path(ctx.get_trial_dir())
    else:
        run_dir = Path(storage) / trial_id
    run_dir.mkdir(parents=True, exist_ok=True)
    # named after the trial: a retried trial resumes from its own checkpoints
    trainer = build_torch_trainer(config, run_dir, train_ds, name=trial_id,
                                  storage_path=str(storage), num_to_keep=1, max_failures=1,
                                  callbacks=[TuneReportCallback()])
    result = trainer.fit()
    if result.error:
        raise RuntimeError(f"trial {trial_id} failed: {result.error}")
