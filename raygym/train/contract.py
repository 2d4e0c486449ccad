"""The train <-> search contract: what the training loop reports after every epoch.

:func:`raygym.train.loop.fit` hands one flat dict per epoch to its caller; the Ray adapters
report it to Tune as it is, and the searcher, the scheduler, the live table, the leaderboard
and the replayed curves of :mod:`raygym.search.replay` read it. Its keys: ``epoch``, ``lr``,
``train_loss``, ``val_loss``, the other ``val_*`` scores of :data:`METRICS` and
``val_iou/<class>`` ..., ``images_per_s`` (training images per second, data waits included),
``gflop_per_s`` (training GFLOP/s achieved: 3 x forward FLOPs per image x images / s),
``peak_share`` (that over the device's measured peak in the compute dtype, 0-1: the MFU of
:mod:`raygym.train.throughput`), ``epoch_seconds``, ``best_epoch``,
``best_val_loss`` (the validation loss of the kept epoch: the epoch with the best
``train.monitor``, the lowest ``val_loss`` by default), ``stop_reason`` (:data:`StopReason`; :data:`RUNNING` while training goes
on), ``precision``, the kept epoch's scores (:func:`kept_scores`) and, when the scheduler
judges a smoothed value, that value (:func:`rung_scores`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from raygym.config import SearchConfig


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (raised by training and by a replayed curve)."""

# How a training run ended: its epochs ran out, early stopping ended it, or the loss became
# NaN / inf. A trial that a scheduler stopped or that raised has no stop reason.
StopReason = Literal["completed", "early-stopped", "nan"]
RUNNING: Literal[""] = ""  # the stop_reason of an epoch after which training goes on
FINISHED_REASONS: frozenset[StopReason] = frozenset({"completed", "early-stopped"})
DIVERGED: StopReason = "nan"

# Every metric a search may optimise (besides val_iou/<class>), as the loop reports them.
METRICS: tuple[str, ...] = ("val_mean_iou", "val_loss", "val_accuracy", "val_fw_iou",
                            "val_mcc", "val_kld", "val_mean_dice", "val_mean_precision",
                            "val_mean_recall", "train_loss")
LOWER_IS_BETTER = frozenset({"val_loss", "train_loss", "val_kld"})
# What early stopping may watch (``train.monitor``): the validation scores of METRICS that
# every evaluation reports (val_kld is left out when a batch had no logits to compare).
MONITORS: tuple[str, ...] = tuple(m for m in METRICS if m.startswith("val_") and m != "val_kld")
# How fast an epoch trained (not scores a search optimises): shown by train, the live table
# and the report.
SPEED_METRICS: tuple[str, ...] = ("images_per_s", "gflop_per_s", "peak_share")


def metric_names(classes: Sequence[str]) -> list[str]:
    """:data:`METRICS`, then ``val_iou/<class>`` for each class name."""
    return [*METRICS, *(f"val_iou/{c}" for c in classes)]


def monitored_sign(monitor: str) -> float:
    """+1 when a lower ``monitor`` is better, -1 when a higher one is: ``sign * value`` is
    what early stopping minimises."""
    return 1.0 if monitor in LOWER_IS_BETTER else -1.0


def finished(result: Mapping[str, Any] | None) -> bool:
    """The run's own loop ended it (completed or early-stopped): not a scheduler, not NaN."""
    return bool(result) and result.get("stop_reason") in FINISHED_REASONS


def diverged(result: Mapping[str, Any] | None) -> bool:
    """The training loss became NaN or infinite in this epoch (the run stops there)."""
    return bool(result) and result.get("stop_reason") == DIVERGED


def kept_scores(best: Mapping[str, Any], metric: str) -> dict[str, float]:
    """``best_val_mean_iou`` and ``best_<metric>``: the scores of the epoch whose weights are
    kept (``best``: that epoch's ``val_*`` results), so that Optuna and the leaderboard score
    those weights, not the last epoch's. NaN while no epoch has been kept."""
    return {"best_val_mean_iou": best.get("val_mean_iou", math.nan),
            f"best_{metric}": best.get(metric, math.nan)}


def rung_scores(search: SearchConfig, values: Sequence[float]) -> dict[str, float]:
    """``{search.rung_key: value}``: what the early-stopping scheduler judges when
    ``search.rung_metric`` smooths the metric (``values``: its per-epoch values so far,
    oldest first); empty when the scheduler judges the metric's last value itself."""
    if search.rung_metric == "last":
        return {}
    return {search.rung_key: search.rung_value(list(values))}
