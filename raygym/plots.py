"""Matplotlib figures shared by train, search, evaluate and report (Agg backend, PNG files)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_atomic(fig: Any, path: Path, dpi: int = 90) -> Path:
    """Save a figure to ``path`` via a temp file and rename (never a half-written PNG)."""
    plt = _plt()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def learning_curves(rows: list[dict[str, Any]], out: Path, title: str = "") -> Path:
    """Loss (train/val), val mean IoU and LR per epoch, in three panels."""
    plt = _plt()
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
    plt = _plt()
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
