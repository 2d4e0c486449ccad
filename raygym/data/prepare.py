"""``raygym prepare``: folders of imagery + labels -> a model-ready dataset, with Ray Data.

Pipeline (the first two steps on the driver, the rest as Ray Data tasks on every core):
pair -> check headers -> [read, validate, remap, cut chips, resize/pad: one scene is
:func:`raygym.data.scenes.process_scene`] -> split by source, or by whole
groups of sources with ``data.split.group`` (seeded, before augmentation) -> augment train
copies -> Parquet shards per split + ``card.json`` + previews.
Everything is written under a temp folder that is renamed into place at the end, so a failed or
interrupted prepare never leaves half a dataset.

Images are stored as raw uint8/uint16 (small, exact); standardisation happens at load time with
:func:`raygym.data.transforms.standardize`, the same function prediction uses.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raygym.atomic import replace_dir, sweep_beside, temp_dir_beside
from raygym.config import IGNORE_INDEX, DataConfig, ExperimentConfig, changed_values
from raygym.data.dataset import (
    CARD_NAME,
    DATASET_FORMAT,
    TENSOR_COLUMNS,
    DatasetCard,
    decode_column,
    encode_rows,
    gsd_summary,
    is_dataset_dir,
    read_card,
    scale_summary,
    write_shard,
)
from raygym.data.io import (
    ImageHeader,
    grid_mismatch,
    image_band_count,
    read_header,
    sha256_file,
)
from raygym.data.pairing import Pair, find_pairs, naming_rules
from raygym.data.scenes import run_scene
from raygym.data.split import (
    BLOCKS,
    SPLITS,
    assign_group_splits,
    assign_splits,
    scene_groups,
    split_group_counts,
    straddling_groups,
)
from raygym.data.summary import (
    block_line,
    chips_line,
    padding_line,
    split_line,
    unlabelled_line,
)
from raygym.errors import DataError


@dataclass
class PrepareResult:
    """What ``prepare`` made (or found already up to date)."""

    path: Path
    card: DatasetCard
    seconds: float
    reused: bool = False
    remap_report: dict[str, int] = field(default_factory=dict)


def data_fingerprint(data: DataConfig) -> str:
    """Hash of everything that decides the dataset's content (not where it is written, nor
    ``augment.online``, which only acts at training time)."""
    return hashlib.sha256(json.dumps(_content_settings(data.model_dump(mode="json")),
                                     sort_keys=True).encode()).hexdigest()[:16]


def _content_settings(data: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` settings (a JSON dump) that decide a dataset's content."""
    # settings added later drop out while unset, so older datasets keep their fingerprint
    d = {k: v for k, v in data.items()
         if k != "prepared" and not (k in ("chips", "label_vector", "label_raster",
                                           "image_bands") and v is None)}
    if isinstance(d.get("augment"), dict):
        d["augment"] = {k: v for k, v in d["augment"].items() if k != "online"}
    return d


def settings_changed(card: DatasetCard, data: DataConfig, most: int = 3) -> str:
    """Where ``data`` differs from the settings a dataset was prepared from, for messages:
    ``data.split.val 0.2 -> 0.5`` (the first ``most``; "" when none can be told)."""
    def flat(d: Any, prefix: str) -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix: d}
        return {k: v for key, value in d.items()
                for k, v in flat(value, f"{prefix}.{key}").items()}

    old = flat(_content_settings(card.data_config), "data")
    new = flat(_content_settings(data.model_dump(mode="json")), "data")
    return changed_values({k: json.dumps(v) for k, v in old.items()},
                          {k: json.dumps(v) for k, v in new.items()}, most)


def _storage_dtype(file_dtype: str) -> str:
    """The dtype a band is stored as, matching :func:`read_image`: uint8, uint16, or float32
    for everything else (signed or float rasters)."""
    return file_dtype if file_dtype in ("uint8", "uint16") else "float32"


_DTYPE_RANK = {"uint8": 0, "uint16": 1, "float32": 2}


def check_site_labels(data: DataConfig) -> None:
    """The one file that labels every scene, checked once before any scene is read: a
    ``label_vector`` layer (reader, column, CRS) or a ``label_raster`` (band, CRS)."""
    if data.label_vector is not None:
        from raygym.data.vector_labels import check_layer

        check_layer(data.label_vector)
    if data.label_raster is not None:
        from raygym.data.raster_labels import check_raster

        check_raster(data.label_raster)


