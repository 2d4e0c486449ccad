"""The baseline of ``bench_prepare.py``: raygym's own functions in one single-threaded loop (read,
remap, augment, resize/pad, Parquet, card, previews), run in a child process."""

from __future__ import annotations

import json
import resource
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ["deep_water", "shallow_water", "dry_land"]


# ----------------------------------------------------------------------------------- config
def make_config(manifest: Path, out: Path, target: int, copies: int) -> Any:
    """The experiment both sides prepare (``raygym.config.ExperimentConfig``)."""
    from raygym.config import AugmentConfig, DataConfig, ExperimentConfig

    data = DataConfig(
        manifest=manifest, classes=CLASSES, unknown_labels="ignore",
        target_size=(target, target),
        augment=AugmentConfig(copies=copies, rotation=5, zoom=0.05, width_shift=0.05,
                              height_shift=0.05, hflip=True),
        prepared=out,
    )
    return ExperimentConfig(name="bench_prepare", data=data)



@dataclass
class BaselineResult:
    scenes: int
    rows: int
    seconds: float
    warmup_seconds: float
    cpu_seconds: float
    ru_maxrss: int  # bytes
    phases: dict[str, float]  # wall seconds per step
    phases_cpu: dict[str, float]  # CPU seconds per step (the loop is single-threaded)
    remap_report: dict[str, int]
    threads: str


def baseline_prepare(config: Any, phases: dict[str, float] | None = None,
                     phases_cpu: dict[str, float] | None = None,
                     previews: bool = True) -> tuple[int, dict[str, int]]:
    """``prepare_dataset``'s work as one single-process loop; returns (rows, remap report).

    Mirrors ``raygym.data.prepare._process_scene`` / ``read_scene`` / ``_row`` step for step,
    with raygym's own functions, and writes the same Parquet layout
    (``shards/split=<s>/*.parquet``, raygym's fixed-size-binary array columns) plus card and
    previews.
    """
    import pyarrow.parquet as pq

    from raygym.config import IGNORE_INDEX
    from raygym.data.io import read_image, read_label
    from raygym.data.labels import apply_remap
    from raygym.data.pairing import find_pairs
    from raygym.data.prepare import (
        _make_card,
        check_headers,
        data_fingerprint,
        rows_table,
        split_scenes,
    )
    from raygym.data.preview import write_previews
    from raygym.data.scenes import scene_copies
    from raygym.data.split import scene_groups
    from raygym.data.transforms import resize_pad

    ph = phases if phases is not None else {}
    ph_cpu = phases_cpu if phases_cpu is not None else {}
    for name in ("pair_headers_split", "read_remap", "augment", "resize_pad_counts",
                 "parquet_write", "card", "previews"):
        ph.setdefault(name, 0.0)
        ph_cpu.setdefault(name, 0.0)
    mark = [time.perf_counter(), time.process_time()]

    def lap(name: str) -> None:
        """Charge the wall and CPU time since the previous lap to step ``name``."""
        wall, cpu = time.perf_counter(), time.process_time()
        ph[name] += wall - mark[0]
        ph_cpu[name] += cpu - mark[1]
        mark[:] = [wall, cpu]

    data = config.data
    th, tw = data.target_size
    k = data.num_classes
    pairs = find_pairs(data)
    bands, dtype = check_headers(pairs)
    groups = scene_groups(pairs, data.split, data.manifest)
    splits = split_scenes(pairs, data, groups)
    out = data.prepared
    tmp = out.with_name(f".{out.name}.tmp-{int(time.time() * 1000)}")
    lap("pair_headers_split")

    writers: dict[str, pq.ParquetWriter] = {}
    buffers: dict[str, list[dict[str, Any]]] = {}
    rows_written = 0
    remap_report: dict[str, int] = {}

    def flush(split: str) -> int:
        rows = buffers.pop(split, [])
        if not rows:
            return 0
        table = rows_table(rows)  # the same encoding as prepare's tasks
        if split not in writers:
            part = tmp / "shards" / f"split={split}"
            part.mkdir(parents=True, exist_ok=True)
            writers[split] = pq.ParquetWriter(part / "part-00000.parquet", table.schema,
                                              use_dictionary=["key"],
                                              write_statistics=["key", "copy"])
        writers[split].write_table(table)
        return len(rows)

    for pair in pairs:
        split = splits[pair.key]
        parts = [read_image(pair.images[0])]  # read_scene: images concatenated along bands
        image = np.concatenate(parts, axis=2).astype(np.dtype(dtype), copy=False)
        raw = read_label(pair.label)
        label, changed_v = apply_remap(raw, data.remap, k, data.unknown_labels)
        label = label.astype(np.uint8)
        for v, n in changed_v.items():
            remap_report[str(v)] = remap_report.get(str(v), 0) + int(n)
        lap("read_remap")
        scenes = scene_copies(data, pair.key, split, image, label)
        lap("augment")
        for c, img, lab in scenes:
            img, lab, valid = resize_pad(img, lab, (th, tw), IGNORE_INDEX, data.upscale)
            lab = lab.astype(np.uint8)
            counts = np.bincount(np.where(lab == IGNORE_INDEX, k, lab).ravel(),
                                 minlength=k + 1)[: k + 1]
            buffers.setdefault(split, []).append(
                {"key": pair.key, "copy": c, "image": img, "label": lab,
                 "valid_hw": np.asarray(valid, dtype=np.int32), "counts": counts.astype(np.int64)})
        lap("resize_pad_counts")
        if len(buffers[split]) >= 64:  # prepare writes files of >= 64 rows
            rows_written += flush(split)
        lap("parquet_write")
    for split in list(buffers):
        rows_written += flush(split)
    for writer in writers.values():
        writer.close()
    lap("parquet_write")
    card = _make_card(config, tmp, pairs, splits, bands, dtype, data_fingerprint(data),
                      remap_report, groups)
    lap("card")
    if previews:
        write_previews(tmp, card)
    lap("previews")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return rows_written, remap_report


def baseline_child(spec_path: Path) -> None:
    """Entry point of the baseline subprocess: warm up, run once, write a JSON result."""
    spec = json.loads(spec_path.read_text())
    threads = "default"
    if spec["single_thread"]:
        import cv2
        import pyarrow as pa

        cv2.setNumThreads(1)
        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)
        threads = "cv2 1, arrow 1"
    t = time.perf_counter()
    if spec["warmup_manifest"]:
        warm = make_config(Path(spec["warmup_manifest"]), Path(spec["warmup_out"]),
                           spec["target"], spec["copies"])
        baseline_prepare(warm, previews=not spec["skip_previews"])
        shutil.rmtree(spec["warmup_out"], ignore_errors=True)
    warmup = time.perf_counter() - t
    config = make_config(Path(spec["manifest"]), Path(spec["out"]), spec["target"], spec["copies"])
    phases: dict[str, float] = {}
    phases_cpu: dict[str, float] = {}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    rows, report = baseline_prepare(config, phases, phases_cpu, not spec["skip_previews"])
    seconds = time.perf_counter() - t
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    result = BaselineResult(
        scenes=spec["scenes"], rows=rows, seconds=seconds, warmup_seconds=warmup,
        cpu_seconds=cpu, ru_maxrss=cpu1.ru_maxrss * 1024, phases=phases, phases_cpu=phases_cpu,
        remap_report=report,
        threads=threads)
    Path(spec["result"]).write_text(json.dumps(asdict(result)))
