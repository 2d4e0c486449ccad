"""PNG grids of image / label overlays per split, so a person can check a dataset by eye."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raygym.data.dataset import DatasetCard, decode_table

# Colour per class id (tab10), and black for ignored / padded pixels.
_TAB10 = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
                   [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127],
                   [188, 189, 34], [23, 190, 207]], dtype=np.uint8)


def class_colours(num_classes: int) -> np.ndarray:
    """(K, 3) uint8 colours, repeating tab10 past ten classes."""
    return _TAB10[np.arange(num_classes) % len(_TAB10)]


def display_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, C) raw image -> (H, W, 3) uint8 for display (first three bands, 2-98 % stretch)."""
    rgb = image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, axis=2)
    rgb = rgb.astype(np.float32)
    lo, hi = np.percentile(rgb, 2), np.percentile(rgb, 98)
    return (np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)


def colourize(label: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours (ignored pixels black)."""
    colours = np.vstack([class_colours(num_classes), np.zeros((1, 3), np.uint8)])
    idx = np.where(label == ignore_index, num_classes, np.minimum(label, num_classes))
    return colours[idx]


def overlay(image: np.ndarray, label: np.ndarray, num_classes: int, alpha: float = 0.45,
            ignore_index: int = 255) -> np.ndarray:
    """Blend the class colours over the display image; ignored pixels stay unblended."""
    rgb = display_rgb(image).astype(np.float32)
    col = colourize(label, num_classes, ignore_index).astype(np.float32)
    mask = (label != ignore_index)[..., None]
    return np.where(mask, (1 - alpha) * rgb + alpha * col, rgb).astype(np.uint8)


PER_SPLIT = 6  # rows (scene copies) shown per split


def preview_picks(keys: list[str], rows_per_key: int, per_split: int = PER_SPLIT
                  ) -> list[tuple[str, int]]:
    """The ``(key, copy)`` rows a split's preview shows: the first ``per_split`` in key, copy
    order. Known before any scene is processed, so ``prepare`` can render previews alongside."""
    picks: list[tuple[str, int]] = []
    for key in sorted(keys):
        picks += [(key, c) for c in range(rows_per_key)]
        if len(picks) >= per_split:
            break
    return picks[:per_split]


def render_preview(path: Path, rows: list[tuple[str, int, np.ndarray, np.ndarray]],
                   classes: list[str], title: str) -> Path:
    """Write one preview PNG: a row of image | label overlay per ``(key, copy, image, label)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows)
    fig, axes = plt.subplots(n, 2, figsize=(6, 2.6 * n), squeeze=False)
    for i, (key, copy, image, label) in enumerate(rows):
        axes[i][0].imshow(display_rgb(image))
        axes[i][0].set_title(f"{key} (copy {copy})", fontsize=7)
        axes[i][1].imshow(overlay(image, label, len(classes)))
        axes[i][1].set_title("label overlay", fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c / 255) for c in class_colours(len(classes))]
    fig.legend(handles, classes, loc="lower center", ncol=min(len(classes), 5), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def preview_title(name: str, split: str, rows: int) -> str:
    return f"{name}: {split} ({rows} rows)"


def write_previews(dataset_dir: Path, card: DatasetCard, per_split: int = PER_SPLIT,
                   splits: list[str] | None = None) -> list[Path]:
    """``preview_<split>.png`` from a written dataset: the first rows of each split."""
    import pyarrow.parquet as pq

    written = []
    for split, info in card.splits.items():
        part = dataset_dir / "shards" / f"split={split}"
        if splits is not None and split not in splits:
            continue
        if not info.get("rows") or not part.exists():
            continue
        # Pick the rows from the small key/copy columns, then read only those images: reading
        # and sorting whole splits cost more than the rest of `prepare` on large sets.
        index = pq.read_table(part, columns=["key", "copy"])
        index = index.sort_by([("key", "ascending"), ("copy", "ascending")]).slice(0, per_split)
        picked = set(zip(index.column("key").to_pylist(), index.column("copy").to_pylist(),
                         strict=True))
        table = pq.read_table(part, columns=["key", "copy", "image", "label"],
                              filters=[("key", "in", sorted({k for k, _ in picked}))])
        rows = [i for i, kc in enumerate(zip(table.column("key").to_pylist(),
                                             table.column("copy").to_pylist(), strict=True))
                if kc in picked]
        table = table.take(rows).sort_by([("key", "ascending"), ("copy", "ascending")])
        cols = decode_table(table, card.tensor_specs())
        shown = list(zip(cols["key"], cols["copy"].tolist(), cols["image"], cols["label"],
                         strict=True))
        written.append(render_preview(dataset_dir / f"preview_{split}.png", shown, card.classes,
                                      preview_title(card.name, split, info["rows"])))
    return written