def site_key(data: DataConfig) -> str | None:
    """``data.label_vector`` / ``data.label_raster`` where one file labels every scene."""
    return data.site_labels[0] if data.site_labels is not None else None


def check_headers(pairs: list[Pair], site_labels: str | None = None,
                  image_bands: Sequence[int] | None = None
                  ) -> tuple[int, str, dict[str, ImageHeader]]:
    """Size and band checks from file headers alone; returns (bands, dtype, heads).
    ``site_labels``: the key of the one file that labels every scene (``data.label_vector``'s
    polygons, ``data.label_raster``'s map; :attr:`DataConfig.site_labels`), read onto each
    image's grid, which must therefore be georeferenced. ``image_bands``: the image files'
    bands read (``data.image_bands``; each file must hold them).

    ``dtype`` is the widest storage dtype over every image and extra-band file, so a 16-bit or
    float band beside 8-bit RGB is never cast down (wrapped) into uint8; ``heads``: each
    scene's first image header (size, pixel size), by key.
    """
    bands_seen: dict[int, Path] = {}
    dtype = "uint8"
    firsts: dict[str, ImageHeader] = {}
    for pair in pairs:
        heads = [read_header(p) for p in pair.images]
        firsts[pair.key] = heads[0]
        if site_labels and heads[0].grid is None:
            from raygym.data.raster_labels import no_crs

            raise no_crs(heads[0].path, site_labels)
        label = [] if site_labels else [read_header(pair.label)]
        for h in heads[1:] + label:
            # georeferenced labels on another grid are read onto each image's by label_raster
            mosaic = (" or, for labels, mosaic them (gdalbuildvrt labels.vrt labels/*.tif) "
                      "and give that as data.label_raster: each scene's labels are then read "
                      "onto its grid" if label and h is label[0] and h.grid is not None
                      and heads[0].grid is not None else "")
            if (h.height, h.width) != (heads[0].height, heads[0].width):
                raise DataError(
                    f"size {h.width}x{h.height} differs from its image "
                    f"{heads[0].path.name} ({heads[0].width}x{heads[0].height})",
                    file=h.path, fix="images, extra bands and labels of a scene must match"
                    + (";" + mosaic if mosaic else ""),
                )
            off = grid_mismatch(heads[0], h)
            if off is not None:  # same size, other ground: every pixel would teach a lie
                raise DataError(
                    f"georeferenced off its image {heads[0].path.name}: {off}", file=h.path,
                    fix="resample it onto the image's grid (e.g. gdalwarp -te / -tr / -t_srs "
                    "with the image's bounds, pixel size and CRS)" + mosaic)
        bands = image_band_count(heads[0], image_bands) + len(heads) - 1
        for h in heads:
            # nodata pixels are stored as NaN (standardisation leaves them out): float32
            stored = "float32" if h.nodata else _storage_dtype(h.dtype)
            if _DTYPE_RANK[stored] > _DTYPE_RANK[dtype]:
                dtype = stored
        bands_seen.setdefault(bands, heads[0].path)
        if len(bands_seen) > 1:
            (b0, p0), (b1, p1) = list(bands_seen.items())[:2]
            raise DataError(
                f"has {b1} bands but {p0.name} has {b0}: every scene needs the same band count",
                file=p1, fix="convert the odd files or remove them")
    return next(iter(bands_seen)), dtype, firsts


def _pin_threads() -> None:
    """Keep OpenCV (albumentations, resize) to the task's CPUs. Ray sets OMP_NUM_THREADS to
    them; cv2 ignores it and starts a thread per core, so parallel tasks oversubscribe."""
    import cv2

    cv2.setNumThreads(max(1, int(os.environ.get("OMP_NUM_THREADS") or 1)))


SHARD_BYTES = 64 * 2**20
"""Rows (image + label bytes) a prepare task gathers per split before writing a shard."""


