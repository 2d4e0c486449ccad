"""``raygym train``: check config against the dataset, run Ray Train, export the best model.

Outputs in ``runs/<name>/``: ``config.yaml``, ``metrics.csv`` (one row per epoch),
``curves.png`` (loss, mean IoU, LR), ``best/`` (the model artifact), ``ray/`` (checkpoints),
``events.out.tfevents.*`` (TensorBoard).
"""

from __future__ import annotations

import csv
import math
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from raygym.config import NAME_PATTERN, NAME_RULE, ExperimentConfig, dotted, dump_yaml
from raygym.data.dataset import DatasetCard, PreparedDataset
from raygym.errors import ConfigError, DataError, RaygymError, RunFailedError
from raygym.train.contract import diverged
from raygym.train.ray_train import METRICS_CSV, checkpoint_epoch, write_metrics_rows

if TYPE_CHECKING:
    from raygym.train.tracking import TrainTracking

def check_dataset(config: ExperimentConfig, batch_sizes: Sequence[int] = ()) -> PreparedDataset:
    """The prepared dataset, after checking it matches the config (classes, settings, sizes)
    and that training can use it (train and val rows; ``batch_sizes``, a search's candidates,
    else ``train.batch_size``, no larger than the training split)."""
    from raygym.data.prepare import data_fingerprint, settings_changed

    path = config.data.prepared
    if not path.exists():
        raise DataError("prepared dataset not found", file=path, key="data.prepared",
                        fix="run `raygym prepare CONFIG` first")
    dataset = PreparedDataset(path)
    card = dataset.card
    if card.classes != list(config.data.classes):
        raise ConfigError(f"classes {list(config.data.classes)} differ from the dataset's "
                          f"{card.classes}", key="data.classes",
                          fix="prepare again (`raygym prepare --overwrite`) or fix the names")
    if card.config_hash != data_fingerprint(config.data):
        raise ConfigError(f"the dataset at {path} was prepared from different data settings "
                          f"({settings_changed(card, config.data) or 'unknown'})",
                          key="data", fix="run `raygym prepare CONFIG --overwrite`")
    dataset.check_trainable()
    rows = dataset.rows("train")
    largest = max(batch_sizes or [config.train.batch_size])
    if largest > rows:  # every batch would be the whole split: batch sizes above it are one
        what = "the search's candidate" if batch_sizes else "batch size"
        raise ConfigError(f"{what} {largest} is larger than the training split ({rows} "
                          f"row{'s' * (rows != 1)})", key="train.batch_size",
                          fix=f"use at most {rows}, or add scenes / data.augment.copies")
    return dataset


# What a resumed run may change: its length, patience and the machine it runs on. Anything
# else (data, model, loss, schedule, seed...) would silently splice two different runs.
RESUMABLE_CHANGES = frozenset({"train.max_epochs", "train.patience", "train.num_threads",
                               "train.output_dir"})


