"""Reading a prepared dataset: its card, and its splits as numpy arrays or Ray Datasets.

Layout written by ``raygym prepare``::

    DATASET/card.json                      classes, bands, sizes, pixel counts, sources, hashes
    DATASET/shards/split={train,val,test}/*.parquet
        columns: key (source id), copy (0 = original), image (H, W, C) uint8|uint16,
                 label (H, W) uint8 (255 = ignore/padding), valid_hw (2,) int32, counts (K+1,)
    DATASET/preview_{split}.png            image / label overlays to check by eye

Array columns are stored as Parquet fixed-length byte arrays holding each row's raw
C-order bytes (little-endian); shape and dtype come from the card (``tensor_specs``) and are
also kept as Arrow field metadata so other tools can decode them. Ray's own tensor extension
type stores uint8 as int32 lists: 4x the bytes before compression and ~10x the CPU to write
and read (bench/RESULTS.md, bench_prepare point 3).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from raygym.errors import DataError

CARD_NAME = "card.json"
DATASET_FORMAT = "raygym-dataset/2"
TENSOR_COLUMNS = ("image", "label", "valid_hw", "counts")


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
    # data.split.group when the split kept whole groups together: then each split also holds
    # "groups" (how many) and each source its "group" id. None: split by source image.
    group_rule: str | None = None
    # How prepare resized the training split's scenes: {"median", "min", "max"} of the factor
    # (output px per source px, per side; < 1 shrank). A model learns the ground at that
    # sample distance, so predict resamples new images by the median. None: an older card.
    train_scale: dict[str, float] | None = None
    # Training scenes that are GeoTIFFs in a projected CRS: {"median", "min", "max"} of the
    # ground sample distance the model sees, metres per pixel after that resize (the
    # scene's pixel size / its factor). predict then resamples each georeferenced image by
    # its own pixel size over the median, whatever its source. None: not all of them are.
    train_gsd_m: dict[str, float] | None = None
    # How each extra band's file is named after its image, learnt from the pairs
    # (:func:`raygym.data.pairing.naming_rules`), so predict finds a new image's band files
    # named alike: per band {"image": regex, "band": regex}, or None (same stem). None: no
    # extra band, or an older card.
    band_names: list[dict[str, str] | None] | None = None

    def resampling_units(self, keys: Sequence[str]) -> tuple[list[str], str]:
        """For rows ``keys``, the unit each belongs to when scores are bootstrapped, and the
        units in words: the ``data.split.group`` group of its scene, else its scene (a chip's
        scene, whose other chips are its neighbours), else the row itself. Rows of one unit
        are not independent, so units are what is resampled."""
        from raygym.data.scenes import scene_of_chip

        chips = bool(self.data_config.get("chips"))
        scene_of = scene_of_chip if chips else (lambda k: k)
        if self.group_rule is not None:
            group = {str(s["key"]): str(s.get("group", s["key"])) for s in self.sources}
            return ([group.get(scene_of(k), scene_of(k)) for k in keys],
                    "groups of data.split.group (their images summed)")
        if chips:
            return [scene_of(k) for k in keys], "scenes (their chips summed)"
        return list(keys), "images"

    def model_dataset(self, path: Path | str) -> dict[str, Any]:
        """What a model card records of the dataset a model was trained on (at ``path``)."""
        # train_scale and band_names are written even when None, so a model card says "none"
        # rather than "not recorded" (which sends a load to the dataset on disk to ask)
        return {"path": str(path), "config_hash": self.config_hash,
                "splits": {k: v.get("rows") for k, v in self.splits.items()},
                "train_scale": self.train_scale or self._train_scale_from_files(),
                **({"train_gsd_m": self.train_gsd_m} if self.train_gsd_m else {}),
                # the image files' bands the model reads (data.image_bands), for predict
                **({"image_bands": bands} if (bands := self.data_config.get("image_bands"))
                   else {}),
                "band_names": self.band_names or self._band_names_from_sources()}

    def _band_names_from_sources(self) -> list[dict[str, str] | None] | None:
        """``band_names`` of a card written before prepare recorded it, from the file names
        it lists for each scene (images, then the label)."""
        from raygym.data.pairing import Pair, naming_rules

        pairs = [Pair(str(s["key"]), tuple(Path(f["path"]) for f in s["files"][:-1]),
                      Path(s["files"][-1]["path"])) for s in self.sources if s.get("files")]
        return naming_rules(pairs)

    def _train_scale_from_files(self) -> dict[str, float] | None:
        """``train_scale`` of a card written before prepare recorded it, from the training
        scenes' file headers while they are all still there (None otherwise)."""
        from raygym.data.io import read_header

        try:
            sizes = [(h.height, h.width) for h in (
                read_header(Path(s["files"][0]["path"]))
                for s in self.sources if s.get("split") == "train")]
        except (DataError, OSError, KeyError, IndexError):
            return None
        return scale_summary(sizes, self.target_size,
                             bool(self.data_config.get("upscale", False)))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def pixel_counts(self, split: str = "train") -> list[int]:
        return list(self.splits[split]["pixels_per_class"])

    def tensor_specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{column: (per-row shape, numpy dtype)}`` of the array columns of every shard."""
        return tensor_specs(self.target_size, self.bands, self.dtype, self.num_classes)


def scale_summary(sizes: list[tuple[int, int]], target_size: list[int] | tuple[int, int],
                  upscale: bool) -> dict[str, float] | None:
    """``{"median", "min", "max"}`` of the factors that fit scenes of ``sizes`` (``(h, w)``
    px) into ``target_size`` (:func:`~raygym.data.transforms.fit_scale`); None: no scene."""
    return _spread(_fit_factors(sizes, target_size, upscale))


def gsd_summary(heads: list[Any], target_size: list[int] | tuple[int, int],
                upscale: bool) -> dict[str, float] | None:
    """``{"median", "min", "max"}`` of the ground sample distance (m / px) the model sees of
    each training scene (:class:`~raygym.data.io.ImageHeader` s): its pixel size over the
    factor that fits it into ``target_size``. None unless every scene has a pixel size."""
    if any(h.pixel_m is None for h in heads):
        return None
    factors = _fit_factors([(h.height, h.width) for h in heads], target_size, upscale)
    return _spread([h.pixel_m / f for h, f in zip(heads, factors, strict=True)])


def _fit_factors(sizes: list[tuple[int, int]], target_size: list[int] | tuple[int, int],
                 upscale: bool) -> list[float]:
    from raygym.data.transforms import fit_scale

    target = (int(target_size[0]), int(target_size[1]))
    return [fit_scale(hw, target, upscale) for hw in sizes]


def _spread(values: list[float]) -> dict[str, float] | None:
    """``{"median", "min", "max"}`` rounded to 6 decimals; None for no values."""
    if not values:
        return None
    return {"median": round(float(np.median(values)), 6), "min": round(min(values), 6),
            "max": round(max(values), 6)}


def tensor_specs(target_size: list[int] | tuple[int, int], bands: int, dtype: str,
                 num_classes: int) -> dict[str, tuple[tuple[int, ...], str]]:
    h, w = (int(v) for v in target_size)
    return {"image": ((h, w, int(bands)), dtype), "label": ((h, w), "uint8"),
            "valid_hw": ((2,), "int32"), "counts": ((num_classes + 1,), "int64")}


# ------------------------------------------------------------------------- shard encoding
def encode_rows(key: list[str], copy: list[int] | np.ndarray,
                arrays: dict[str, np.ndarray]) -> Any:
    """An Arrow table for one shard. ``arrays[name]``: (N, *shape) for the array columns."""
    import pyarrow as pa

    fields: list[Any] = [pa.field("key", pa.string()), pa.field("copy", pa.int64())]
    columns: list[Any] = [pa.array(list(key), pa.string()),
                          pa.array(np.asarray(copy, dtype=np.int64))]
    for name, values in arrays.items():
        values = np.ascontiguousarray(values)
        dtype = values.dtype.newbyteorder("<")
        values = values.astype(dtype, copy=False)
        width = int(np.prod(values.shape[1:], dtype=np.int64)) * dtype.itemsize
        kind = pa.binary(width)
        meta = {b"shape": ",".join(map(str, values.shape[1:])).encode(),
                b"dtype": dtype.str.encode()}
        fields.append(pa.field(name, kind, nullable=False, metadata=meta))
        columns.append(pa.FixedSizeBinaryArray.from_buffers(
            kind, len(values), [None, pa.py_buffer(values.tobytes())]))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def write_shard(table: Any, path: Path) -> None:
    """Write one shard. Dictionary encoding and statistics only for the small columns: on
    megabyte-sized byte arrays they cost CPU and help nothing."""
    import pyarrow.parquet as pq

    pq.write_table(table, path, use_dictionary=["key"], write_statistics=["key", "copy"])


def decode_column(column: Any, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """(N, *shape) array from a fixed-size-binary Arrow column (Array or ChunkedArray)."""
    import pyarrow as pa

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    count = int(np.prod(shape, dtype=np.int64))
    kind = np.dtype(dtype).newbyteorder("<")
    parts = []
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        width = chunk.type.byte_width
        if width != count * kind.itemsize:  # a shard written for other bands / size / dtype
            raise DataError(f"a shard column holds {width} bytes per row, but the dataset card "
                            f"describes {shape} {dtype} ({count * kind.itemsize} bytes)",
                            fix="prepare the dataset again (raygym prepare CONFIG --overwrite)")
        data = chunk.buffers()[1]
        parts.append(np.frombuffer(data, dtype=kind, count=len(chunk) * count,
                                   offset=chunk.offset * width).reshape(len(chunk), *shape))
    if not parts:
        return np.empty((0, *shape), dtype=kind.newbyteorder("="))
    # A copy: frombuffer views are read-only and would keep the Arrow buffers alive.
    return np.concatenate(parts).astype(kind.newbyteorder("="), copy=False)


def decode_table(table: Any, specs: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, Any]:
    """The columns of ``table`` as numpy: array columns decoded, ``key`` as a list."""
    out: dict[str, Any] = {}
    for name in table.column_names:
        if name in specs:
            out[name] = decode_column(table.column(name), *specs[name])
        elif name == "key":
            out[name] = table.column(name).to_pylist()
        else:
            out[name] = table.column(name).to_numpy()
    return out


def is_dataset_dir(path: Path) -> bool:
    """A folder ``raygym prepare`` made (its card.json names a raygym dataset format, of this
    or an older version), even if damaged since: the one kind ``prepare`` replaces."""
    try:
        card = json.loads((path / CARD_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and str(card.get("format", "")).startswith("raygym-dataset/")


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

    def check_trainable(self) -> None:
        """Refuse a dataset that training cannot use honestly: no train rows, or no validation
        rows (early stopping and the exported "best" weights are judged on val: without it
        the untrained weights would be exported as best)."""
        if not self.has_split("train"):
            raise DataError("dataset has no training rows", file=self.path, key="data.split",
                            fix="lower data.split.val / data.split.test, or add scenes")
        if not self.has_split("val"):
            sources = sum(int(s.get("sources", 0)) for s in self.card.splits.values())
            raise DataError(f"dataset has no validation rows ({sources} scene"
                            f"{'s' * (sources != 1)} in all): early stopping and the best "
                            "weights are chosen on val", file=self.path, key="data.split.val",
                            fix="add scenes: training needs 2 or more (one to validate on)"
                            if sources < 2 else "set data.split.val > 0 (e.g. 0.2) with enough "
                            "scenes for it, then run `raygym prepare CONFIG --overwrite`")

    def load_numpy(self, split: str, *, originals_only: bool = False) -> SplitArrays:
        """Read a whole split into memory (sorted by key and copy, so order is deterministic)."""
        import pyarrow.parquet as pq

        if not self.has_split(split):
            raise DataError(f"dataset has no '{split}' split", file=self.path,
                            fix="set data.split fractions so that this split is not empty")
        table = pq.read_table(self.split_dir(split),
                              columns=["key", "copy", "image", "label", "valid_hw"])
        if originals_only:
            import pyarrow.compute as pc

            table = table.filter(pc.equal(table.column("copy"), 0))
        table = table.sort_by([("key", "ascending"), ("copy", "ascending")])
        cols = decode_table(table, self.card.tensor_specs())
        return SplitArrays(images=cols["image"], labels=cols["label"],
                           valid_hw=cols["valid_hw"], keys=cols["key"],
                           copies=np.asarray(cols["copy"]))

    def ray_dataset(self, split: str,
                    columns: tuple[str, ...] = ("image", "label", "valid_hw")) -> Any:
        """The split as a lazy ``ray.data.Dataset`` of numpy columns (array columns decoded)."""
        import ray.data

        if not self.has_split(split):
            raise DataError(f"dataset has no '{split}' split", file=self.path)
        specs = self.card.tensor_specs()
        return ray.data.read_parquet(
            str(self.split_dir(split)), columns=list(columns)
        ).map_batches(_decode_batch, batch_format="pyarrow", fn_kwargs={"specs": specs})


def _decode_batch(batch: Any, specs: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, Any]:
    """Ray Data UDF: Arrow batch of stored shards -> numpy tensor columns."""
    return {name: np.asarray(values) for name, values in decode_table(batch, specs).items()}
