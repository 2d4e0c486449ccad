"""What one sync of Tune's driver staging folder to storage costs at a search's late stage:
Ray's upload (``_upload_to_fs_path``: every file, every sync) against raygym's
:class:`~raygym.search.driver_state.StagingUploads` (state files whole via rename; trial logs
only where they changed), without Ray running.

The staging folder holds ``--trials`` trial folders of four logs each (result.json,
progress.csv, params.json, an event file) and four state files; before each sync
``--running`` trials append to three of their logs, as that many running trials do between
two syncs. The two uploads alternate, ``--repeats`` times each, to two storage folders on the
same disk; CPU seconds of this process (the copy threads included) and wall seconds per sync.
raygym's first sync (nothing copied yet: every file) is reported apart.

    python bench/bench_driver_state.py --trials 1000 --running 32 --repeats 9
"""

from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import tempfile
import time
from pathlib import Path

LOGS = {"result.json": 8000, "progress.csv": 5000, "params.json": 300,
        "events.out.tfevents.1.host": 6000}
STATE = ("experiment_state-s.json", "searcher-state-s.pkl", "search_gen_state-s.json",
         "tuner.pkl")


def make_staging(root: Path, trials: int) -> None:
    for i in range(trials):
        folder = root / f"trial_{i:05d}"
        folder.mkdir(parents=True)
        for name, size in LOGS.items():
            (folder / name).write_bytes(os.urandom(size))
    for name in STATE:
        (root / name).write_bytes(os.urandom(200_000))


def append_results(root: Path, first: int, running: int, trials: int) -> None:
    for i in range(first, first + running):
        for name in ("result.json", "progress.csv", "events.out.tfevents.1.host"):
            with (root / f"trial_{i % trials:05d}" / name).open("ab") as log:
                log.write(os.urandom(300))


def identical(a: Path, b: Path) -> bool:
    """Same relative file names under ``a`` and ``b``, same bytes in each."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if files != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        return False
    return all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def timed(fn: object) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()  # type: ignore[operator]
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--running", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()

    import pyarrow.fs as pafs
    from ray.train._internal.storage import _upload_to_fs_path

    from raygym.search.driver_state import StagingUploads

    fs = pafs.LocalFileSystem()
    with tempfile.TemporaryDirectory() as tmp:
        staging, ray_dest, raygym_dest = (Path(tmp, n) for n in ("staging", "ray", "raygym"))
        make_staging(staging, args.trials)
        upload = StagingUploads()
        first = timed(lambda: upload(str(staging), fs, str(raygym_dest)))
        _upload_to_fs_path(str(staging), fs, str(ray_dest))  # both start from a full copy
        runs: dict[str, list[tuple[float, float]]] = {"ray": [], "raygym": []}
        for n in range(args.repeats):
            append_results(staging, n * args.running, args.running, args.trials)
            runs["ray"].append(timed(lambda: _upload_to_fs_path(str(staging), fs,
                                                                 str(ray_dest))))
            runs["raygym"].append(timed(lambda: upload(str(staging), fs, str(raygym_dest))))
        same = identical(ray_dest, raygym_dest)
    print(f"{args.trials} trial folders, {args.running} appended to per sync, "
          f"{args.repeats} syncs each, load {os.getloadavg()[0]:.1f}")
    print(f"raygym first sync (every file): CPU {first[0]:.3f} s, wall {first[1]:.3f} s")
    for name, values in runs.items():
        cpu = sorted(c for c, _ in values)
        wall = sorted(w for _, w in values)
        print(f"{name:7s} per sync: CPU median {statistics.median(cpu):.3f} s "
              f"[{cpu[0]:.3f}-{cpu[-1]:.3f}], wall median {statistics.median(wall):.3f} s "
              f"[{wall[0]:.3f}-{wall[-1]:.3f}]")
    print("the two storage copies are identical" if same else "the storage copies DIFFER")


if __name__ == "__main__":
    main()
