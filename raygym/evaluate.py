"""``raygym evaluate``: score an exported model (or a search's top-k) on a whole prepared split.

Only the *original* rows of the split are scored (``copy == 0``: augmented copies exist only in
train, but never count twice), every one of them (Gym evaluated 10 batches of the last epoch).
Each sample is fed exactly as in validation during training: standardized over its valid
region (:func:`raygym.data.batch.to_batch`), padded pixels ignored (label 255).

Outputs, in ``<model_dir>/evaluation_<split>/`` (inside the artifact folder, so every model of a
search, ``best/rank<N>_<trial>/``, has its own; the artifact's checksums cover only its own
files, so this does not invalidate it; another ``--dataset`` than the model's gets
``evaluation_<dataset folder>_<split>/`` beside it), each written atomically (temp file +
rename):

- ``metrics.json``: mean IoU, per-class IoU / Dice (F1) / precision / recall, overall accuracy,
  frequency-weighted IoU, KLD (mean KL(one-hot || softmax) per pixel), Matthews correlation,
  the confusion matrix and what was evaluated;
- ``confusion.csv`` (counts; rows truth, columns prediction) and ``confusion.png``
  (row-normalised heat-map);
- ``per_image.csv`` (per source image: mean IoU over the classes present in its truth or
  prediction, accuracy, pixels, per-class IoU) and ``per_image_iou.png`` (histogram);
- ``worst.png`` / ``best.png``: image | truth | prediction for the k lowest / highest per-image
  mean IoU.

Two engines give identical confusion matrices: plain PyTorch in this process (default), or Ray
Data (``use_ray``): the split's Parquet shards are read lazily and scored by a pool of actors,
each holding the model once (``map_batches`` with a callable class), for large test sets.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raygym.atomic import created_on_success, write_text_atomic
from raygym.errors import DataError, RaygymError
from raygym.inference.scoring import EnsembleScorer, LoadedModel, load_model, score_batch
from raygym.predict.ensemble import DEFAULT_MARGIN, EnsembleWeights

DEFAULT_BATCH = 8
DEFAULT_OVERLAYS = 4


@dataclass
class EvaluationResult:
    """Scores of one model on one split.

    ``confusion`` is ``(K, K)`` int64 (rows truth, columns prediction); ``metrics`` is
    :func:`raygym.train.metrics.metrics_from_confusion`'s dict plus ``kld``; ``per_image`` holds
    one dict per source image (``key``, ``mean_iou``, ``accuracy``, ``pixels``, ``iou/<class>``).
    """

    model_dir: Path
    dataset_dir: Path
    split: str
    out_dir: Path
    classes: list[str]
    confusion: np.ndarray
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]]
    seconds: float
    engine: str
    warnings: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    units: list[str] = field(default_factory=list)
    """What the intervals resample: the images' keys, or their scenes' or groups' (see
    :meth:`raygym.data.dataset.DatasetCard.resampling_units`), each once."""
    unit_name: str = "images"
    unit_confusions: np.ndarray | None = None
    """``(U, K, K)``: the images' confusions summed per unit of :attr:`units`."""
    intervals: dict[str, Any] | None = None
    """:func:`raygym.evaluate_intervals.score_intervals` of ``unit_confusions``."""
    members: list[Path] = field(default_factory=list)
    """The model folders scored: ``[model_dir]``, or an ensemble's kept members (``model_dir``
    is then the search results folder)."""
    ensemble: dict[str, Any] | None = None
    """An ensemble's rule and members (:meth:`raygym.predict.ensemble.EnsemblePlan.to_json`)."""

    @property
    def is_ensemble(self) -> bool:
        """Scored as an ensemble (its rule may have kept one member only)."""
        return self.ensemble is not None

    @property
    def label(self) -> str:
        """``x/best``, or ``ensemble of rank1_a, rank2_b`` (its members kept)."""
        from raygym.evaluate_members import ensemble_label

        return ensemble_label(self.members) if self.is_ensemble else model_label(self.model_dir)

    @property
    def mean_iou(self) -> float:
        return float(self.metrics["mean_iou"])

    @property
    def num_images(self) -> int:
        return len(self.per_image)

    @property
    def subject(self) -> str:
        """What was scored, for titles: ``test split``, or ``site.yaml (full size)``."""
        full = self.engine.startswith("predict")
        return f"{self.split} (full size)" if full else f"{self.split} split"


