"""The sections that say how a job runs: ``search`` (Tune, the searcher, the trial
scheduler), ``resources`` (what a trial asks Ray for) and ``mlflow`` (tracking)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from raygym.config.base import StrictModel
from raygym.config_errors import KeyedError

# ------------------------------------------------------------------------------------- search
_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION_PART = r"(\d+(?:\.\d+)?)([dhms])"  # 1.5h, 30m
_DURATION = re.compile(f"(?:{_DURATION_PART})+")


def parse_duration(value: Any) -> Any:
    """``"8h"``, ``"1h30m"``, ``"90m"``, ``"45s"``, ``"2d"`` or a number of seconds -> seconds
    (float); anything else is passed on for the field's own check to refuse."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower().replace(" ", "")
    try:
        return float(text)
    except ValueError:
        pass
    if not _DURATION.fullmatch(text):
        raise ValueError(f"'{value}' is not a duration (fix: seconds, or e.g. 45m, 8h, 1h30m, "
                         "2d)")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(_DURATION_PART, text))


def duration_text(seconds: float) -> str:
    """Seconds as a short duration: ``28800 -> "8h"``, ``5400 -> "1h30m"``, ``42 -> "42s"``."""
    left = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts)


class TpeConfig(StrictModel):
    """Optuna's TPE sampler (``search.algorithm: optuna``)."""

    startup_trials: int | None = Field(
        None, ge=0, description="random trials before TPE models (default num_samples // 3, "
        "2-10)")
    multivariate: bool = Field(True, description="model the keys jointly (Optuna's "
                               "multivariate TPE) instead of one by one")
    group: bool = Field(True, description="with multivariate: separate models for "
                        "conditional sub-spaces")
    max_history: int | None = Field(
        300, ge=100, description="finished trials TPE models at most: the best and the most "
        "recent (a suggestion's cost grows with the study; null: every trial)")


class SearchConfig(StrictModel):
    """How ``raygym search`` explores the space (Ray Tune + Optuna + a trial scheduler)."""

    num_samples: int = Field(20, ge=1)
    max_concurrent: int = Field(2, ge=1)
    algorithm: Literal["optuna", "random", "grid", "bohb"] = Field(
        "optuna", description="bohb: hpbandster's BOHB (Ray's TuneBOHB) with its own "
        "HyperBand scheduler (HyperBandForBOHB, reduction_factor); needs the bohb extra")
    # asha chosen on recorded curves (README, "Search defaults")
    scheduler: Literal["asha", "median", "none", "pbt", "patient"] = Field(
        "asha", description="median: stop a trial whose best so far is below the median "
        "of the other trials' running averages at the same epoch; asha: successive halving; "
        "patient: successive halving that stops a trial only when its curve has not improved "
        "for prune_patience epochs (Optuna's PatientPruner)")
    # None: the first epoch past the LR ramp-up of the gym / cosine schedule, and at least 2
    grace_period: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        None, description="first epoch at which the scheduler may stop a trial; auto: "
        "learnt from the first grace_trials trials, run in full (the first epoch whose "
        "scores rank them as their final scores do)")
    grace_trials: int = Field(8, ge=3, description="grace_period auto: trials run in full "
                              "to learn it from")

    @field_validator("grace_period", mode="before")
    @classmethod
    def _grace_is_epochs_or_auto(cls, value: Any) -> Any:
        if value is None or value == "auto" or (isinstance(value, int) and value >= 1
                                                 and not isinstance(value, bool)):
            return value
        raise ValueError("must be a whole number of epochs >= 1, or auto (fix: e.g. 3, or "
                         "auto to learn it from the first trials)")
    reduction_factor: float = Field(3.0, gt=1.0)
    brackets: int = Field(1, ge=1, description="ASHA brackets (asynchronous HyperBand: later "
                          "brackets judge trials later)")
    tpe: TpeConfig = Field(default_factory=TpeConfig)
    repeat_top: int = Field(3, ge=0, description="a configuration that finishes among the "
                            "best repeat_top is trained once more with the next seed, and "
                            "configurations are ranked by their mean (0: never; Optuna "
                            "searches only)")
    repeat_runs: int = Field(2, ge=2, description="runs at most per leading configuration: "
                             "a repeated leader whose mean keeps it among the best repeat_top "
                             "is trained again with the next seed, up to this many runs")
    rung_metric: Literal["last", "max", "mean3"] = Field(
        "last", description="what ASHA / median judge at a rung: the metric's last value, "
        "its best so far, or the mean of its last 3 epochs")
    rung_on: Literal["metric", "val_loss"] = Field(
        "metric", description="what the early-stopping scheduler ranks trials by: the "
        "search metric (as rung_metric smooths it) or the validation loss (lower is better)")
    prune_patience: int = Field(1, ge=0, description="scheduler patient: a trial below its "
                                "rung is stopped only if its best of the last "
                                "prune_patience + 1 epochs is worse than its best before")
    metric: str = "val_mean_iou"
    mode: Literal["max", "min"] = "max"
    top_k: int = Field(3, ge=1)
    seed: int = 0
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    results_dir: Path = Path("results")
    storage_path: str | None = Field(
        None, description="local folder, NFS path or s3://... (defaults to results_dir/ray)"
    )
    max_failures: int = Field(1, ge=0, description="retries of a failed trial")
    time_budget: float | None = Field(
        None, gt=0, description="wall-clock seconds (or 90m, 8h, 1h30m, 2d) one run of raygym "
        "search may take: then it stops as a Ctrl-C does (what finished is written, trials "
        "part-way keep their last epoch's checkpoint) and --resume goes on, with the budget "
        "again")

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration_in_seconds(cls, value: Any) -> Any:
        return parse_duration(value)

    @model_validator(mode="after")
    def _choices_fit_together(self) -> SearchConfig:
        if self.algorithm == "bohb":
            if "scheduler" in self.model_fields_set and self.scheduler != "asha":
                raise KeyedError("search.scheduler", (
                    f"is {self.scheduler}, but algorithm bohb runs its own HyperBand scheduler "
                    "(fix: remove search.scheduler, or use algorithm: optuna)"))
            # HyperBand's successive halving: leaderboards call its stops asha-pruned, and a
            # dumped config (a trial's, an artifact's) validates again
            if self.scheduler != "asha":  # (assignment validates the model again)
                self.scheduler = "asha"
            # the extra itself is checked when a search starts (search/run.py), not here: a
            # model artifact's config.yaml carries its search section and must load anywhere
        if self.grace_period == "auto" and self.scheduler == "pbt":
            raise KeyedError("search.grace_period", (
                "is auto, but scheduler pbt perturbs at a fixed interval and learns no grace "
                "(fix: give grace_period as a number of epochs, or use scheduler: median)"))
        if self.rung_on == "val_loss" and self.rung_metric != "last":
            raise KeyedError("search.rung_metric", (
                f"is {self.rung_metric}, but rung_on val_loss judges the loss itself (fix: "
                "remove one of them)"))
        return self

    @property
    def rung_key(self) -> str:
        """The result key the training loop adds for ``rung_metric`` (the metric itself when
        it adds none)."""
        return self.metric if self.rung_metric == "last" else f"rung_{self.metric}"

    @property
    def judged(self) -> tuple[str, Literal["max", "min"]]:
        """(result key, mode) that the early-stopping scheduler ranks trials by."""
        return ("val_loss", "min") if self.rung_on == "val_loss" else (self.rung_key, self.mode)

    def rung_value(self, values: list[float]) -> float:
        """``rung_metric`` of a trial's per-epoch ``metric`` values so far (oldest first)."""
        finite = [v for v in values if isinstance(v, int | float) and v == v]
        if not finite:
            return math.nan
        if self.rung_metric == "max":
            return max(finite) if self.mode == "max" else min(finite)
        if self.rung_metric == "mean3":
            return sum(finite[-3:]) / len(finite[-3:])
        return finite[-1]