def _process_and_write(batch: Any, data: DataConfig, dtype: str, shards: str,
                       shard_bytes: int = SHARD_BYTES) -> Any:
    """Ray task body for a block of scenes: process each, write one Parquet file per split.

    Returns one small row per scene (key and :func:`process_scene`'s info).
    """
    import uuid

    import pandas as pd

    _pin_threads()

    # rows wait per split (a scene's chips may lie in several: data.chips.blocks) and go to
    # a shard every shard_bytes, so a large scene's chips never sit in memory all at once
    waiting: dict[str, list[dict[str, Any]]] = {}
    size = dict.fromkeys(SPLITS, 0)

    def write(split: str) -> None:
        folder = Path(shards) / f"split={split}"
        folder.mkdir(parents=True, exist_ok=True)
        write_shard(rows_table(waiting.pop(split)), folder / f"{uuid.uuid4().hex}.parquet")
        size[split] = 0

    def emit(row: dict[str, Any]) -> None:
        waiting.setdefault(row["split"], []).append(row)
        size[row["split"]] += row["image"].nbytes + row["label"].nbytes
        if size[row["split"]] >= shard_bytes:
            write(row["split"])

    meta = []
    for record in batch.to_dict("records"):
        record["images"] = list(record["images"])
        # a failed scene's rows may be written: the prepare then fails and drops its folder
        meta.append({"key": record["key"], **run_scene(record, data, dtype, emit)})
    for split in list(waiting):
        write(split)
    return pd.DataFrame(meta)


def rows_table(rows: list[dict[str, Any]]) -> Any:
    """The Arrow table of a shard from processed rows (:func:`run_scene`'s)."""
    return encode_rows([r["key"] for r in rows], [r["copy"] for r in rows],
                       {c: np.stack([r[c] for r in rows]) for c in TENSOR_COLUMNS})


def _preview_split(records: list[dict[str, Any]], picks: list[tuple[str, int]],
                   data: DataConfig, dtype: str, path: str, title: str) -> str:
    """Ray task: process the scenes of ``picks`` exactly as the main job does (seeded, so the
    same rows) and render them with :func:`raygym.data.preview.render_preview`."""
    from raygym.data.preview import render_preview

    _pin_threads()
    rows: dict[tuple[str, int], dict[str, Any]] = {}

    def keep(row: dict[str, Any]) -> None:
        rows[(row["key"], row["copy"])] = row

    for record in records:
        if run_scene(record, data, dtype, keep)["error"]:  # the main job reports it
            return ""
    # nodata (NaN) shown as 0: the preview's percentile stretch needs numbers
    shown = [(k, c, np.nan_to_num(rows[(k, c)]["image"]), rows[(k, c)]["label"])
             for k, c in picks]
    return str(render_preview(Path(path), shown, list(data.classes), title))


def _start_previews(name: str, records: list[dict[str, Any]], data: DataConfig, dtype: str,
                    folder: Path) -> list[Any]:
    """One Ray task per non-empty split writing ``preview_<split>.png``; returns their refs.
    None with ``data.chips``: a preview would read a large scene whole again for one chip, so
    the first chips are read back from the written shards instead (:func:`prepare_dataset`)."""
    import ray

    from raygym.data.preview import preview_picks, preview_title

    if data.chips is not None:
        return []
    task = ray.remote(num_cpus=1)(_preview_split)
    refs = []
    for split in SPLITS:
        keys = [r["key"] for r in records if r["split"] == split]
        if not keys:
            continue
        per_key = 1 + (data.augment.copies if split == "train" else 0)
        picks = preview_picks(keys, per_key)
        needed = {k for k, _ in picks}
        refs.append(task.remote([r for r in records if r["key"] in needed], picks, data, dtype,
                                str(folder / f"preview_{split}.png"),
                                preview_title(name, split, len(keys) * per_key)))
    return refs


def _check_output(out: Path, data: DataConfig, overwrite: bool) -> bool:
    """True if ``out`` already holds this exact dataset. Refuses to clobber anything else."""
    fingerprint = data_fingerprint(data)
    if not out.exists():
        return False
    if not out.is_dir():
        raise DataError("output path exists and is not a folder", file=out, key="data.prepared")
    card_path = out / CARD_NAME
    if not card_path.exists():
        if any(out.iterdir()):
            raise DataError("output folder is not empty and is not a raygym dataset",
                            file=out, key="data.prepared",
                            fix="choose another data.prepared folder")
        return False
    if not is_dataset_dir(out):  # someone else's card.json, or one damaged beyond telling
        raise DataError("output folder is not recognisably a raygym dataset (its card.json "
                        "names no raygym format): refusing to replace it", file=out,
                        key="data.prepared", fix="move it away, or choose another folder")
    try:
        card = read_card(out)
    except DataError as err:  # damaged card or an older dataset format
        if overwrite:
            return False
        raise DataError(err.message, file=err.file, key="data.prepared",
                        fix="pass --overwrite to replace it, or choose another folder") from None
    if card.config_hash == fingerprint and not overwrite:
        return True
    if not overwrite:
        raise DataError("output folder holds a different dataset (its data settings differ: "
                        f"{settings_changed(card, data) or 'unknown'})", file=out,
                        key="data.prepared",
                        fix="pass --overwrite to replace it, or choose another folder")
    return False


