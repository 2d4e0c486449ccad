"""The best-model section: the exported model's card, its validation scores from training,
and, recomputed on its dataset's test split (or val), per-class scores, a confusion matrix and
the images with the best, median and worst per-image mean IoU.

The model is loaded and scored through :mod:`raygym.inference.scoring`, the one inference
path evaluate and predict use too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raygym.errors import DataError
from raygym.report.document import ReportDocument, cell_text, one_line
from raygym.report.figures import pyplot
from raygym.report.results import SearchResults, as_float

if TYPE_CHECKING:
    from raygym.inference.artifact import ModelCard

N_SAMPLES = 3
"""Sample images shown: the best, median and worst by per-image mean IoU."""

@dataclass
class SplitEvaluation:
    """The best model scored on one held-out split of its dataset.

    ``split``: ``"test"`` or ``"val"``; ``metrics``: ``metrics_from_confusion`` of the whole
    split (``mean_iou``, ``iou/<class>``, ...); ``matrix``: ``(K, K)`` int64 pixel counts, rows
    truth, columns prediction; ``samples``: ``(key, image (H, W, C), label (H, W) uint8 with 255
    ignored, prediction (H, W) uint8, per-image mean IoU)``, cropped to the valid area.
    """

    split: str
    metrics: dict[str, Any]
    matrix: np.ndarray
    samples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]
    mean_iou_interval: Any = None
    """The mean IoU's bootstrap interval over the split's :attr:`units` (images, or scenes or
    groups of them: :func:`raygym.evaluate_intervals.score_intervals`), None for one."""
    units: int = 0
    unit_name: str = "images"


def evaluate_best(artifact: Path, batch_size: int = 16) -> SplitEvaluation | str:
    """Score an artifact on its dataset's test split (or val), on the CPU, ``batch_size``
    images at a time; a note string when impossible (dataset gone or prepared again)."""
    from raygym.data.dataset import PreparedDataset
    from raygym.inference.scoring import load_model, score_batch
    from raygym.train.metrics import metrics_from_confusion

    loaded = load_model(artifact, device="cpu")
    card = loaded.card
    ds_path = Path(str(card.dataset.get("path", "")))
    if not ds_path or not (ds_path / "card.json").is_file():
        return (f"the dataset the model was trained on ({ds_path}) is gone: confusion matrix "
                "and sample predictions skipped.")
    ds = PreparedDataset(ds_path)
    want = card.dataset.get("config_hash")
    if want and ds.card.config_hash != want:
        return (f"the dataset at {ds_path} was prepared again with different settings since "
                "this model was trained: confusion matrix and samples skipped.")
    split = next((s for s in ("test", "val") if ds.has_split(s)), None)
    if split is None:
        return f"the dataset at {ds_path} has no test or val split."
    arrays = ds.load_numpy(split, originals_only=True)
    k = card.num_classes
    total = np.zeros((k, k), dtype=np.int64)
    per_image: list[tuple[float, int]] = []
    image_confusions: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    for start in range(0, len(arrays), batch_size):
        sl = slice(start, start + batch_size)
        cms, _, _, pred = score_batch(loaded, arrays.images[sl], arrays.labels[sl],
                                      arrays.valid_hw[sl])
        for i, cm in enumerate(cms):
            total += cm
            image_confusions.append(cm)
            per_image.append((metrics_from_confusion(cm)["mean_iou"], start + i))
        preds.extend(pred)
    metrics = metrics_from_confusion(total, card.classes)
    scored = sorted((p for p in per_image if not math.isnan(p[0])), key=lambda p: -p[0])
    picks = [scored[0], scored[len(scored) // 2], scored[-1]] if len(scored) >= 3 else scored
    samples = []
    for miou, idx in picks[:N_SAMPLES]:
        h, w = (int(v) for v in arrays.valid_hw[idx])
        h, w = (h, w) if h > 0 else arrays.images[idx].shape[:2]
        label = arrays.labels[idx][:h, :w]
        pred = preds[idx][:h, :w].copy()
        samples.append((arrays.keys[idx], arrays.images[idx][:h, :w], label, pred, miou))
    from raygym.evaluate_intervals import score_intervals, unit_confusions

    units, unit_name = ds.card.resampling_units(list(arrays.keys))
    order, per_unit = (unit_confusions(np.stack(image_confusions), units) if image_confusions
                       else ([], np.zeros((0, k, k), np.int64)))
    intervals = score_intervals(per_unit) if len(order) else None
    return SplitEvaluation(split, metrics, total, samples,
                           intervals["mean_iou"] if intervals else None, len(order), unit_name)


def best_model_section(doc: ReportDocument, res: SearchResults) -> None:
    """The card of ``best/rank1_*``, its scores from training, then the held-out split's."""
    doc.section("best")
    found = sorted((res.path / "best").glob("rank1_*")) if (res.path / "best").is_dir() else []
    if not found:
        doc.note("no exported model (best/rank1_*): the search is running, or every trial "
                 "failed.")
        return
    artifact = found[0]
    from raygym.inference.artifact import read_model_card

    try:
        card = read_model_card(artifact)
    except DataError as err:
        doc.note(str(err))
        return
    doc.kv(_card_rows(artifact, card))
    m = card.metrics
    doc.heading("Validation scores at the best epoch (from training)")
    doc.table(["metric", "value"], [[k, as_float(m.get(f"val_{k}"))] for k in
                                    ("mean_iou", "mean_dice", "accuracy", "fw_iou", "mcc",
                                     "loss") if f"val_{k}" in m])
    try:
        ev = evaluate_best(artifact)
    except Exception as err:  # any load / inference problem: say so, keep the report
        ev = f"evaluating the best model failed: {one_line(err)}"
    _per_class_table(doc, card, ev if isinstance(ev, SplitEvaluation) else None)
    if not isinstance(ev, SplitEvaluation):
        doc.note(ev)
        return
    em = ev.metrics
    doc.text(f"Recomputed on the '{ev.split}' split (original images, no augmented copies, "
             f"{em['num_pixels']:,} labelled pixels): mean IoU {em['mean_iou']:.4f}"
             + (f" (95 % interval {ev.mean_iou_interval.text()}, a bootstrap over its "
                f"{ev.units} {ev.unit_name})" if ev.mean_iou_interval is not None else "")
             + ", mean "
             f"Dice {em['mean_dice']:.4f}, accuracy {em['accuracy']:.4f}, frequency-weighted "
             f"IoU {em['fw_iou']:.4f}, MCC {em['mcc']:.4f}"
             + (f"; absent classes: {', '.join(em['absent_classes'])}"
                if em.get("absent_classes") else "") + ".")
    from raygym.plots import confusion_heatmap

    path = confusion_heatmap(ev.matrix, card.classes, doc.fig_dir / "confusion.png",
                             title=f"{ev.split} confusion matrix (row-normalised)")
    doc.figure_file(path, f"Confusion matrix of the best model on the {ev.split} split "
                    "(rows: truth, columns: prediction; counts in brackets).")
    if ev.samples:
        _samples_figure(doc, ev, card.classes)