class ResourcesConfig(StrictModel):
    """What each trial asks Ray for. Fractional GPUs pack several small models on one GPU."""

    workers_per_trial: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(0.0, ge=0.0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?|mps)$",
                        description="auto: a CUDA GPU, else Apple's MPS, else the CPU")
    address: str | None = Field(None, description="None: start a local Ray; 'auto' or ray://...")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray (default: all)")
    object_store_memory: int | None = Field(None, ge=78_643_200)

    @property
    def through_ray_client(self) -> bool:
        """Whether the driver joins through Ray Client (``ray://``): Tune's Tuner then runs on
        the cluster, out of this process's reach (no growth, no time budget)."""
        return (self.address or "").startswith("ray://")


# ------------------------------------------------------------------------------------- mlflow
class MlflowConfig(StrictModel):
    """Experiment tracking in MLflow (``pip install 'raygym[mlflow]'``): ``raygym train`` logs
    one MLflow run, ``raygym search`` one run per trial under a run for the search. Whether
    mlflow is installed is checked when a command starts, not here: an artifact's
    ``config.yaml`` must load on machines without it."""

    enabled: bool = False
    tracking_uri: str | None = Field(
        None, description="None: sqlite:///<train.output_dir or search.results_dir>/mlflow.db "
        "(MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE=true); relative "
        "sqlite: paths resolve against the folder raygym runs from; or http(s)://, databricks")
    experiment_name: str | None = Field(None, min_length=1,
                                        description="None: the experiment's `name`")
    log_artifacts: bool = Field(True, description="log best/ (train: also curves.png, "
                                "metrics.csv, config.yaml; search: leaderboard, search.json)")

    @field_validator("tracking_uri")
    @classmethod
    def _has_scheme(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value and value != "databricks":
            raise ValueError(f"'{value}' is not a URI (fix: e.g. sqlite:///{value}/mlflow.db, "
                             "or http://host:5000)")
        return value