# ---------------------------------------------------------------------------- scoring
class EvalActor:
    """Ray Data actor: loads the artifact (or an ensemble's members) once, scores batches of
    Parquet rows.

    Rows in: ``key``, ``copy``, ``image``, ``label``, ``valid_hw`` (the prepared shard columns);
    rows with ``copy != 0`` are dropped. Rows out: ``key``, ``cm`` (K*K int64), ``kld_sum``,
    ``n_valid``.
    """

    def __init__(self, model_dirs: list[str], weights: list[float], threads: int = 1) -> None:
        torch.set_num_threads(max(1, threads))
        self.loaded = load_scorer([Path(p) for p in model_dirs], weights, "cpu")
        self.card = self.loaded.card

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        k = self.card.num_classes
        keep = np.asarray(batch["copy"]) == 0
        keys = np.asarray(batch["key"], dtype=object)[keep]
        if not keep.any():
            return {"key": keys, "cm": np.zeros((0, k * k), np.int64),
                    "kld_sum": np.zeros(0, np.float64), "n_valid": np.zeros(0, np.int64)}
        cms, kld, n_valid, _ = score_batch(
            self.loaded, np.asarray(batch["image"])[keep], np.asarray(batch["label"])[keep],
            np.asarray(batch["valid_hw"])[keep])
        return {"key": keys, "cm": cms.reshape(len(cms), k * k), "kld_sum": kld,
                "n_valid": n_valid}


def load_scorer(members: list[Path], weights: list[float], device: str
                ) -> LoadedModel | EnsembleScorer:
    """The one model, or the ensemble of ``members`` with ``weights`` (one per member, as
    :func:`raygym.predict.ensemble.plan_ensemble` keeps them), loaded on ``device``."""
    if len(members) == 1:
        return load_model(members[0], device=device)
    return EnsembleScorer([load_model(p, device=device) for p in members], weights)


def _score_plain(members: list[Path], weights: list[float], dataset: Any, split: str,
                 batch_size: int, device: str
                 ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    loaded = load_scorer(members, weights, device)
    arrays = dataset.load_numpy(split, originals_only=True)
    k = loaded.card.num_classes
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(arrays), batch_size):
        sl = slice(start, start + batch_size)
        cms, kld, n_valid, _ = score_batch(loaded, arrays.images[sl], arrays.labels[sl],
                                           arrays.valid_hw[sl])
        parts.append((cms, kld, n_valid))
    if not parts:
        return [], np.zeros((0, k, k), np.int64), np.zeros(0), np.zeros(0, np.int64)
    return (list(arrays.keys), np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]))