def _card_rows(artifact: Path, card: ModelCard) -> list[tuple[str, Any]]:
    """The model card as key / value rows: trial, architecture, input, classes, dataset."""
    tr = card.training or {}
    return [
        ("artifact", str(artifact)),
        ("trial", f"{tr.get('trial_id', '?')} ({tr.get('status', '?')}, best epoch "
                  f"{tr.get('best_epoch', '?')} of {tr.get('epochs_run', '?')})"),
        ("architecture", card.arch),
        ("model parameters", ", ".join(f"{k}={v}" for k, v in card.model_params.items())),
        ("trainable parameters", f"{card.trainable_params:,}"),
        ("input", f"{card.in_channels} bands, {card.target_size[0]} x {card.target_size[1]} px"
                  + (f"; training scenes resized by {card.training_scale:.3g} (predict "
                     "resamples new images so)" if card.training_scale is not None else "")),
        ("classes", ", ".join(card.classes)),
        ("searched parameters", ", ".join(f"{k}={cell_text(v)}"
                                          for k, v in (tr.get("params") or {}).items())),
        *_started_from(tr.get("init_weights")),
        ("dataset", f"{card.dataset.get('path', '?')} (splits "
                    f"{card.dataset.get('splits', {})})"),
        *split_rows(card.dataset),
    ]


def _started_from(source: Any) -> list[tuple[str, str]]:
    """The row for a model trained from another's weights (``train.init_weights``), else []."""
    if not isinstance(source, dict):
        return []
    score = source.get("val_mean_iou")
    said = [f"model '{source['name']}'" if source.get("name") else "",
            f"val mean IoU {score:.3f}" if isinstance(score, int | float) else "",
            f"weights SHA-256 {str(source['weights_sha256'])[:12]}"
            if source.get("weights_sha256") else ""]
    detail = ", ".join(p for p in said if p)
    return [("started from", f"{source.get('path', '?')}" + (f" ({detail})" if detail else ""))]