def check_resume_config(run_dir: Path, config: ExperimentConfig) -> None:
    """Refuse to resume ``run_dir`` with a config that differs from the one it was started
    with, beyond :data:`RESUMABLE_CHANGES` (checked before anything in the run is written)."""
    import yaml

    from raygym.config import validate_experiment

    saved_path = run_dir / "config.yaml"
    try:
        saved = validate_experiment(yaml.safe_load(saved_path.read_text()), str(saved_path))
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"cannot read the run's config: {type(err).__name__}", file=saved_path,
                        fix="give the runs/<name> folder of the stopped run") from None
    old = dotted({k: saved.to_yaml_dict()[k] for k in ("data", "model", "loss", "train")})
    new = dotted({k: config.to_yaml_dict()[k] for k in ("data", "model", "loss", "train")})
    for key in sorted(old.keys() | new.keys()):
        if key not in RESUMABLE_CHANGES and old.get(key) != new.get(key):
            raise ConfigError(f"{new.get(key)!r} here but {old.get(key)!r} in the run being "
                              f"resumed ({saved_path})", key=key,
                              fix=f"resume with the run's own settings (--set {key}="
                              f"{old.get(key)}), or start a new run without --resume")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest whole checkpoint folder (by epoch in its state.json) under ``run_dir/ray``;
    a copy cut short by a kill is not resumable (:func:`raygym.train.loop.checkpoint_readable`)."""
    from raygym.train.loop import newest_whole_checkpoint

    return newest_whole_checkpoint(
        state.parent for state in (run_dir / "ray").glob("**/checkpoint_*/state.json"))


# Text columns: never parsed as numbers (stop_reason 'nan' is not float NaN; a node id such as
# '12e3...' is not a float).
TEXT_COLUMNS = frozenset({"stop_reason", "precision", "node_id"})


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """``metrics.csv`` rows: numbers as floats, empty cells as None."""
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append({k: (v or None) if k in TEXT_COLUMNS else _num(v)
                         for k, v in row.items()})
    return rows


def _num(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def train_experiment(config: ExperimentConfig, *, resume: Path | None = None,
                     console: Console | None = None, run_name: str | None = None) -> Path:
    """Train one model on Ray Train and export ``best/``; returns the run folder.

    Tracking: TensorBoard events in the run folder; with ``mlflow.enabled`` one MLflow run
    (:mod:`raygym.train.tracking`)."""
    from raygym.tracking import require_mlflow

    console = console or Console()
    if run_name is not None and not re.fullmatch(NAME_PATTERN, run_name):
        raise ConfigError(f"{run_name!r} is not a run name (its folder is train.output_dir/<name>)",
                          key="--name", fix=f"use {NAME_RULE}")
    require_mlflow(config)
    if resume is not None:
        run_dir = resume.resolve()
        if not (run_dir / "config.yaml").exists():
            raise DataError("not a raygym run folder (no config.yaml)", file=run_dir,
                            fix="give the runs/<name> folder of the stopped run")
        check_resume_config(run_dir, config)
    else:
        from raygym.data.prepare import prepare_if_missing

        prepare_if_missing(config, log=console.print)  # one command, as for a search
    dataset = check_dataset(config)
    if resume is None:
        from raygym.train.init_weights import check_init_weights

        if starting := check_init_weights(config, dataset.card):
            console.print(starting)
        name = run_name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = (config.train.output_dir / name).resolve()
        if run_dir.exists() and any(run_dir.iterdir()):
            raise DataError("run folder already exists", file=run_dir,
                            fix="use --resume to continue it, or another --name")
    from raygym.train.tracking import TrainTracking

    # Before Ray: an unusable MLflow store is refused first.
    tracking = TrainTracking.start(config, run_dir)
    with tracking.active():
        return _train_and_export(config, dataset, run_dir, resume, tracking, console)


def _train_and_export(config: ExperimentConfig, dataset: PreparedDataset, run_dir: Path,
                      resume: Path | None, tracking: TrainTracking, console: Console
                      ) -> Path:
    """``train_experiment`` from Ray's start on (``tracking``: its TrainTracking)."""
    from raygym.ray_runtime import ensure_ray
    from raygym.train.ray_train import check_device, check_resources, run_torch_trainer

    # Before the run folder is touched: a refused request must not block a retry of this name.
    r = config.resources
    check_device(r)
    ensure_ray(config.resources)
    check_resources(r.workers_per_trial, r.cpus_per_worker, r.gpus_per_worker)
    resume_dir = None
    if resume is not None:
        resume_dir = latest_checkpoint(run_dir)
        done = read_metrics(run_dir / METRICS_CSV)
        console.print(f"resuming {run_dir.name} from "
                      + (f"{resume_dir.name}" if resume_dir else "the start")
                      + f" ({len(done)} epochs done)")
        # Rows past the checkpoint are rerun: drop them (all rows when there is no checkpoint).
        _truncate_metrics(run_dir / METRICS_CSV,
                          checkpoint_epoch(resume_dir) if resume_dir is not None else 0)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    dump_yaml(config, run_dir / "config.yaml")

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run_torch_trainer(config, run_dir, resume_dir=resume_dir,
                                                  callbacks=tracking.callbacks)
        except BaseException as err:  # noqa: BLE001 - re-raised on the main thread
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    _follow_progress(thread, run_dir / METRICS_CSV, config.train.max_epochs, console)
    thread.join()
    if "error" in outcome:
        raise _user_error(outcome["error"]) from None
    result = outcome["result"]
    if getattr(result, "error", None):
        raise _user_error(result.error)
    rows = read_metrics(run_dir / METRICS_CSV)
    if rows and diverged(rows[-1]):
        last_good = latest_checkpoint(run_dir)
        kept = (f"the last good checkpoint is kept in {last_good}" if last_good is not None
                else "no epoch finished, so there is no checkpoint")
        raise RunFailedError(
            f"training loss became NaN (or infinite) at epoch {int(rows[-1]['epoch'])}; {kept}",
            key="train.max_lr", fix="lower the learning rate or check the data")
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RunFailedError("training produced no checkpoint", file=run_dir,
                             fix="see the Ray Train log above for the cause")
    export_best(config, dataset.card, checkpoint, run_dir / "best", rows)
    from raygym.plots import learning_curves

    learning_curves(rows, run_dir / "curves.png", title=run_dir.name)
    _print_final(rows, run_dir, dataset.card, console)
    where = tracking.log_outputs(_card_metrics(run_dir))
    if where:
        console.print(where)
    return run_dir


