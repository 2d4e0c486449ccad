"""Throughput of ``raygym prepare`` (Ray Data) against a single-process numpy/PIL loop.

Both sides do the same work on the USGS aerial set (``../shared/data/usgs_coastal_aerial_3class``,
165 pairs, 920 x 614 RGB JPEG, greyscale JPEG labels 0/1/2 with JPEG artefacts 3-5):

    pair (pairs.csv) -> header checks -> seeded split -> per scene: read, remap (unknown labels ->
    ignore), augment the train scenes into ``--copies`` copies with raygym's albumentations
    augmenter, resize/pad to ``--target``, per-class pixel counts -> Parquet partitioned by split
    -> dataset card (sha256 of every source) -> preview PNGs.

- ours: :func:`raygym.data.prepare.prepare_dataset` on a fresh local Ray started with
  :func:`raygym.ray_runtime.ensure_ray` (``num_cpus = os.cpu_count()``). Ray start-up and a
  warm-up prepare of a few scenes are timed and reported, but not in the measured time.
- baseline: the same raygym functions (``read_image``, ``read_label``, ``apply_remap``,
  ``scene_copies`` (the augmented copies), ``resize_pad``, the card and preview writers) in one
  loop in a child process with one thread (cv2 and Arrow pinned to one thread, unless
  ``--baseline-threads``), written with ``pyarrow.parquet.ParquetWriter`` in the same
  encoding (``raygym.data.prepare.rows_table``). Same warm-up.

Peak memory: ours samples psutil over the driver's process tree (driver, Ray system processes,
Ray workers; RSS, and RSS minus shared pages) plus Ray's object store usage; the baseline reports
its own ``ru_maxrss``. Afterwards both outputs are read back and compared row by row (a digest
of image, label, valid_hw and counts per (key, copy)).

Run from the repository root::

    .venv/bin/python bench/bench_prepare.py                    # all 165 scenes, target 512, 5 copies
    .venv/bin/python bench/bench_prepare.py --limit 20 --copies 2   # quick look
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from manifest import write_manifest  # bench/ sibling modules
from prepare_baseline import BaselineResult, baseline_child, make_config
from process_tree import TreeSampler, TreeStats, ray_store_probe

try:
    import psutil
except ImportError:  # not a raygym dependency; `import ray` puts Ray's own copy on sys.path
    import ray  # noqa: F401

    psutil = importlib.import_module("psutil")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "usgs_coastal_aerial_3class"
GiB = 1024**3
MiB = 1024**2


def warm_page_cache(manifest: Path) -> int:
    """Read every listed file once so neither side pays for the first disk read; bytes read."""
    total = 0
    with manifest.open(newline="") as fh:
        for row in csv.DictReader(fh):
            for key in ("image", "label"):
                total += len(Path(row[key]).read_bytes())
    return total


def run_baseline(args: argparse.Namespace, work: Path, manifest: Path, warm_manifest: Path | None,
                 scenes: int) -> tuple[BaselineResult, TreeStats]:
    spec = {"manifest": str(manifest), "out": str(work / "baseline"),
            "warmup_manifest": str(warm_manifest) if warm_manifest else None,
            "warmup_out": str(work / "baseline_warmup"), "target": args.target,
            "copies": args.copies, "scenes": scenes, "result": str(work / "baseline.json"),
            "single_thread": not args.baseline_threads, "skip_previews": args.skip_previews}
    spec_path = work / "baseline_spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()),
                             "--baseline-child", str(spec_path)])
    sampler = TreeSampler(proc.pid, interval=args.sample_interval)
    sampler.start()
    rc = proc.wait()
    tree = sampler.finish()
    if rc != 0:
        raise SystemExit(f"baseline child failed (exit {rc})")
    raw = json.loads((work / "baseline.json").read_text())
    return BaselineResult(**raw), tree


# ------------------------------------------------------------------------------------ ours
@dataclass
class OursResult:
    scenes: int
    rows: int
    seconds: float
    prepare_seconds: float  # PrepareResult.seconds (its own clock)
    ray_start_seconds: float
    warmup_seconds: float
    shutdown_seconds: float
    phases: dict[str, float]  # wall seconds the driver waits on each step
    phases_cpu: dict[str, float]  # the driver's own CPU seconds in each step
    remap_report: dict[str, int]
    ray_stats: str = ""
    blocks: list[int] = field(default_factory=list)


@contextmanager
def timed_phases(phases: dict[str, float], phases_cpu: dict[str, float],
                 stats: list[str]) -> Iterator[None]:
    """Wrap the Ray Data calls ``prepare_dataset`` makes (and its card / preview writers) with
    timers: how long the driver waits on each step. Restores everything on exit."""
    import ray.data

    import raygym.data.prepare as prep

    depth = [0]  # only the outermost call counts: write_parquet materializes internally

    def wrap(owner: Any, name: str, label: str, keep_stats: bool = False) -> Callable[[], None]:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*a: Any, **kw: Any) -> Any:
            if depth[0]:
                return original(*a, **kw)
            depth[0] += 1
            t, c = time.perf_counter(), time.process_time()
            try:
                result = original(*a, **kw)
            finally:
                depth[0] -= 1
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - t
            phases_cpu[label] = phases_cpu.get(label, 0.0) + time.process_time() - c
            if keep_stats:
                # write_parquet returns None; its executed plan is kept on the dataset (private)
                done = result if result is not None else getattr(a[0], "_write_ds", None)
                if done is not None:
                    stats.append(f"--- {name} ---\n{done.stats()}")
            return result

        setattr(owner, name, timed)
        return lambda: setattr(owner, name, original)

    restores = [
        wrap(ray.data.Dataset, "materialize", "ray_materialize (read+remap+augment+resize)", True),
        wrap(ray.data.Dataset, "take_all", "ray_take_all (errors, remap report)"),
        wrap(ray.data.Dataset, "write_parquet", "ray_write_parquet", True),
        wrap(prep, "_make_card", "card"),
        wrap(prep, "_start_previews", "start previews (rendered alongside)"),
    ]
    try:
        yield
    finally:
        for restore in reversed(restores):
            restore()


def run_ours(args: argparse.Namespace, work: Path, manifest: Path, warm_manifest: Path | None,
             scenes: int) -> tuple[OursResult, TreeStats]:
    from raygym.config import ResourcesConfig
    from raygym.data.prepare import prepare_dataset
    from raygym.ray_runtime import ensure_ray

    t = time.perf_counter()
    started = ensure_ray(ResourcesConfig(num_cpus=os.cpu_count()), progress_bars=False)
    ray_start = time.perf_counter() - t
    if not started:
        raise SystemExit("Ray was already initialised in this process: the bench needs a fresh one")
    import ray

    import raygym.data.prepare as prep

    session_dir = ray._private.worker._global_node.get_session_dir_path()
    quiet: Callable[..., None] = lambda *a, **k: None  # noqa: E731
    start_previews = prep._start_previews
    if args.skip_previews:  # prepare_dataset looks it up in its module at call time
        prep._start_previews = lambda *a, **k: []
    try:
        t = time.perf_counter()
        if warm_manifest is not None:
            warm = make_config(warm_manifest, work / "ours_warmup", args.target, args.copies)
            prepare_dataset(warm, log=quiet)
            shutil.rmtree(work / "ours_warmup", ignore_errors=True)
        warmup = time.perf_counter() - t
        config = make_config(manifest, work / "ours", args.target, args.copies)
        phases: dict[str, float] = {}
        phases_cpu: dict[str, float] = {}
        stats: list[str] = []
        marks: dict[str, float] = {}

        def log(*a: Any, **k: Any) -> None:  # first message: pairing + headers + split done
            marks.setdefault("logged", time.perf_counter())

        try:
            probe: Callable[[], tuple[int, int]] | None = ray_store_probe()
        except Exception:  # noqa: BLE001 - private API moved: report store usage as n/a
            probe = None
        sampler = TreeSampler(os.getpid(), interval=args.sample_interval, store=probe)
        sampler.start()
        with timed_phases(phases, phases_cpu, stats):
            t = time.perf_counter()
            result = prepare_dataset(config, log=log)
            seconds = time.perf_counter() - t
        tree = sampler.finish()
        phases["pair_headers_split"] = marks.get("logged", t) - t
        rows = sum(int(info["rows"]) for info in result.card.splits.values())
        blocks = _block_sizes(work / "ours")
    finally:
        prep._start_previews = start_previews
        t = time.perf_counter()
        ray.shutdown()
        shutdown = time.perf_counter() - t
        if not args.keep_ray_logs:
            shutil.rmtree(session_dir, ignore_errors=True)
    return OursResult(scenes=scenes, rows=rows, seconds=seconds, prepare_seconds=result.seconds,
                      ray_start_seconds=ray_start, warmup_seconds=warmup,
                      shutdown_seconds=shutdown, phases=phases, phases_cpu=phases_cpu,
                      remap_report=dict(result.remap_report), ray_stats="\n".join(stats),
                      blocks=blocks), tree


def _block_sizes(dataset: Path) -> list[int]:
    """Rows per Parquet file that ``prepare`` wrote (one file per written block and split)."""
    import pyarrow.parquet as pq

    return sorted(pq.ParquetFile(p).metadata.num_rows for p in dataset.glob("shards/*/*.parquet"))


# ---------------------------------------------------------------------------------- verify
def digests(dataset: Path) -> tuple[dict[tuple[str, int], tuple[str, int]], str]:
    """{(key, copy): (split, crc32 of image, label, valid_hw, counts)} and the Arrow schema."""
    import pyarrow.parquet as pq

    from raygym.data.dataset import decode_table, read_card

    specs = read_card(dataset).tensor_specs()
    names = ("image", "label", "valid_hw", "counts")
    out: dict[tuple[str, int], tuple[str, int]] = {}
    schema = ""
    for path in sorted(dataset.glob("shards/split=*/*.parquet")):
        split = path.parent.name.split("=", 1)[1]
        pf = pq.ParquetFile(path)
        schema = ", ".join(f"{f.name}: {f.type}" for f in pf.schema_arrow)
        for batch in pf.iter_batches(batch_size=32):
            arrays = decode_table(batch, specs)
            for i, (key, copy) in enumerate(zip(arrays["key"], arrays["copy"], strict=True)):
                crc = 0
                for n in names:
                    crc = zlib.crc32(np.ascontiguousarray(arrays[n][i]).tobytes(), crc)
                out[(key, int(copy))] = (split, crc)
    return out, schema


def verify(work: Path) -> str:
    ours, schema_o = digests(work / "ours")
    base, schema_b = digests(work / "baseline")
    if ours == base:
        same_schema = "same Arrow schema" if schema_o == schema_b else (
            f"schemas differ: ours [{schema_o}] vs baseline [{schema_b}]")
        return f"identical: {len(ours)} rows match by (key, copy) digest; {same_schema}"
    missing = sorted(set(base) - set(ours))[:3]
    extra = sorted(set(ours) - set(base))[:3]
    differ = sorted(k for k in set(ours) & set(base) if ours[k] != base[k])
    return (f"DIFFERENT: ours {len(ours)} rows, baseline {len(base)}; {len(differ)} rows differ "
            f"(e.g. {differ[:3]}); only in baseline {missing}; only in ours {extra}")


# ---------------------------------------------------------------------------------- report
def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / GiB:.2f} GiB"


def report(args: argparse.Namespace, ours: OursResult, ours_tree: TreeStats, base: BaselineResult,
           base_tree: TreeStats, checked: str, load: tuple[tuple[float, ...], tuple[float, ...]],
           out_bytes: dict[str, int]) -> None:
    cores = os.cpu_count() or 1
    goal = 0.8 * cores
    ratio = base.seconds / ours.seconds
    print()
    print(f"bench_prepare  {time.strftime('%Y-%m-%d %H:%M:%S %z')}  host {os.uname().nodename}, "
          f"{cores} CPUs, {psutil.virtual_memory().total / GiB:.1f} GiB RAM")
    skipped = "; PREVIEWS SKIPPED on both sides (--skip-previews)" if args.skip_previews else ""
    print(f"data {args.data.name}: {ours.scenes} scenes, target {args.target}, "
          f"copies {args.copies}{skipped}; load average before {load[0][0]:.1f}, after {load[1][0]:.1f} "
          f"(1 min; others share these CPUs, so timings are noisy)")
    print()
    head = (f"{'':<26}{'scenes':>7}{'rows':>7}{'seconds':>9}{'scenes/s':>10}{'images/s':>10}"
            f"{'CPU s':>8}  peak memory")
    print(head)
    print("-" * (len(head) + 30))
    print(f"{'single-process loop':<26}{base.scenes:>7}{base.rows:>7}{base.seconds:>9.2f}"
          f"{base.scenes / base.seconds:>10.2f}{base.rows / base.seconds:>10.2f}"
          f"{base.cpu_seconds:>8.1f}  ru_maxrss {_gib(base.ru_maxrss)} "
          f"(sampled {_gib(base_tree.peak_rss)})")
    print(f"{'raygym prepare (Ray Data)':<26}{ours.scenes:>7}{ours.rows:>7}{ours.seconds:>9.2f}"
          f"{ours.scenes / ours.seconds:>10.2f}{ours.rows / ours.seconds:>10.2f}"
          f"{ours_tree.cpu_seconds:>8.1f}  RSS sum {_gib(ours_tree.peak_rss)} "
          f"+ object store {_gib(ours_tree.peak_store_used)}")
    print()
    verdict = "MET" if ratio >= goal else "MISSED"
    print(f"speed-up {ratio:.2f}x; goal >= {goal:.2f}x (0.8 x {cores} cores): {verdict}")
    # Contention-free estimate from CPU seconds: the driver's work (pairing, card, previews)
    # is serial; the workers' and Ray's own processes' CPU spreads over the cores.
    by_kind = ours_tree.cpu_by_kind
    est_ours = by_kind.get("driver", 0.0) + (by_kind.get("worker", 0.0)
                                            + by_kind.get("system", 0.0)) / cores
    print(f"CPU seconds ours / loop: {ours_tree.cpu_seconds / max(base.cpu_seconds, 1e-9):.2f}; "
          f"idle-machine estimate: loop {base.cpu_seconds:.1f} s, ours driver "
          f"{by_kind.get('driver', 0.0):.1f} + (workers {by_kind.get('worker', 0.0):.1f} + Ray "
          f"system {by_kind.get('system', 0.0):.1f}) / {cores} = {est_ours:.1f} s -> speed-up "
          f"~{base.cpu_seconds / max(est_ours, 1e-9):.2f}x")
    print()
    print(f"ours, not in the measured time: Ray start-up {ours.ray_start_seconds:.1f} s, warm-up "
          f"prepare of {args.warmup} scenes {ours.warmup_seconds:.1f} s, shutdown "
          f"{ours.shutdown_seconds:.1f} s; prepare's own clock {ours.prepare_seconds:.2f} s")
    print(f"ours memory: peak RSS sum {_gib(ours_tree.peak_rss)} over {ours_tree.processes} "
          f"processes (driver {_gib(ours_tree.peak_driver_rss)}, Ray workers "
          f"{_gib(ours_tree.peak_workers_rss)}, Ray system {_gib(ours_tree.peak_system_rss)}; "
          f"RSS counts shared object-store pages in every process that maps them); private "
          f"(RSS - shared) {_gib(ours_tree.peak_private)}; object store peak "
          f"{_gib(ours_tree.peak_store_used)}, {_gib(ours_tree.store_created)} put in total; "
          f"{ours_tree.samples} samples every {args.sample_interval} s (sampler CPU "
          f"{ours_tree.sampler_cpu:.1f} s, not counted)")
    print(f"baseline: warm-up {base.warmup_seconds:.1f} s (not timed); threads: {base.threads}")
    print(f"output on disk: ours {out_bytes['ours'] / MiB:.0f} MiB, "
          f"baseline {out_bytes['baseline'] / MiB:.0f} MiB; rows per Parquet file (ours): "
          f"{ours.blocks}")
    print(f"outputs: {checked}")
    rep_o = dict(sorted(ours.remap_report.items()))
    rep_b = dict(sorted(base.remap_report.items()))
    print(f"unknown label values set to ignore (value: pixels): ours {rep_o}, baseline {rep_b}")
    print()
    print("where the time goes, wall s (CPU s):")
    print("  loop: " + ", ".join(f"{k} {v:.2f} ({base.phases_cpu.get(k, 0):.2f})"
                                 for k, v in base.phases.items()))
    rest = ours.seconds - sum(ours.phases.values())
    print("  ours, driver CPU in brackets: "
          + ", ".join(f"{k} {v:.2f} ({ours.phases_cpu.get(k, 0):.2f})"
                      for k, v in ours.phases.items()) + f", other {rest:.2f}")
    print("  ours, CPU s by process: " + ", ".join(
        f"{k} {v:.1f}" for k, v in sorted(ours_tree.cpu_by_kind.items())))
    if args.ray_stats and ours.ray_stats:
        print()
        print("Ray Data stats of the materialize and write steps:")
        print(ours.ray_stats)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with pairs.csv (default: the USGS aerial set)")
    parser.add_argument("--limit", type=int, default=None, help="first N scenes of pairs.csv")
    parser.add_argument("--target", type=int, default=512, help="target size (square), px")
    parser.add_argument("--copies", type=int, default=5, help="augmented copies per train scene")
    parser.add_argument("--out", type=Path, default=None,
                        help="work folder (a temp folder by default); a fresh sub-folder is made "
                        "in it and removed afterwards unless --keep")
    parser.add_argument("--keep", action="store_true", help="keep both prepared datasets")
    parser.add_argument("--warmup", type=int, default=4,
                        help="scenes in the untimed warm-up run of each side (0: none)")
    parser.add_argument("--baseline-threads", action="store_true",
                        help="let the loop's cv2 / Arrow use their default thread pools")
    parser.add_argument("--skip-previews", action="store_true",
                        help="diagnostic: both sides skip the preview PNGs (write_previews), so "
                        "the figures no longer measure the whole of prepare")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip reading both outputs back to compare them")
    parser.add_argument("--ray-stats", action="store_true",
                        help="print Ray Data's stats of the materialize and write steps")
    parser.add_argument("--keep-ray-logs", action="store_true",
                        help="keep this run's /tmp/ray/session_* folder")
    parser.add_argument("--sample-interval", type=float, default=0.25,
                        help="memory sampling period, s")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--baseline-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_child is not None:
        baseline_child(args.baseline_child)
        return

    base_dir = args.out or Path(tempfile.gettempdir())
    base_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_prepare-", dir=base_dir))
    try:
        manifest = work / "pairs.csv"
        scenes = write_manifest(args.data / "pairs.csv", manifest, args.limit)
        warm_manifest = None
        if args.warmup:
            warm_manifest = work / "warmup" / "pairs.csv"
            write_manifest(args.data / "pairs.csv", warm_manifest, args.warmup)
        read = warm_page_cache(manifest)
        print(f"work folder {work}; {scenes} scenes ({read / MiB:.1f} MiB of JPEG, page cache "
              f"warmed)", flush=True)
        load_before = os.getloadavg()
        print("baseline: single-process loop ...", flush=True)
        base, base_tree = run_baseline(args, work, manifest, warm_manifest, scenes)
        print(f"  {base.seconds:.2f} s", flush=True)
        print("ours: raygym prepare on a fresh local Ray ...", flush=True)
        ours, ours_tree = run_ours(args, work, manifest, warm_manifest, scenes)
        print(f"  {ours.seconds:.2f} s", flush=True)
        load_after = os.getloadavg()
        checked = "not compared (--no-verify)" if args.no_verify else verify(work)
        sizes = {"ours": dir_bytes(work / "ours"), "baseline": dir_bytes(work / "baseline")}
        report(args, ours, ours_tree, base, base_tree, checked, (load_before, load_after), sizes)
        if args.json:
            args.json.write_text(json.dumps({
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "ours": asdict(ours), "ours_tree": asdict(ours_tree),
                "baseline": asdict(base), "baseline_tree": asdict(base_tree),
                "speedup": base.seconds / ours.seconds, "outputs": checked,
                "scenes_per_s": {"ours": ours.scenes / ours.seconds,
                                 "baseline": base.scenes / base.seconds},
                "load": [load_before, load_after]}, indent=2))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
