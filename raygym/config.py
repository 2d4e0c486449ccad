"""The experiment schema: one YAML file, parsed and validated once at the edge.

Sections: ``data``, ``model``, ``loss``, ``train``, ``search``, ``resources``, ``mlflow``.
Any scalar may instead be a search distribution:
:func:`raygym.search.space_config.load_experiment` reads a file, resolves its relative paths
(modules below the CLI only ever see absolute :class:`~pathlib.Path` objects), separates
the distributions into a search space and validates the rest here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from raygym.atomic import write_text_atomic
from raygym.config_errors import KeyedError, format_validation_error
from raygym.models.spec import GYM_ARCHS, GYM_INPUT_MULTIPLE, GymParams, SmpParams
from raygym.train.loss_spec import LOSS_NAMES

IGNORE_INDEX = 255


class _Strict(BaseModel):
    # no NaN / inf: `max_lr: .inf` would pass `gt=0` and fail in every trial instead
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# --------------------------------------------------------------------------------------- data
class FolderSource(_Strict):
    """One folder of files; ``key`` is a regex whose groups, joined, give the pairing key.

    Without ``key`` the file stem is the key. Example for Sentinel-2 NIR files named
    ``<stem>_ir-0.jpg`` beside ``<stem>-0.jpg``: ``key: '^(.*)_ir(-\\d+)$'``.
    """

    folder: Path
    key: str | None = None

    @field_validator("key")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            import re

            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"not a valid regular expression: {err}") from None
        return value


class SplitConfig(_Strict):
    """Fractions of *source images* (not augmented copies) per split; the rest is train.

    ``group`` keeps every scene of one group (tile, site, date) in one split, so adjacent crops
    of one capture never sit in train and test: a regex searched in each scene key (its capture
    groups, joined with ``/``, give the group id; with none, the whole match), or
    ``column:NAME`` for a column of ``data.manifest``. See :mod:`raygym.data.split`.
    """

    val: float = Field(0.2, ge=0.0, lt=1.0)
    test: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = 42
    # Left out of dumps when unset, so the fingerprint (hence the reuse check) of every dataset
    # prepared before `group` existed stays what it was.
    group: str | None = Field(None, min_length=1, exclude_if=lambda v: v is None)

    @field_validator("group")
    @classmethod
    def _group_rule(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("column:"):
            if not value[len("column:"):].strip():
                raise ValueError("`column:` needs a manifest column name, e.g. `column:site`")
            return value
        import re

        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a valid regular expression: {err} (fix: e.g. "
                             f"'^(.*)_\\d+_\\d+$' for <scene>_<row>_<col> crops, or "
                             f"`column:NAME` for a manifest column)") from None
        return value

    @property
    def group_column(self) -> str | None:
        """The manifest column named by ``group: column:NAME``, else None."""
        if self.group and self.group.startswith("column:"):
            return self.group[len("column:"):].strip()
        return None

    @model_validator(mode="after")
    def _leaves_train(self) -> SplitConfig:
        if self.val + self.test >= 1.0:
            raise ValueError("val + test must be < 1 so that some images remain for training")
        return self


class AugmentConfig(_Strict):
    """Offline augmentation of the train split (Gym's AUG_* keys) plus optional photometrics."""

    copies: int = Field(0, ge=0, le=100)
    rotation: float = Field(0.0, ge=0.0, le=180.0, description="degrees, +/-")
    zoom: float = Field(0.0, ge=0.0, lt=1.0, description="fraction, scale 1 +/- zoom")
    width_shift: float = Field(0.0, ge=0.0, lt=1.0)
    height_shift: float = Field(0.0, ge=0.0, lt=1.0)
    hflip: bool = False
    vflip: bool = False
    brightness_contrast: float = Field(0.0, ge=0.0, le=1.0)
    fog: float = Field(0.0, ge=0.0, le=1.0, description="probability")
    sun_glare: float = Field(0.0, ge=0.0, le=1.0, description="probability")
    online: bool = Field(False, description="also augment on the fly each epoch during training")

    def augmenter_kwargs(self) -> dict[str, Any]:
        return self.model_dump(exclude={"copies", "online"})


class DataConfig(_Strict):
    """Where the raw data is, how to pair and decode it, and where the prepared dataset goes."""

    images: FolderSource | None = None
    extra_bands: list[FolderSource] = Field(default_factory=list)
    labels: FolderSource | None = None
    manifest: Path | None = None
    classes: list[str] = Field(min_length=2)
    remap: dict[int, int] | None = None
    unknown_labels: Literal["error", "ignore", "clip"] = "error"
    palette: dict[str, int] | None = None
    target_size: tuple[int, int] = (256, 256)
    upscale: bool = False
    split: SplitConfig = Field(default_factory=SplitConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    prepared: Path = Path("datasets/default")
    seed: int = 0

    @field_validator("images", "labels", mode="before")
    @classmethod
    def _folder_shorthand(cls, value: Any) -> Any:
        return {"folder": value} if isinstance(value, str | Path) else value

    @field_validator("extra_bands", mode="before")
    @classmethod
    def _bands_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"folder": v} if isinstance(v, str | Path) else v for v in value]
        return value

    @field_validator("target_size", mode="before")
    @classmethod
    def _square_shorthand(cls, value: Any) -> Any:
        return (value, value) if isinstance(value, int) else value

    @field_validator("target_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 16:
            raise ValueError(f"must be at least 16 x 16 (got {list(value)})")
        return value

    @field_validator("palette")
    @classmethod
    def _palette_colours(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None:
            for colour in value:
                parse_colour(colour)
        return value

    @model_validator(mode="after")
    def _inputs_and_classes(self) -> DataConfig:
        if self.manifest is None and (self.images is None or self.labels is None):
            raise ValueError(
                "give either `manifest: pairs.csv` or both `images:` and `labels:` folders"
            )
        if self.manifest is not None and (self.images is not None or self.labels is not None):
            raise ValueError("give either `manifest` or `images`/`labels` folders, not both")
        if self.split.group_column is not None and self.manifest is None:
            raise KeyedError("data.split.group", (
                f"'{self.split.group}' takes each scene's group from a manifest column, but the "
                "scenes are paired by file name (fix: pair with data.manifest, or use a regex "
                "over the scene key, e.g. '^(.*)_\\d+_\\d+$' for <scene>_<row>_<col> crops)"))
        k = len(self.classes)
        if self.remap:
            bad = {old: new for old, new in self.remap.items()
                   if not (0 <= new < k or new == IGNORE_INDEX)}
            if bad:
                old, new = next(iter(bad.items()))
                raise ValueError(
                    f"remap {old}: {new} maps to class {new} but only {k} classes are named "
                    f"(0..{k - 1}, or {IGNORE_INDEX} = ignore); fix the remap or add class names"
                )
        if self.palette:
            bad_p = {c: v for c, v in self.palette.items() if not (0 <= v < k or v == IGNORE_INDEX)}
            if bad_p:
                colour, v = next(iter(bad_p.items()))
                raise ValueError(f"palette {colour}: {v} is not a class id 0..{k - 1} (or 255)")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def parse_colour(text: str) -> tuple[int, int, int]:
    """``'#00ff7f'`` or ``'0,255,127'`` -> (0, 255, 127)."""
    s = text.strip()
    try:
        if s.startswith("#") and len(s) == 7:
            return int(s[1:3], 16), int(s[3:5], 16), int(s[5:7], 16)
        parts = [int(p) for p in s.split(",")]
        if len(parts) == 3 and all(0 <= p <= 255 for p in parts):
            return parts[0], parts[1], parts[2]
    except ValueError:
        pass
    raise ValueError(f"colour {text!r} is not '#rrggbb' or 'r,g,b'")


# -------------------------------------------------------------------------------------- model
class _Arch(_Strict):
    """``model.arch``, the first key of the section (pydantic orders inherited fields first)."""

    arch: str = "gym_resunet"

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value in GYM_ARCHS:  # no torch/smp import: config errors come back at once
            return value
        from raygym.models import list_models

        names = list_models()
        if value not in names:
            hint = difflib.get_close_matches(value, names, n=1)
            did = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise ValueError(f"unknown model '{value}'{did}; valid: {', '.join(names)}")
        return value


class ModelConfig(SmpParams, GymParams, _Arch):
    """Architecture by registry name (``raygym models`` lists them) and its builder's
    keywords: the fields of :class:`~raygym.models.spec.GymParams` (Gym networks) and
    :class:`~raygym.models.spec.SmpParams` (smp architectures)."""

    @property
    def is_gym(self) -> bool:
        return self.arch in GYM_ARCHS

    def builder_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`raygym.models.build_model`: the fields of this
        family that the arch's constructor names (``simple_*`` nets take no ``stride``)."""
        if self.is_gym:
            from raygym.models import model_params  # torch: only on the way to a model

            named = set(model_params(self.arch)) & set(GymParams.model_fields)
            return self.model_dump(include=named)
        kwargs: dict[str, Any] = {"encoder": self.encoder, "encoder_depth": self.encoder_depth}
        if self.encoder_weights is not None:
            kwargs["encoder_weights"] = str(self.encoder_weights)
        return kwargs


# --------------------------------------------------------------------------------------- loss
class LossConfig(_Strict):
    """A loss name (``dice``, ``cce``, ``kld``, ``focal``, ``tversky``, ``lovasz``) or a
    weighted sum ``{dice: 0.5, cce: 0.5}``; ``class_weights: auto`` uses Gym's
    ``1 - freq / sum(freq)`` from the prepared dataset's train pixel counts."""

    name: str | dict[str, float] = "dice"
    class_weights: Literal["auto"] | list[float] | None = None

    @field_validator("name")
    @classmethod
    def _known_losses(cls, value: str | dict[str, float]) -> str | dict[str, float]:
        names = [value] if isinstance(value, str) else list(value)
        for name in names:
            if name not in LOSS_NAMES:
                hint = difflib.get_close_matches(name, list(LOSS_NAMES), n=1)
                did = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ValueError(
                    f"unknown loss '{name}'{did}; valid: {', '.join(sorted(LOSS_NAMES))}"
                )
        if isinstance(value, dict):
            example = "(fix: give weights >= 0 that are not all 0, e.g. {dice: 0.5, cce: 0.5})"
            bad = [f"{n}: {w}" for n, w in value.items() if not (math.isfinite(w) and w >= 0)]
            if bad or not any(value.values()):
                what = f"weight {bad[0]} is not a number >= 0" if bad else "every weight is 0"
                raise ValueError(f"{what}: the weighted loss would not train {example}")
        return value

    @field_validator("class_weights")
    @classmethod
    def _usable_class_weights(cls, value: Any) -> Any:
        if isinstance(value, list):
            fix = "(fix: one weight >= 0 per class in the order of data.classes, or `auto`)"
            bad = [w for w in value if not (math.isfinite(w) and w >= 0)]
            if bad:
                raise ValueError(f"weight {bad[0]:g} is not a number >= 0 {fix}")
            if not any(value):
                raise ValueError(f"every weight is 0: no pixel would count {fix}")
        return value

    @model_validator(mode="after")
    def _weights_supported(self) -> LossConfig:
        names = [self.name] if isinstance(self.name, str) else list(self.name)
        if self.class_weights is not None and "lovasz" in names:
            raise KeyedError("loss.class_weights", "loss 'lovasz' takes no class weights "
                             "(fix: remove class_weights, or use dice, cce, kld, focal or "
                             "tversky)")
        return self

    @property
    def label(self) -> str:
        if isinstance(self.name, str):
            return self.name
        return "+".join(f"{w:g}*{n}" for n, w in self.name.items())


# -------------------------------------------------------------------------------------- train
class TrainConfig(_Strict):
    """Optimisation: Adam, Gym's ramp/sustain/decay LR schedule, early stopping (on the
    validation loss, as Gym, or on a validation score: ``monitor``)."""

    batch_size: int = Field(8, ge=1)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(10, ge=1)
    monitor: str = Field(
        "val_loss", description="what early stopping watches: training stops after patience "
        "epochs without improvement of it, and the weights of its best epoch are kept; "
        "val_loss (Gym's rule) or a validation score the loop reports, e.g. val_mean_iou "
        "(higher is better)")
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = Field(0.0, ge=0.0)
    lr_schedule: Literal["gym", "cosine", "constant"] = "gym"
    start_lr: float = Field(1e-7, gt=0.0)
    min_lr: float = Field(1e-7, gt=0.0)
    max_lr: float = Field(1e-4, gt=0.0)
    rampup_epochs: int = Field(20, ge=0)
    sustain_epochs: int = Field(0, ge=0)
    exp_decay: float = Field(0.9, gt=0.0, le=1.0)
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16-mixed", "fp16-mixed"] = "auto"
    channels_last: bool = True
    num_threads: int | None = Field(None, ge=1)
    shuffle: bool = True
    output_dir: Path = Path("runs")
    checkpoint_keep: int = Field(2, ge=1)

    @field_validator("monitor")
    @classmethod
    def _monitor_is_reported(cls, value: str) -> str:
        from raygym.train.contract import MONITORS

        if value not in MONITORS:
            hint = difflib.get_close_matches(value, MONITORS, n=1)
            raise ValueError(f"early stopping cannot watch '{value}'"
                             + (f" (did you mean '{hint[0]}'?)" if hint else "")
                             + "; valid: " + ", ".join(MONITORS))
        return value

    @model_validator(mode="after")
    def _lr_order(self) -> TrainConfig:
        if self.min_lr > self.max_lr:
            raise ValueError(f"min_lr ({self.min_lr:g}) must be <= max_lr ({self.max_lr:g})")
        return self

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        # no torch import: the rule lives beside the schedules that need it
        from raygym.train.schedule import warmup_problem

        problem = warmup_problem(self.lr_schedule, self.max_epochs, self.rampup_epochs)
        if problem:
            raise KeyedError("train.rampup_epochs", problem)
        return self


# ------------------------------------------------------------------------------------- search
class TpeConfig(_Strict):
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


class SearchConfig(_Strict):
    """How ``raygym search`` explores the space (Ray Tune + Optuna + a trial scheduler)."""

    num_samples: int = Field(20, ge=1)
    max_concurrent: int = Field(2, ge=1)
    algorithm: Literal["optuna", "random", "grid", "bohb"] = Field(
        "optuna", description="bohb: hpbandster's BOHB (Ray's TuneBOHB) with its own "
        "HyperBand scheduler (HyperBandForBOHB, reduction_factor); needs the bohb extra")
    # median (Tune's MedianStoppingRule) chosen on recorded curves (README, "Search defaults")
    scheduler: Literal["asha", "median", "none", "pbt", "patient"] = Field(
        "median", description="median: stop a trial whose best so far is below the median "
        "of the other trials' running averages at the same epoch; asha: successive halving; "
        "patient: successive halving that stops a trial only when its curve has not improved "
        "for prune_patience epochs (Optuna's PatientPruner)")
    # None: two epochs past the LR ramp-up of the gym / cosine schedule, else 3; half of
    # train.max_epochs when trials run in full (train.patience >= max_epochs)
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


class ResourcesConfig(_Strict):
    """What each trial asks Ray for. Fractional GPUs pack several small models on one GPU."""

    workers_per_trial: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0.0)
    gpus_per_worker: float = Field(0.0, ge=0.0)
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?|mps)$",
                        description="auto: a CUDA GPU, else Apple's MPS, else the CPU")
    address: str | None = Field(None, description="None: start a local Ray; 'auto' or ray://...")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray (default: all)")
    object_store_memory: int | None = Field(None, ge=78_643_200)


