"""``raygym train``'s tracking: TensorBoard events in the run folder, always, and one MLflow
run when ``mlflow.enabled``.

Both are written by :class:`EpochLogger`, a Ray Train callback: it runs in Train's
controller, which Ray places on the driver's node, and sees every epoch that rank 0
reported (a worker group restarted after a failure included). TensorBoard scalars use the
tags Tune's logger gives a search's trials (``ray/tune/<key>``, step = epoch), so
``tensorboard --logdir`` over runs and searches draws both in the same charts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray.train

from raygym.config import ExperimentConfig
from raygym.tracking import (
    RUN_TAG,
    MlflowRun,
    epoch_metrics,
    find_or_start_run,
    flat_params,
    open_experiment,
    require_mlflow,
    run_status,
    store_for,
)

logger = logging.getLogger(__name__)
TB_PREFIX = "ray/tune/"  # Tune's TBXLoggerCallback tags: train runs share a search's charts
# What a finished run logs besides best/ (names in the run folder)
RUN_FILES = ("curves.png", "metrics.csv", "config.yaml")


class EpochLogger(ray.train.UserCallback):
    """Each epoch of rank 0: TensorBoard scalars into ``run_dir``, MLflow metrics into
    ``mlflow_run`` (when given), with step = epoch. A failure to log is a warning, never the
    end of a training run."""

    def __init__(self, run_dir: Path, mlflow_run: MlflowRun | None) -> None:
        self.run_dir, self.mlflow_run = Path(run_dir), mlflow_run
        self._writer: Any = None
        self._warned = False

    def __getstate__(self) -> dict[str, Any]:  # sent to the controller before any epoch
        return {**self.__dict__, "_writer": None}

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Any) -> None:
        row = metrics[0] if metrics else {}
        if "epoch" not in row:
            return
        step, values = int(row["epoch"]), epoch_metrics(row)
        try:
            self.write_scalars(values, step, last=bool(row.get("stop_reason")))
            if self.mlflow_run is not None:
                self.mlflow_run.log_metrics(values, step)
        except Exception as err:  # noqa: BLE001 - tracking must not stop the training
            if not self._warned:
                logger.warning("epoch %d not tracked (%s: %s); training goes on", step,
                               type(err).__name__, err)
                self._warned = True

    def write_scalars(self, values: dict[str, float], step: int, *, last: bool) -> None:
        """Each epoch is in the file when this returns (TensorBoard shows it at once);
        ``last``: the run's final epoch (it has a stop reason): the file is synced to disk and
        closed before the controller exits."""
        if self._writer is None:
            from raygym.event_files import TensorBoardWriter

            self._writer = TensorBoardWriter(str(self.run_dir))
        for key, value in values.items():
            if math.isfinite(value):
                self._writer.add_scalar(TB_PREFIX + key, value, global_step=step)
        self._writer.flush()
        if last:
            self._writer.close()
            self._writer = None


class TrainTracking:
    """The callbacks for ``run_torch_trainer`` and, with ``mlflow.enabled``, the run's
    MLflow run: params at the start, ``best/`` and the run's files at the end."""

    def __init__(self, config: ExperimentConfig, run_dir: Path, mlflow_run: MlflowRun | None
                 ) -> None:
        self.config, self.run_dir, self.mlflow_run = config, run_dir, mlflow_run
        self.callbacks = [EpochLogger(run_dir, mlflow_run)]

    @classmethod
    def start(cls, config: ExperimentConfig, run_dir: Path) -> TrainTracking:
        """Open the MLflow run (before Ray starts: a bad store is refused first); a resumed
        run folder continues the MLflow run tagged with its name."""
        if not config.mlflow.enabled:
            return cls(config, run_dir, None)
        require_mlflow(config)
        store = store_for(config, config.train.output_dir)
        client, experiment_id = open_experiment(store)
        run = find_or_start_run(client, experiment_id, store.uri, name=run_dir.name,
                                   match={RUN_TAG: run_dir.name},
                                   tags={"raygym.command": "train",
                                         "raygym.run_dir": str(run_dir)})
        d = config.to_yaml_dict()
        run.log_params(flat_params({k: d[k] for k in ("name", "data", "model", "loss",
                                                      "train", "resources")}))
        return cls(config, run_dir, run)

    @contextmanager
    def active(self) -> Iterator[TrainTracking]:
        """Ends the MLflow run with the outcome of the block (FAILED, KILLED on Ctrl-C)."""
        try:
            yield self
        except BaseException as err:
            if self.mlflow_run is not None:
                self.mlflow_run.finish(run_status(err))
            raise
        if self.mlflow_run is not None:
            self.mlflow_run.finish(run_status(None))

    def log_outputs(self, best: dict[str, Any]) -> str | None:
        """After the export: the kept epoch's scores (``best``: the model card's metrics) as
        ``kept_*`` metrics at that epoch, and with ``log_artifacts`` ``best/`` and the run's
        files. Returns a line saying where the run is (None without MLflow)."""
        run = self.mlflow_run
        if run is None:
            return None
        kept = {f"kept_{k}": v for k, v in epoch_metrics(best).items()}
        if kept:
            run.log_metrics(kept, step=int(best.get("epoch") or 0))
        if self.config.mlflow.log_artifacts:
            run.log_artifact(self.run_dir / "best", "best")
            for name in RUN_FILES:
                run.log_artifact(self.run_dir / name)
        return f"mlflow run {run.run_id} in {run.uri}"