def _card_metrics(run_dir: Path) -> dict[str, Any]:
    """The exported model's scores (its kept epoch), from ``best/model_card.json``."""
    import json

    return json.loads((run_dir / "best" / "model_card.json").read_text())["metrics"]


def _truncate_metrics(path: Path, epochs: int) -> None:
    """Drop rows past the checkpoint being resumed, so no epoch is listed twice."""
    if not path.exists():
        return
    with path.open(newline="") as fh:  # the text as written (no float round trip: 1 not 1.0)
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames or []), list(reader)
    if not fields:
        return
    keep = [r for r in rows if _num(r.get("epoch")) is not None and _num(r["epoch"]) <= epochs]
    write_metrics_rows(path, fields, keep)


def export_best(config: ExperimentConfig, card: DatasetCard, checkpoint: Path, out: Path,
                rows: list[dict[str, Any]]) -> Path:
    """Export the best weights stored in ``checkpoint`` as a model artifact."""
    from safetensors.torch import load_file

    from raygym.inference.artifact import export_artifact
    from raygym.train.loop import build_model_for

    model = build_model_for(config, card.bands, card.num_classes)
    state = load_file(str(checkpoint / "best.safetensors"))
    model.load_state_dict(state)
    import json

    fit_state = json.loads((checkpoint / "state.json").read_text())
    metrics = dict(fit_state.get("best_metrics") or {})
    return export_artifact(
        out, model, config, in_channels=card.bands, classes=card.classes, metrics=metrics,
        dataset=card.model_dataset(config.data.prepared),
        training={"epochs_run": len(rows), "best_epoch": fit_state.get("best_epoch"),
                  "stop_reason": rows[-1].get("stop_reason") if rows else None},
    )


def _follow_progress(thread: threading.Thread, metrics_csv: Path, max_epochs: int,
                     console: Console) -> None:
    """A progress bar fed by the rank-0 worker's ``metrics.csv`` while training runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("epochs", total=max_epochs, info="starting Ray Train ...")
        while thread.is_alive():
            thread.join(timeout=1.0)
            rows = read_metrics(metrics_csv)
            if rows:
                last = rows[-1]
                miou = last.get("val_mean_iou")
                info = (f"train {last.get('train_loss', math.nan):.4f}  "
                        f"val {last.get('val_loss') or math.nan:.4f}  "
                        f"mIoU {miou if miou is not None else math.nan:.3f}")
                total = max_epochs if not last.get("stop_reason") else len(rows)
                progress.update(task, completed=len(rows), total=total, info=info)


def _print_final(rows: list[dict[str, Any]], run_dir: Path, card: DatasetCard,
                 console: Console) -> None:
    import json

    best = json.loads((run_dir / "best" / "model_card.json").read_text())["metrics"]
    table = Table(title=f"{run_dir.name}: best epoch {int(best.get('epoch') or 0)} of "
                        f"{len(rows)} ({rows[-1].get('stop_reason') if rows else ''})")
    table.add_column("class")
    table.add_column("val IoU", justify="right")
    for name in card.classes:
        v = best.get(f"val_iou/{name}")
        table.add_row(name, "absent" if v is None else f"{v:.3f}")
    table.add_row("[bold]mean", f"[bold]{best.get('val_mean_iou') or math.nan:.3f}")
    console.print(table)
    console.print(f"model: [bold]{run_dir / 'best'}[/]   curves: {run_dir / 'curves.png'}")


def _user_error(err: BaseException) -> RaygymError:
    """Reduce a Ray Train failure to one line naming its root cause."""
    if isinstance(err, RaygymError):
        return err
    cause: BaseException | None = err
    seen = set()
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, RaygymError):
            return cause
        nxt = cause.__cause__ or cause.__context__
        if nxt is None:
            break
        cause = nxt
    text = str(cause or err).strip().splitlines()
    last = [ln for ln in text if ln.strip()][-1] if text else type(err).__name__
    return RunFailedError(f"training failed: {last[:400]}")
