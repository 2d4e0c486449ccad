"""Matplotlib figures shared by train, search, evaluate and report (Agg backend, PNG files)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed, PNG output only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_atomic(fig: Any, path: Path, dpi: int = 90) -> Path:
    """Save a figure to ``path`` via a temp file and rename (never a half-written PNG)."""
    plt = pyplot()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def learning_curves(rows: list[dict[str, Any]], out: Path, title: str = "") -> Path:
    """Loss (train/val), val mean IoU and LR per epoch, in three panels."""
    plt = pyplot()
    epochs = [r.get("epoch") for r in rows]

    def series(key: str) -> list[float]:
        return [math.nan if r.get(key) is None else float(r[key]) for r in rows]

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(epochs, series("train_loss"), label="train")
    axes[0].plot(epochs, series("val_loss"), label="val")
    axes[0].set_title("loss")
    axes[0].legend()
    axes[1].plot(epochs, series("val_mean_iou"), color="tab:green")
    axes[1].set_title("val mean IoU")
    axes[1].set_ylim(0, 1)
    axes[2].plot(epochs, series("lr"), color="tab:red")
    axes[2].set_title("learning rate")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save_atomic(fig, out)


def confusion_heatmap(cm: np.ndarray, classes: list[str], out: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (truth rows, prediction columns) with counts."""
    plt = pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2, 1.1 * len(classes) + 1.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center",
                    fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title or "confusion matrix (row-normalised)")
    return save_atomic(fig, out)


def value_histogram(values: list[float] | np.ndarray, out: Path, *, xlabel: str = "",
                    title: str = "", bins: int = 20, value_range: tuple[float, float] = (0, 1)
                    ) -> Path:
    """Histogram of finite ``values`` (e.g. per-image mean IoU in [0, 1]) with the mean marked."""
    plt = pyplot()
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(v, bins=bins, range=value_range, color="tab:blue", edgecolor="white")
    if v.size:
        ax.axvline(float(v.mean()), color="tab:red", linestyle="--",
                   label=f"mean {v.mean():.3f} (n={v.size})")
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_atomic(fig, out)


def image_truth_prediction_grid(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                                classes: list[str], colours: np.ndarray, out: Path,
                                title: str = "") -> Path:
    """One row per image: display RGB | truth colours | prediction colours.

    Args:
        rows: ``(caption, rgb (H, W, 3) uint8, truth (H, W, 3) uint8, pred (H, W, 3) uint8)``.
        classes: class names for the legend; colours: ``(K, 3)`` uint8 class colours.
    """
    plt = pyplot()
    n = max(len(rows), 1)
    fig, axes = plt.subplots(n, 3, figsize=(8, 2.7 * n), squeeze=False)
    for i, (caption, rgb, truth, pred) in enumerate(rows):
        for ax, img, name in zip(axes[i], (rgb, truth, pred), ("image", "truth", "prediction"),
                                 strict=True):
            ax.imshow(img)
            ax.set_title(f"{caption}\n{name}" if name == "image" else name, fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.asarray(c) / 255) for c in colours]
    fig.legend(handles, classes, loc="lower center", ncol=min(len(classes), 5), fontsize=7)
    fig.suptitle(title, fontsize=9)
    return save_atomic(fig, out)