def prepare_dataset(config: ExperimentConfig, *, overwrite: bool = False,
                    log: Any = print) -> PrepareResult:
    """Build the dataset at ``config.data.prepared``; see the module docstring for the steps."""
    import ray

    data = config.data
    started = time.perf_counter()
    out = data.prepared
    fingerprint = data_fingerprint(data)
    if out.parent.is_dir():
        sweep_beside(out)  # a killed run's temp folder goes; its moved-aside dataset returns
    if _check_output(out, data, overwrite):
        card = read_card(out)
        log(f"[green]{out} is already prepared from these settings[/] (use --overwrite to redo)")
        return PrepareResult(out, card, time.perf_counter() - started, reused=True)

    pairs = find_pairs(data)
    groups = scene_groups(pairs, data.split, data.manifest)
    check_site_labels(data)  # once, before any scene is read
    bands, dtype, heads = check_headers(pairs, site_labels=site_key(data),
                                        image_bands=data.image_bands)
    blocks_of: dict[str, dict[str, str]] = {}
    if data.chips is not None and data.chips.blocks is not None:
        from raygym.data.split import block_splits

        # chips, not scenes, are split: each scene's blocks of chips carry their splits
        splits = {p.key: BLOCKS for p in pairs}
        blocks_of = block_splits({k: (h.height, h.width) for k, h in heads.items()},
                                 data.target_size, data.chips.blocks, data.split)
        line = block_line(blocks_of, data.chips.blocks, data)
    else:
        splits = split_scenes(pairs, data, groups)
        line = split_line(splits, groups)
    picked = (f"; bands {', '.join(map(str, data.image_bands))} of each image file"
              if data.image_bands else "")
    log(f"{len(pairs)} scene{'s' * (len(pairs) != 1)} paired, {bands} bands ({dtype}{picked}); "
        f"{line}")
    padding = (padding_line([(h.height, h.width) for h in heads.values()], data)
               if data.chips is None else None)
    if padding:
        log(f"[yellow]{padding}[/]")
    records = [{"key": p.key, "images": [str(x) for x in p.images], "label": str(p.label),
                "split": splits[p.key], "bands": bands,
                **({"blocks": json.dumps(blocks_of[p.key])} if blocks_of else {})}
               for p in pairs]

    from raygym.ray_runtime import cluster_cpus, ensure_ray

    ensure_ray(config.resources)  # only now: a reused dataset or bad input never waits for Ray

    num_blocks = max(1, min(len(records), int(cluster_cpus()) * 4))  # Ray Data's blocks
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(out)
    try:
        # The previews' rows are known now: render them alongside the main job instead of
        # as a tail after it (they re-process <= 6 scene copies per split, ~1/4 s of CPU).
        previews = _start_previews(config.name, records, data, dtype, tmp)
        # Each task processes its scenes and writes their rows straight to Parquet: images
        # never travel through the object store, and only one small row per scene comes back.
        meta = ray.data.from_items(records, override_num_blocks=num_blocks).map_batches(
            _process_and_write, batch_size=None, batch_format="pandas",
            fn_kwargs={"data": data, "dtype": dtype, "shards": str(tmp / "shards")},
        ).take_all()
        kept = {s: 0 for s in SPLITS}  # chips per split
        scenes_in = {s: 0 for s in SPLITS}  # scenes with rows per split
        for m in meta:
            for split, n in json.loads(m["chips"]).items():
                kept[split] += int(n)
                scenes_in[split] += 1
        try:
            errors = [m["error"] for m in meta if m["error"]]
            if errors:
                more = f" (and {len(errors) - 1} more scenes fail)" if len(errors) > 1 else ""
                raise DataError(errors[0] + more)
            if data.chips is not None:
                log(chips_line(kept, sum(int(m["dropped"]) for m in meta),
                               set(splits.values()), data))
            if unlabelled := sorted(m["key"] for m in meta if int(m["unlabelled"])):
                log(unlabelled_line(unlabelled, data))
        except DataError:
            for task in previews:
                ray.cancel(task)
            raise
        remap_report: dict[str, int] = {}
        for m in meta:
            for v, n in json.loads(m["changed"]).items():
                remap_report[v] = remap_report.get(v, 0) + int(n)
        card = _make_card(config, tmp, pairs, splits, bands, dtype, fingerprint, remap_report,
                          groups, heads, scenes_in)
        if data.chips is not None:
            from raygym.data.preview import write_previews

            write_previews(tmp, card)
        ray.get(previews)
        replace_dir(tmp, out, owned=is_dataset_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return PrepareResult(out, card, time.perf_counter() - started, remap_report=remap_report)


def prepare_if_missing(config: ExperimentConfig, log: Any = print) -> bool:
    """Prepare ``config.data.prepared`` on first use (no ``card.json`` there), so ``raygym
    train`` and ``raygym search`` are one command each; True when it did. A folder that is
    there without a card is ``prepare_dataset``'s to refuse (it replaces only its own)."""
    if (config.data.prepared / CARD_NAME).exists():
        return False
    log(f"[bold]preparing[/] {config.data.prepared} (first use) ...")
    prepare_dataset(config, log=log)
    return True


def split_scenes(pairs: list[Pair], data: DataConfig,
                 groups: dict[str, str] | None) -> dict[str, str]:
    """``{scene key: split}``: by source image, or by whole groups when ``groups`` (from
    :func:`raygym.data.split.scene_groups`) is given; never a group in two splits."""
    s = data.split
    if groups is None:
        return assign_splits([p.key for p in pairs], s.val, s.test, s.seed)
    splits = assign_group_splits(groups, s.val, s.test, s.seed, rule=str(s.group))
    leaked = straddling_groups(groups, splits)
    if leaked:  # a bug, not bad input: never write a dataset that leaks
        raise RuntimeError(f"groups in two splits: {leaked}")
    return splits


def _make_card(config: ExperimentConfig, tmp: Path, pairs: list[Pair], splits: dict[str, str],
               bands: int, dtype: str, fingerprint: str,
               remap_report: dict[str, int], groups: dict[str, str] | None,
               heads: dict[str, ImageHeader], scenes_in: dict[str, int] | None = None
               ) -> DatasetCard:
    """The dataset's card; ``scenes_in``: scenes with rows per split (default: by ``splits``)."""
    import pyarrow.parquet as pq

    k = config.data.num_classes
    split_info: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        part = tmp / "shards" / f"split={split}"
        if not part.exists():
            split_info[split] = {"rows": 0, "sources": 0, "pixels_per_class": [0] * k,
                                 "ignored_pixels": 0}
            continue
        table = pq.read_table(part, columns=["key", "counts"])
        counts = decode_column(table.column("counts"), (k + 1,), "int64").sum(axis=0)
        keys = set(table.column("key").to_pylist())
        split_info[split] = {
            "rows": table.num_rows,
            "sources": (scenes_in[split] if scenes_in is not None
                        else sum(v == split for v in splits.values())),
            **({"chips": len(keys)} if config.data.chips is not None else {}),
            "pixels_per_class": [int(c) for c in counts[:k]],
            "ignored_pixels": int(counts[k]),
        }
    if groups is not None:
        for split, n in split_group_counts(groups, splits).items():
            split_info[split]["groups"] = n
    digest = functools.cache(sha256_file)  # one label_vector / label_raster serves every scene
    sources = [{"key": p.key, "split": splits[p.key],
                "size": [heads[p.key].height, heads[p.key].width],
                **({"pixel_m": heads[p.key].pixel_m} if heads[p.key].pixel_m else {}),
                **({"group": groups[p.key]} if groups is not None else {}),
                "files": [{"path": str(f), "sha256": digest(f)} for f in (*p.images, p.label)]}
               for p in pairs]
    train = [heads[p.key] for p in pairs if splits[p.key] in ("train", BLOCKS)]
    target: tuple[int, int] = tuple(config.data.target_size)  # type: ignore[assignment]
    upscale = config.data.upscale
    if config.data.chips is not None:
        target, upscale = (1 << 30, 1 << 30), False  # every scene fits: factor 1
    card = DatasetCard(
        format=DATASET_FORMAT, name=config.name, classes=list(config.data.classes),
        bands=bands, dtype=dtype, target_size=list(config.data.target_size),
        ignore_index=IGNORE_INDEX, config_hash=fingerprint,
        data_config=json.loads(config.data.model_dump_json()),
        splits=split_info, remap_changed=remap_report, sources=sources,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        group_rule=config.data.split.group if groups is not None else None,
        # chips are cut at native resolution: new imagery is predicted at its own (factor 1)
        train_scale=scale_summary([(h.height, h.width) for h in train], target, upscale),
        train_gsd_m=gsd_summary(train, target, upscale),
        band_names=naming_rules(pairs),
    )
    (tmp / CARD_NAME).write_text(card.model_dump_json(indent=2))
    return card


