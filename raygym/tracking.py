"""Experiment tracking in MLflow, shared by ``raygym train`` and ``raygym search``.

The store is ``mlflow.tracking_uri``, by default ``sqlite:///<folder>/mlflow.db`` with the
artifacts in ``<folder>/mlartifacts/`` (``folder``: ``train.output_dir`` for train,
``search.results_dir`` for search). SQLite, not MLflow's ``./mlruns`` file store: MLflow 3
made ``sqlite:///mlflow.db`` its own default and refuses the file store unless
``MLFLOW_ALLOW_FILE_STORE=true`` is set; its SQLAlchemy store needs SQLAlchemy and alembic,
which optuna already brings, so the ``mlflow`` extra is only ``mlflow-skinny``.

Runs are found again by their tags (``raygym.run``; ``raygym.search`` +
``raygym.trial_id``), so a resumed train or search continues its MLflow runs. Everything
here runs on the driver's node: the Tune callback on the driver, the Train callback on Ray
Train's controller, which Ray pins to the driver's node. Nothing here imports Ray.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raygym.errors import ConfigError
from raygym.train.contract import SPEED_METRICS

if TYPE_CHECKING:
    from raygym.config import ExperimentConfig

MISSING_EXTRA = "mlflow tracking needs the mlflow extra: pip install 'raygym[mlflow]'"
RUN_TAG = "raygym.run"  # a train run: its folder's name
SEARCH_TAG = "raygym.search"  # a search's runs: the experiment's name
TRIAL_TAG = "raygym.trial_id"
ROLE_TAG = "raygym.role"  # "search" on the run that holds a search's summary and best models
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: trial runs nest under the search's run
# The loop's per-epoch keys that are scores or speeds (raygym.train.contract); ``epoch`` is
# the step, and ``stop_reason`` / ``precision`` / ``node_id`` / ``workers`` are not metrics.
TRACKED_PREFIXES = ("val_", "train_", "best_", "rung_")
TRACKED_KEYS = frozenset({"lr", "epoch_seconds", *SPEED_METRICS})
_BATCH = 100  # MLflow's limit of params or tags per log_batch call


def require_mlflow(config: ExperimentConfig) -> None:
    """With ``mlflow.enabled``: refuse in one line, exit 2, when the extra is not installed.

    Called when a command starts, before Ray, never in the schema: a model's
    ``config.yaml`` must load where mlflow is not installed."""
    if not config.mlflow.enabled:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(MISSING_EXTRA, key="mlflow.enabled") from None


@dataclass(frozen=True)
class Store:
    """Where the runs go: ``uri`` (absolute for local SQLite), the experiment's name and,
    for a local store, the folder new experiments keep their artifacts in."""

    uri: str
    experiment: str
    artifact_root: str | None


def store_for(config: ExperimentConfig, folder: Path) -> Store:
    """The store of ``config.mlflow``; ``folder`` holds the default one."""
    m = config.mlflow
    uri = m.tracking_uri or f"sqlite:///{Path(folder).resolve() / 'mlflow.db'}"
    root = None
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if not db.is_absolute():  # relative to where raygym runs (like every other path)
            db = db.resolve()
        uri, root = f"sqlite:///{db}", (db.parent / "mlartifacts").as_uri()
    return Store(uri=uri, experiment=m.experiment_name or config.name, artifact_root=root)


@contextmanager
def _quiet() -> Iterator[None]:
    # SQLAlchemy 2.1 warns about a loader option inside MLflow's own store (not ours to fix)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*noload.*")
        yield


def open_experiment(store: Store) -> tuple[Any, str]:
    """(an ``MlflowClient``, the experiment's id), created when new; an unusable store or a
    deleted experiment is one line naming ``mlflow.tracking_uri`` / ``experiment_name``."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        with _quiet():
            client = MlflowClient(tracking_uri=store.uri)
            exp = client.get_experiment_by_name(store.experiment)
            if exp is None:
                return client, client.create_experiment(store.experiment,
                                                        artifact_location=store.artifact_root)
    except MlflowException as err:
        first = str(err.message).split(". ")[0].strip().rstrip(".")
        raise ConfigError(f"cannot open the MLflow store {store.uri}: {first}",
                          key="mlflow.tracking_uri",
                          fix="leave it unset for a local SQLite store, or give "
                          "sqlite:///PATH or a running server's http(s)://HOST:PORT") from None
    if exp.lifecycle_stage == "deleted":
        raise ConfigError(f"MLflow experiment '{store.experiment}' in {store.uri} is deleted",
                          key="mlflow.experiment_name",
                          fix="restore it (mlflow experiments restore), or choose another name")
    return client, exp.experiment_id


def metric_key(key: str) -> str:
    """``key`` in the characters MLflow takes (a class name may hold others)."""
    return re.sub(r"[^/\w.\- :]", "_", key)


def epoch_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The finite scores and speeds of one epoch's result (``val_*``, ``train_loss``, ``lr``,
    ``best_*``, ``rung_*``, images/s, GFLOP/s ...), by MLflow-safe name. Non-finite values are
    left out (an infinite ``best_val_loss`` before any kept epoch would flatten the chart)."""
    return finite_numbers({k: v for k, v in result.items()
                           if k.startswith(TRACKED_PREFIXES) or k in TRACKED_KEYS})


def param_value(value: Any) -> str:
    """A parameter as MLflow stores it: text, JSON for lists and mappings (a weighted loss)."""
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list | tuple) else str(
        value)
    return text[:6000]  # MLflow's limit


def flat_params(d: Mapping[str, Any]) -> dict[str, str]:
    """Nested sections -> ``{"train.max_lr": "0.0001", ...}`` (lists stay one JSON value)."""
    from raygym.config import dotted

    return {metric_key(key): param_value(value) for key, value in dotted(d).items()}


@dataclass
class MlflowRun:
    """One MLflow run by id; picklable (the client is made again in each process)."""

    uri: str
    run_id: str
    _client: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "run_id": self.run_id, "_client": None}

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            with _quiet():
                self._client = MlflowClient(tracking_uri=self.uri)
                self._client.get_run(self.run_id)  # opens the store once, under _quiet
        return self._client

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):  # MLflow's limit of metrics per batch
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log ``params``, leaving out keys the run already has: a resumed run may have
        changed ``max_epochs``, and MLflow refuses a changed parameter."""
        from mlflow.entities import Param

        have = self.client.get_run(self.run_id).data.params
        items = [Param(k, v) for k, v in params.items() if k not in have]
        for i in range(0, len(items), _BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + _BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """A file, or a folder's contents under ``folder`` (its own name when None)."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), folder or path.name)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), folder)

    def delete_artifacts(self, folder: str) -> bool:
        """Delete this run's artifacts under ``folder`` (raygym's own: it logged them);
        False where there were some and the artifact store cannot delete them."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        if not self.client.list_artifacts(self.run_id, folder):
            return True
        try:
            # this run's tracking URI: an mlflow-artifacts:/ URI is resolved against it, not
            # against mlflow's process-wide one (which raygym leaves to its caller)
            repo = get_artifact_repository(self.client.get_run(self.run_id).info.artifact_uri,
                                           tracking_uri=self.uri)
            repo.delete_artifacts(folder)
        except Exception:  # noqa: BLE001 - not every store deletes (NotImplementedError ...)
            return False
        return True

    def finish(self, status: str = "FINISHED") -> None:
        """``FINISHED``, ``FAILED`` or ``KILLED`` (Ctrl-C: a resume sets it running again)."""
        self.client.set_terminated(self.run_id, status=status)