def _score_ray(members: list[Path], weights: list[float], dataset: Any, split: str,
               num_classes: int, batch_size: int, actors: int | None, address: str | None = None
               ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    import ray

    from raygym.config import ResourcesConfig
    from raygym.ray_runtime import cluster_cpus, ensure_ray

    ensure_ray(ResourcesConfig(address=address), progress_bars=True, address_key="--address")
    n = actors or max(1, int(cluster_cpus()))
    rows = max(1, dataset.rows(split))
    blocks = max(1, min(math.ceil(rows / batch_size), n * 4))
    ds = dataset.ray_dataset(split, columns=("key", "copy", "image", "label", "valid_hw"))
    if blocks > 1:
        ds = ds.repartition(blocks)
    scored = ds.map_batches(EvalActor, batch_size=batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(min_size=1,
                                                               max_size=max(1, min(n, blocks))),
                            num_cpus=1, fn_constructor_kwargs={
                                "model_dirs": [str(p) for p in members], "weights": weights,
                                "threads": 1})
    out = scored.take_all()
    out.sort(key=lambda r: str(r["key"]))
    k = num_classes
    keys = [str(r["key"]) for r in out]
    if len(set(keys)) != len(keys):
        raise DataError(f"split '{split}' holds duplicate keys among its original rows",
                        file=dataset.path)
    cms = (np.stack([np.asarray(r["cm"], np.int64).reshape(k, k) for r in out]) if out
           else np.zeros((0, k, k), np.int64))
    kld = np.asarray([float(r["kld_sum"]) for r in out], np.float64)
    n_valid = np.asarray([int(r["n_valid"]) for r in out], np.int64)
    return keys, cms, kld, n_valid


# ------------------------------------------------------------------------------ helpers


def confusion_csv_text(cm: np.ndarray, classes: list[str]) -> str:
    """CSV of counts: header ``truth\\prediction,<classes>``, one row per true class."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["truth\\prediction", *classes])
    for name, row in zip(classes, cm, strict=True):
        w.writerow([name, *[int(v) for v in row]])
    return buf.getvalue()


def read_confusion_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """Inverse of :func:`confusion_csv_text`: (class names, (K, K) int64 counts)."""
    with Path(path).open(newline="") as fh:
        rows = list(csv.reader(fh))
    classes = rows[0][1:]
    return classes, np.asarray([[int(v) for v in r[1:]] for r in rows[1:]], np.int64)


def searched_params(model_dir: Path) -> dict[str, Any]:
    """The values a search sampled for this model (its card's ``training.params``; {} for a
    train run or an unreadable card)."""
    from raygym.inference.artifact import read_model_card

    try:
        return dict(read_model_card(model_dir).training.get("params") or {})
    except (RaygymError, OSError, ValueError):
        return {}


def model_label(model_dir: Path) -> str:
    """``runs/x/best`` -> ``x/best`` (a short, unambiguous name for titles)."""
    p = Path(model_dir).resolve()
    return f"{p.parent.name}/{p.name}"


def check_writable(out: Path) -> None:
    """Create ``out`` (or refuse in one line: a read-only model folder, a file in the way)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DataError(f"cannot write the evaluation here: {err.strerror or err}", file=out,
                        key="--out", fix="give --out DIR in a writable place") from None


@contextlib.contextmanager
def output_dir(out: Path) -> Iterator[Path]:
    """Create ``out`` for the body that fills it (refused in one line where it cannot be
    written: :func:`check_writable`). When the body fails or is interrupted, the folders this
    created are removed again while still empty (:func:`~raygym.atomic.created_on_success`),
    so a refused or stopped evaluation leaves nothing behind."""
    with created_on_success(out):
        check_writable(out)
        yield out


def evaluation_name(split: str = "test", data_file: Path | None = None,
                    other_dataset: Path | None = None) -> str:
    """The report's name: ``evaluation_<split>`` for a split of the model's own dataset,
    ``evaluation_<dataset folder>_<split>`` for one of ``other_dataset`` (``--dataset``
    other than the model's), ``evaluation_scenes_<file stem>`` for labelled scenes at full
    size (``--data``), so that none replaces another (a ``test.yaml`` beside the test
    split, a second site's dataset beside the first)."""
    if data_file is not None:
        return f"evaluation_scenes_{Path(data_file).stem}"
    if other_dataset is not None:
        return f"evaluation_{Path(other_dataset).resolve().name}_{split}"
    return f"evaluation_{split}"


def other_dataset(model_dir: Path, dataset_dir: Path | None) -> Path | None:
    """``dataset_dir`` when it is not the dataset the model card names (a ``--dataset`` of
    another site or other settings), else None."""
    if dataset_dir is None:
        return None
    # only to name a folder: the card's JSON as is, not a second checksum pass over the
    # weights (loading the model verifies every file)
    try:
        card = json.loads((Path(model_dir) / "model_card.json").read_text(encoding="utf-8"))
        own = (card.get("dataset") or {}).get("path")
    except (OSError, ValueError, AttributeError):
        own = None
    same = own is not None and Path(own).resolve() == Path(dataset_dir).resolve()
    return None if same else Path(dataset_dir)


def evaluation_dir(model_dir: Path, split: str, dataset_dir: Path | None = None) -> Path:
    """Where :func:`evaluate_model_on_split` writes: ``<model_dir>/evaluation_<split>/``
    (see :func:`evaluation_name` for another dataset's)."""
    return Path(model_dir) / evaluation_name(
        split, other_dataset=other_dataset(model_dir, dataset_dir))


def default_dataset(model_dir: Path) -> Path:
    """The prepared dataset named in the model card (``card.dataset["path"]``)."""
    from raygym.inference.artifact import read_model_card

    card = read_model_card(model_dir)
    path = card.dataset.get("path")
    if not path:
        raise DataError("the model card names no dataset", file=model_dir,
                        fix="pass --dataset PREPARED_DATASET")
    return Path(path)


def _check_compatible(model_dir: Path, card: Any, dataset: Any) -> list[str]:
    from raygym.models import requires_multiple_of

    dcard = dataset.card
    if list(dcard.classes) != list(card.classes):
        raise DataError(f"dataset classes {dcard.classes} differ from the model's "
                        f"{card.classes}", file=dataset.path,
                        fix="evaluate on the dataset the model was trained for")
    if dcard.bands != card.in_channels:
        raise DataError(f"dataset has {dcard.bands} bands but the model expects "
                        f"{card.in_channels}", file=dataset.path)
    multiple = requires_multiple_of(card.arch, **card.model_params)
    if any(int(s) % multiple for s in dcard.target_size):
        raise DataError(f"dataset size {dcard.target_size} is not a multiple of {multiple} "
                        f"for model '{card.arch}'", file=dataset.path)
    warnings = []
    trained_on = card.dataset.get("config_hash")
    if trained_on and trained_on != dcard.config_hash:
        warnings.append(f"{dataset.path} was prepared from other data settings than the "
                        f"dataset {model_dir.name} was trained on")
    return warnings


def _overlay_rows(members: list[Path], weights: list[float], dataset: Any, split: str,
                  picks: list[tuple[str, float]], num_classes: int, device: str
                  ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Re-predict the few picked samples (read by key) for the image | truth | prediction rows."""
    import pyarrow.parquet as pq

    from raygym.data.dataset import decode_table
    from raygym.data.preview import colourize, display_rgb
    from raygym.data.transforms import crop_valid
    if not picks:
        return []
    keys = [k for k, _ in picks]
    table = pq.read_table(dataset.split_dir(split),
                          columns=["key", "copy", "image", "label", "valid_hw"],
                          filters=[("copy", "=", 0), ("key", "in", keys)])
    found = {k: i for i, k in enumerate(table.column("key").to_pylist())}
    cols = decode_table(table, dataset.card.tensor_specs())
    images, labels, valid = cols["image"], cols["label"], cols["valid_hw"]
    loaded = load_scorer(members, weights, device)
    card = loaded.card
    order = [found[k] for k in keys]
    _, _, _, pred = score_batch(loaded, images[order], labels[order], valid[order])
    rows = []
    for j, (key, iou) in enumerate(picks):
        i = found[key]
        hw = tuple(int(v) for v in valid[i]) if valid[i][0] > 0 else labels[i].shape
        truth = crop_valid(labels[i], hw)
        p = crop_valid(pred[j], hw).copy()
        p[truth == card.ignore_index] = card.ignore_index  # what was not scored stays black
        rows.append((f"{key}  (IoU {iou:.3f})", display_rgb(crop_valid(images[i], hw)),
                     colourize(truth, num_classes, card.ignore_index),
                     colourize(p, num_classes, card.ignore_index)))
    return rows


# ---------------------------------------------------------------------------- library
def evaluate_model_on_split(model_dir: Path | Sequence[Path], dataset_dir: Path | None,
                            split: str = "test", *, out_dir: Path | None = None,
                            use_ray: bool = False, batch_size: int = DEFAULT_BATCH,
                            overlays: int = DEFAULT_OVERLAYS, device: str = "cpu",
                            ray_actors: int | None = None, ray_address: str | None = None,
                            ensemble_margin: float = DEFAULT_MARGIN,
                            ensemble_weights: EnsembleWeights = "score") -> EvaluationResult:
    """Score ``model_dir`` on every original row of ``split`` and write the report files.

    Args:
        model_dir: a model artifact folder (checksums verified; weights via safetensors); or
            several, best first (a search's top-k): their ensemble as ``raygym predict
            --top-k`` maps with it (members within ``ensemble_margin`` of the best kept,
            ``ensemble_weights``: :mod:`raygym.predict.ensemble`).
        dataset_dir: the prepared dataset; None = the one in the (first) model card.
        split: ``train`` | ``val`` | ``test``.
        out_dir: where to write (default :func:`evaluation_dir`: ``evaluation_<split>`` in
            the model folder, ``evaluation_<dataset>_<split>`` for another dataset's; an
            ensemble's ``evaluation_<split>_top<k>_ensemble`` in the search results folder).
        use_ray: score with a Ray Data actor pool instead of in this process.
        batch_size: samples per forward pass.
        overlays: k of the worst-k / best-k figures (0 = none).
        device: for the plain path and overlays (``cpu``, ``cuda``, ``auto``).
        ray_actors: actor pool size (default: one per cluster CPU).
        ray_address: with ``use_ray``, the Ray cluster to join (default: ``RAY_ADDRESS``,
            else a local Ray).

    Returns:
        An :class:`EvaluationResult` (files listed in ``files``).

    Raises:
        DataError: tampered / incomplete artifact, missing dataset or split, incompatible
            classes or bands.
    """
    from raygym.data.dataset import PreparedDataset
    from raygym.evaluate_members import ScoredModels
    from raygym.inference.artifact import read_model_card

    started = time.perf_counter()
    scored = ScoredModels.of(model_dir, margin=ensemble_margin, weights=ensemble_weights)
    first = scored.first
    card = read_model_card(first)
    name = evaluation_name(split, other_dataset=other_dataset(first, dataset_dir))
    default_out = scored.home / scored.folder_name(name)
    dataset_dir = Path(dataset_dir) if dataset_dir is not None else default_dataset(first)
    if not dataset_dir.exists():
        raise DataError("prepared dataset not found", file=dataset_dir,
                        fix="pass --dataset, or run `raygym prepare CONFIG` again")
    dataset = PreparedDataset(dataset_dir)
    warnings = list(dict.fromkeys(w for m in scored.members for w in _check_compatible(
        m, card if m == first else read_model_card(m), dataset)))
    if not dataset.has_split(split):
        raise DataError(f"dataset has no '{split}' split", file=dataset_dir,
                        fix="choose another --split, or set data.split fractions")
    out = Path(out_dir) if out_dir is not None else default_out
    members, weights = scored.members, scored.weights
    with output_dir(out):  # before minutes of scoring, not after
        classes = list(card.classes)
        k = len(classes)
        if use_ray:
            keys, cms, kld, n_valid = _score_ray(members, weights, dataset, split, k,
                                                 batch_size, ray_actors, ray_address)
        else:
            keys, cms, kld, n_valid = _score_plain(members, weights, dataset, split, batch_size,
                                                   device)
        if not keys:
            raise DataError(f"split '{split}' has no original rows", file=dataset_dir)
        title = f"{scored.label} on {dataset_dir.name}/{split} ({len(keys)} images)"
        return write_evaluation(
            scored.home, card, out, keys, cms, kld, n_valid, title=title,
            overlay_rows=lambda picks: _overlay_rows(members, weights, dataset, split, picks, k,
                                                     device),
            overlays=overlays, started=started, engine="ray-data" if use_ray else "torch",
            dataset_dir=dataset_dir, split=split, warnings=warnings,
            report={"dataset": str(dataset_dir), "split": split, "originals_only": True,
                    **scored.to_json()},
            units=dataset.card.resampling_units(keys), members=scored.members)


def write_evaluation(model_dir: Path, card: Any, out: Path, keys: list[str], cms: np.ndarray,
                     kld: np.ndarray, n_valid: np.ndarray, *, title: str,
                     overlay_rows: Any, overlays: int, started: float, engine: str,
                     dataset_dir: Path, split: str, warnings: list[str],
                     report: dict[str, Any], units: tuple[list[str], str] | None = None,
                     members: list[Path] | None = None) -> EvaluationResult:
    """The report files of one model's scores (one path for a prepared split and for labelled
    scenes at full size): ``cms`` ``(N, K, K)`` per image (rows truth), ``kld`` / ``n_valid``
    ``(N,)`` summed KLD and valid pixels per image; ``overlay_rows(picks)``: the
    image | truth | prediction rows of ``[(key, mean IoU)]``; ``report``: what was scored, for
    ``metrics.json``; ``units``: each image's resampling unit and the units' name (default:
    each image its own); ``members``: an ensemble's models (``model_dir`` is then the
    search results folder they came from)."""
    from raygym.data.preview import class_colours
    from raygym.evaluate_intervals import intervals_json, score_intervals, unit_confusions
    from raygym.plots import confusion_heatmap, image_truth_prediction_grid, value_histogram
    from raygym.train.metrics import json_safe, metrics_from_confusion

    classes = list(card.classes)
    total = cms.sum(axis=0)
    metrics = metrics_from_confusion(total, classes)
    of_image, unit_name = units if units is not None else (list(keys), "images")
    unit_keys, per_unit = unit_confusions(cms, of_image)
    intervals = score_intervals(per_unit)
    metrics["kld"] = float(kld.sum() / n_valid.sum()) if int(n_valid.sum()) > 0 else math.nan
    per_image: list[dict[str, Any]] = []
    for key, cm in zip(keys, cms, strict=True):
        m = metrics_from_confusion(cm, classes)
        row: dict[str, Any] = {"key": key, "mean_iou": m["mean_iou"], "accuracy": m["accuracy"],
                               "pixels": m["num_pixels"]}
        row.update({f"iou/{c}": m[f"iou/{c}"] for c in classes})
        per_image.append(row)

    files: dict[str, Path] = {}
    files["confusion_csv"] = write_text_atomic(out / "confusion.csv", confusion_csv_text(total, classes))
    files["confusion_png"] = confusion_heatmap(total, classes, out / "confusion.png", title=title)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(per_image[0]))
    writer.writeheader()
    for row in per_image:
        writer.writerow({c: ("" if isinstance(v, float) and not math.isfinite(v) else v)
                         for c, v in row.items()})
    files["per_image_csv"] = write_text_atomic(out / "per_image.csv", buf.getvalue())
    ious = [r["mean_iou"] for r in per_image]
    files["per_image_png"] = value_histogram(ious, out / "per_image_iou.png",
                                             xlabel="per-image mean IoU", title=title)
    scored = sorted(((r["key"], float(r["mean_iou"])) for r in per_image
                     if math.isfinite(r["mean_iou"])), key=lambda t: (t[1], t[0]))
    n_pick = min(overlays, len(scored))
    if n_pick:
        colours = class_colours(len(classes))
        for name, picks in (("worst", scored[:n_pick]), ("best", scored[::-1][:n_pick])):
            files[name] = image_truth_prediction_grid(
                overlay_rows(picks), classes, colours, out / f"{name}.png",
                title=f"{name} {n_pick} by per-image mean IoU: {title}")
    seconds = time.perf_counter() - started
    document = {
        "model": str(model_dir), "model_name": card.name, "arch": card.arch, **report,
        "images": len(keys), "engine": engine, "classes": classes,
        "metrics": json_safe(metrics),
        "intervals": intervals_json(intervals, classes, len(unit_keys), unit_name),
        "confusion": total.tolist(),
        "confusion_axes": "rows truth, columns prediction", "seconds": round(seconds, 3),
        "warnings": warnings, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    files["metrics_json"] = write_text_atomic(out / "metrics.json",
                                              json.dumps(document, indent=2, allow_nan=False))
    return EvaluationResult(model_dir=model_dir, dataset_dir=dataset_dir, split=split,
                            out_dir=out, classes=classes, confusion=total, metrics=metrics,
                            per_image=per_image, seconds=seconds, engine=engine,
                            warnings=warnings, files=files, units=unit_keys,
                            unit_name=unit_name, unit_confusions=per_unit, intervals=intervals,
                            members=list(members or [model_dir]),
                            ensemble=report.get("ensemble"))
