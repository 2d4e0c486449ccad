"""Reading a prepared dataset: its card, and its splits as numpy arrays or Ray Datasets.

Layout written by ``raygym prepare``::

    DATASET/card.json                      classes, bands, sizes, pixel counts, sources, hashes
    DATASET/shards/split={train,val,test}/*.parquet
        columns: key (source id), copy (0 = original), image (H, W, C) uint8|uint16,
                 label (H, W) uint8 (255 = ignore/padding), valid_hw (2,) int32, counts (K+1,)
    DATASET/preview_{split}.png            image / label overlays to check by eye
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from raygym.errors import DataError

CARD_NAME = "card.json"
DATASET_FORMAT = "raygym-dataset/1"


class DatasetCard(BaseModel):
    """Everything needed to use (and trust) a prepared dataset."""

    format: str
    name: str
    classes: list[str]
    bands: int
    dtype: str
    target_size: list[int]
    ignore_index: int
    config_hash: str
    data_config: dict[str, Any]
    splits: dict[str, dict[str, Any]]
    remap_changed: dict[str, int]
    sources: list[dict[str, Any]]
    created: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def pixel_counts(self, split: str = "train") -> list[int]:
        return list(self.splits[split]["pixels_per_class"])


def read_card(path: Path) -> DatasetCard:
    card_path = path / CARD_NAME
    if not card_path.is_file():
        raise DataError("not a prepared dataset (no card.json)", file=path,
                        fix="run `raygym prepare CONFIG` first")
    try:
        card = DatasetCard.model_validate_json(card_path.read_text())
    except ValidationError as err:
        raise DataError(f"card.json is damaged: {err.errors()[0]['msg']}", file=card_path,
                        fix="run `raygym prepare CONFIG --overwrite`") from None
    if card.format != DATASET_FORMAT:
        raise DataError(f"dataset format {card.format!r} is not {DATASET_FORMAT!r}",
                        file=card_path, fix="prepare it again with this raygym")
    return card


@dataclass
class SplitArrays:
    """One split in memory. ``images`` (N, H, W, C) raw uint8/uint16; ``labels`` (N, H, W)."""

    images: np.ndarray
    labels: np.ndarray
    valid_hw: np.ndarray
    keys: list[str]
    copies: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])


class PreparedDataset:
    """A dataset folder made by ``raygym prepare``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.card = read_card(self.path)

    def split_dir(self, split: str) -> Path:
        return self.path / "shards" / f"split={split}"

    def has_split(self, split: str) -> bool:
        return self.card.splits.get(split, {}).get("rows", 0) > 0 and self.split_dir(split).is_dir()

    def rows(self, split: str) -> int:
        return int(self.card.splits.get(split, {}).get("rows", 0))

    def load_numpy(self, split: str, *, originals_only: bool = False) -> SplitArrays:
        """Read a whole split into memory (sorted by key and copy, so order is deterministic)."""
        import pyarrow.parquet as pq
        import ray.data  # noqa: F401 - registers Ray's Arrow tensor extension types

        if not self.has_split(split):
            raise DataError(f"dataset has no '{split}' split", file=self.path,
                            fix="set data.split fractions so that this split is not empty")
        table = pq.read_table(self.split_dir(split),
                              columns=["key", "copy", "image", "label", "valid_hw"])
        if originals_only:
            import pyarrow.compute as pc

            table = table.filter(pc.equal(table.column("copy"), 0))
        table = table.sort_by([("key", "ascending"), ("copy", "ascending")])
        return SplitArrays(
            images=table.column("image").combine_chunks().to_numpy(),
            labels=table.column("label").combine_chunks().to_numpy(),
            valid_hw=table.column("valid_hw").combine_chunks().to_numpy(),
            keys=table.column("key").to_pylist(),
            copies=np.asarray(table.column("copy").to_pylist()),
        )

    def ray_dataset(self, split: str) -> Any:
        """The split as a lazy ``ray.data.Dataset`` (for sharding across Train workers)."""
        import ray.data

        if not self.has_split(split):
            raise DataError(f"dataset has no '{split}' split", file=self.path)
        return ray.data.read_parquet(str(self.split_dir(split)),
                                     columns=["image", "label", "valid_hw"])