_SAFE_TAG = re.compile(r"^[\w.\-/: ]+$")


def find_run(client: Any, experiment_id: str, match: Mapping[str, str]) -> str | None:
    """The id of the newest run whose tags hold ``match`` (None: none, or a value that a
    filter string cannot quote)."""
    if not all(_SAFE_TAG.match(v) for v in match.values()):
        return None
    found = client.search_runs(
        [experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
        filter_string=" and ".join(f"tags.`{k}` = '{v}'" for k, v in match.items()))
    return found[0].info.run_id if found else None


def runs_with_tag(client: Any, experiment_id: str, match: Mapping[str, str], key: str
                  ) -> list[str]:
    """Ids of the runs whose tags hold ``match`` and have a tag ``key`` (any value); none
    where a value of ``match`` cannot be quoted in a filter string."""
    if not all(_SAFE_TAG.match(v) for v in match.values()):
        return []
    where = [f"tags.`{k}` = '{v}'" for k, v in match.items()] + [f"tags.`{key}` LIKE '%'"]
    return [r.info.run_id for r in client.search_runs([experiment_id],
                                                      filter_string=" and ".join(where))]


def find_or_start_run(client: Any, experiment_id: str, uri: str, *, name: str,
                      match: Mapping[str, str], tags: Mapping[str, str] | None = None
                      ) -> MlflowRun:
    """The newest run whose tags hold ``match``, set running again; else a new run with
    ``match`` and ``tags``, named ``name``."""
    run_id = find_run(client, experiment_id, match)
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(experiment_id, run_name=name,
                                   tags={**match, **(tags or {})}).info.run_id
    return MlflowRun(uri, run_id, client)


def finite_numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``values`` (bools left out), by MLflow-safe name."""
    return {metric_key(k): float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def run_status(err: BaseException | None) -> str:
    """MLflow's status for a run that ended with ``err`` (None: it finished)."""
    if err is None:
        return "FINISHED"
    return "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