# ------------------------------------------------------------------------------------- mlflow
class MlflowConfig(_Strict):
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


# ----------------------------------------------------------------------------------- top level
class ExperimentConfig(_Strict):
    """One experiment: what ``prepare``, ``train`` and ``search`` all read."""

    name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)

    @model_validator(mode="after")
    def _default_grace_period(self) -> ExperimentConfig:
        if self.search.grace_period is None:
            # the second epoch at the full learning rate: scores while it ramps up rank
            # nothing (rank correlation with the final score 0.14 at the warm-up epoch, 0.80
            # one epoch later), and judging one epoch later spares the slow learners that
            # lead the 4-seed tables (bench/RESULTS.md, bench_simulate, 4 seeds)
            t = self.train
            ramp = t.rampup_epochs if t.lr_schedule in ("gym", "cosine") else 0
            grace = ramp + 2 if isinstance(ramp, int) and ramp else 3
            if t.patience >= t.max_epochs:
                # trials run their whole budget (no early stopping): the best configurations
                # may start slowest, so judge from half of it (chosen on S2, confirmed on the
                # 30-epoch aerial table, judged on training seeds the searches never saw:
                # bench/RESULTS.md, 2026-12-04 fifth session)
                grace = max(grace, t.max_epochs // 2)
            self.search.grace_period = max(1, min(grace, t.max_epochs))
        return self

    @model_validator(mode="after")
    def _one_weight_per_class(self) -> ExperimentConfig:
        weights, classes = self.loss.class_weights, self.data.classes
        if isinstance(weights, list) and len(weights) != len(classes):
            raise KeyedError("loss.class_weights", (
                f"has {len(weights)} weights but data.classes names {len(classes)} classes "
                f"({', '.join(classes)}) (fix: one weight per class in that order, or `auto`)"))
        return self

    @model_validator(mode="after")
    def _size_fits_model(self) -> ExperimentConfig:
        if self.model.arch in GYM_ARCHS:
            multiple = GYM_INPUT_MULTIPLE
        else:
            from raygym.models import requires_multiple_of

            multiple = requires_multiple_of(self.model.arch,
                                            encoder_depth=self.model.encoder_depth)
        h, w = self.data.target_size
        if h % multiple or w % multiple:
            up = [math.ceil(v / multiple) * multiple for v in (h, w)]
            raise ValueError(
                f"data.target_size {[h, w]} must be divisible by {multiple} for model "
                f"'{self.model.arch}' (try {up})"
            )
        return self

    def to_yaml_dict(self) -> dict[str, Any]:
        """JSON/YAML-safe nested dict (paths as strings) that round-trips through the schema."""
        return json.loads(self.model_dump_json())

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the named sections (all when none), for cache and card keys."""
        d = self.to_yaml_dict()
        picked = {s: d[s] for s in sections} if sections else d
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


def dotted(sections: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections -> ``{"train.max_lr": 0.0001, ...}``; lists and empty mappings stay
    one value."""
    out: dict[str, Any] = {}
    for key, value in sections.items():
        if isinstance(value, Mapping) and value:
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def validate_experiment(raw: dict[str, Any], file: str = "<config>") -> ExperimentConfig:
    """Validate a raw dict (no distributions) into an :class:`ExperimentConfig`."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise format_validation_error(err, file, ExperimentConfig) from None


def dump_yaml(config: ExperimentConfig, path: Path) -> None:
    """Write the resolved config atomically (temp file, then rename)."""
    write_text_atomic(path, yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