def split_rows(dataset: dict[str, Any]) -> list[tuple[str, str]]:
    """How a model's dataset (``ModelCard.dataset``: its path and config hash) was split,
    read from the dataset's card while it is there and unchanged: by source image, or by
    ``data.split.group`` with groups and images per split. [] otherwise."""
    from raygym.data.dataset import read_card

    try:
        ds = read_card(Path(str(dataset.get("path", ""))))
    except DataError:  # gone or damaged: the evaluation below says so
        return []
    if ds.config_hash != dataset.get("config_hash"):
        return []
    chips = ds.data_config.get("chips")
    if isinstance(chips, dict) and chips.get("blocks"):
        n = chips["blocks"]
        per = ", ".join(f"{s} {info.get('chips', 0)}" for s, info in ds.splits.items())
        return [("split", f"by blocks of {n} x {n} chips of each scene (neighbouring chips "
                          f"across a block's edge sit in different splits): chips {per}")]
    if ds.group_rule is None:
        cut = " and cut into chips" if chips else ""
        return [("split", f"by source image{cut} (no data.split.group: crops of one scene may "
                          "sit in train and test)")]
    per = ", ".join(f"{s} {info.get('groups', 0)} group{'s' * (info.get('groups') != 1)} / "
                    f"{info.get('sources', 0)} images" for s, info in ds.splits.items())
    return [("split", f"by data.split.group '{ds.group_rule}', no group in two splits: {per}")]


def _per_class_table(doc: ReportDocument, card: ModelCard, ev: SplitEvaluation | None) -> None:
    """IoU / F1 / precision / recall per class: validation (from training), then the held-out
    split's and its pixel count when the model could be evaluated."""
    scores = ("iou", "f1", "precision", "recall")
    m = card.metrics
    per_class = []
    for c in card.classes:
        row: list[Any] = [c] + [as_float(m.get(f"val_{k}/{c}")) for k in scores]
        if ev is not None:
            row += [ev.metrics.get(f"{k}/{c}") for k in scores]
            row.append(int(ev.matrix[card.classes.index(c)].sum()))
        per_class.append(row)
    cols = ["class", "val IoU", "val F1", "val precision", "val recall"]
    if ev is not None:
        cols += [f"{ev.split} IoU", f"{ev.split} F1", f"{ev.split} precision",
                 f"{ev.split} recall", f"{ev.split} pixels"]
    doc.heading("Per-class scores")
    doc.table(cols, per_class)


def _samples_figure(doc: ReportDocument, ev: SplitEvaluation, classes: list[str]) -> None:
    """Image | truth | prediction of each sample, class colours over the image."""
    from raygym.data.preview import class_colours, display_rgb, overlay

    plt = pyplot()
    k = len(classes)
    n = len(ev.samples)
    aspect = float(np.mean([s[1].shape[1] / s[1].shape[0] for s in ev.samples]))
    panel_h = 3.4
    panel_w = min(4.5, max(1.6, panel_h * aspect))
    fig, axes = plt.subplots(n, 3, figsize=(3 * panel_w + 0.6, (panel_h + 0.7) * n + 0.4),
                             squeeze=False)
    what = ["best", "median", "worst"] if n == 3 else [""] * n
    for i, (key, image, label, pred, miou) in enumerate(ev.samples):
        axes[i][0].imshow(display_rgb(image), interpolation="nearest")
        axes[i][0].set_title(f"{what[i]}: image mean IoU {miou:.3f}", fontsize=8)
        axes[i][1].text(0.5, -0.04, key, transform=axes[i][1].transAxes, ha="center",
                        va="top", fontsize=6, color="#555")
        axes[i][1].imshow(overlay(image, label, k), interpolation="nearest")
        axes[i][1].set_title("truth", fontsize=8)
        pred = np.where(label == 255, 255, pred).astype(np.uint8) if label.shape == pred.shape \
            else pred
        axes[i][2].imshow(overlay(image, pred, k), interpolation="nearest")
        axes[i][2].set_title("prediction", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c / 255) for c in class_colours(k)]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="black"))
    fig.legend(handles, [*classes, "ignored"], loc="lower center", ncol=min(k + 1, 6),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    doc.figure(fig, "samples", f"{ev.split} images with the best, median and worst per-image "
               "mean IoU: image | truth | prediction (pixels the labels ignore are not "
               "coloured in the prediction either).")


