"""Driver overhead of ``raygym search`` at 100-1,000 trials (issue 10).

Each run is ``raygym search SPACE --replay TABLE`` through its real code path
(:func:`raygym.search.run.search_experiment`, the real config, Tune + raygym's Optuna searcher
+ journal-file study + live table + leaderboard), in a child process of its own (a fresh
Ray, clean ``getrusage``). Trials replay the S2 curve table with every epoch's ``seconds`` set to
``--epoch-s`` and ``RAYGYM_REPLAY_TIME_SCALE=1``: a trial costs exactly (epochs it runs) x
``--epoch-s`` of sleep, so the floor is known: sum of trial costs / concurrency.

Where: ``local`` is one Ray with ``--cpus`` logical CPUs (``resources.num_cpus``); ``cluster``
is ``raygym.cluster.cluster_up``: a head with 0 CPUs and ``--nodes`` worker nodes of
``--cpus-per-node`` CPUs (1), each a real ``ray start`` raylet on 127.0.0.1 with its own custom
resource.

Instrumentation (bench only, by wrapping functions in the child): time per ``suggest``,
searcher write time (``on_trial_result``/``on_trial_complete``: the study's writes), Tune's
experiment-state snapshots (``TuneController.checkpoint``), live-table redraws, leaderboard
and replay verdict, driver CPU at each finished trial (per-trial cost by thirds, and
"steady": up to the last suggestion, before the search only drains).

    nice -n 5 .venv/bin/python bench/bench_scale.py --where local --trials 100 300 1000
    nice -n 5 .venv/bin/python bench/bench_scale.py --where cluster --nodes 32 --trials 100
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from raygym.search.study_storage import STUDY_FILE

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "bench" / "curves" / "s2_64x128.csv.gz"


def fixed_cost_table(out: Path, epoch_s: float) -> Path:
    """The S2 table with every epoch's ``seconds`` = ``epoch_s`` (a known trial cost)."""
    path = out / f"s2_fixed_{epoch_s:g}s.csv"
    with gzip.open(TABLE, "rt", newline="") as src, path.open("w", newline="") as dst:
        reader, writer = csv.DictReader(src), None
        for row in reader:
            if writer is None:
                writer = csv.DictWriter(dst, fieldnames=list(row))
                writer.writeheader()
            row["seconds"] = f"{epoch_s:g}"
            writer.writerow(row)
    return path


def space_yaml(spec: dict[str, Any], out: Path) -> Path:
    import yaml

    search: dict[str, Any] = {
        "num_samples": spec["trials"], "max_concurrent": spec["concurrency"],
        "algorithm": spec["algorithm"], "scheduler": spec["scheduler"],
        "grace_period": 2, "reduction_factor": 3, "results_dir": str(out / "results"),
        "seed": 0}
    resources: dict[str, Any] = {"workers_per_trial": 1, "cpus_per_worker": 1}
    if spec.get("address"):
        resources["address"] = spec["address"]
    else:
        resources.update(num_cpus=spec["cpus"], object_store_memory=256 * 2**20)
    sections = {
        "name": spec["name"],
        "data": {"images": "nowhere/images", "labels": "nowhere/labels",
                 "classes": ["water", "surf", "wet_sand", "dry_land"]},
        "model": {"arch": {"choice": ["gym_unet", "gym_resunet"]},
                  "filters": {"choice": [2, 4, 8, 12]}, "kernel": 3},
        "loss": {"name": {"choice": ["dice", "cce", {"cce": 0.5, "dice": 0.5}]}},
        # continuous: snaps to the recorded 1e-4 / 1e-3 / 1e-2, never exhausts the space
        "train": {"max_lr": {"loguniform": [1e-4, 1e-2]}, "max_epochs": spec["epochs"],
                  "patience": 5, "rampup_epochs": 1},
        "search": search, "resources": resources,
    }
    path = out / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


# ------------------------------------------------------------------------------ child side
class Probe:
    """Wall seconds, counts and (epoch) start times of wrapped calls, by name; CPU seconds at
    each finished trial."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self.began: dict[str, list[float]] = {}
        self.cpu_at_done: list[float] = []
        self.time_at_done: list[float] = []
        self.max_running = 0

    def wrap(self, owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        times = self.times.setdefault(label, [])
        began = self.began.setdefault(label, [])

        def timed(*args: Any, **kwargs: Any) -> Any:
            began.append(time.time())
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                times.append(time.perf_counter() - t0)

        setattr(owner, name, timed)

    def window(self, label: str) -> list[float]:
        """[start, end] of the first call, in the epoch seconds of the trials' timestamps."""
        if not self.began.get(label) or not self.times.get(label):
            return []
        return [self.began[label][0], self.began[label][0] + self.times[label][0]]

    def stat(self, label: str) -> dict[str, float]:
        t = self.times.get(label, [])
        slow = [x for x in t if x > 0.005]  # Tune's snapshot calls: most return at once
        return {"n": len(t), "total_s": sum(t), "mean_ms": 1e3 * sum(t) / len(t) if t else 0.0,
                "max_ms": 1e3 * max(t, default=0.0), "n_slow": len(slow),
                "slow_mean_ms": 1e3 * sum(slow) / len(slow) if slow else 0.0}


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    from ray.tune.execution.tune_controller import TuneController
    from rich.console import Console

    import raygym.search.leaderboard as leaderboard
    import raygym.search.replay as replay
    import raygym.search.tune as tune_mod
    from raygym.search.live_table import LiveTrials, LiveTrialsCallback
    from raygym.search.optuna_search import TruthfulOptunaSearch
    from raygym.search.run import search_experiment
    from raygym.search.space_config import load_experiment

    out = Path(spec["out"])
    os.environ[replay.TIME_SCALE_ENV] = "1"
    table = fixed_cost_table(out, spec["epoch_s"])
    config, space = load_experiment(space_yaml(spec, out))
    probe = Probe()
    probe.wrap(TruthfulOptunaSearch, "suggest", "suggest")
    probe.wrap(TruthfulOptunaSearch, "on_trial_result", "searcher_result")
    probe.wrap(TruthfulOptunaSearch, "on_trial_complete", "searcher_complete")
    probe.wrap(TuneController, "checkpoint", "snapshot")
    probe.wrap(LiveTrials, "refresh", "live_table")
    probe.wrap(tune_mod, "run_tune", "fit")
    probe.wrap(leaderboard, "build_leaderboard", "leaderboard")
    probe.wrap(leaderboard.Leaderboard, "write", "leaderboard_write")
    probe.wrap(replay, "replay_verdict", "replay_verdict")
    done_original = LiveTrialsCallback.on_trial_complete

    stamps: dict[str, dict[str, float]] = {}  # trial id -> {suggested, started, completed}
    suggest_original = TruthfulOptunaSearch.suggest

    def suggest(self: Any, trial_id: str) -> Any:
        out = suggest_original(self, trial_id)
        if isinstance(out, dict):
            stamps.setdefault(trial_id, {})["suggested"] = time.time()
        return out

    TruthfulOptunaSearch.suggest = suggest  # type: ignore[method-assign]

    def on_start(self: Any, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        stamps.setdefault(trial.trial_id, {})["started"] = time.time()

    LiveTrialsCallback.on_trial_start = on_start  # type: ignore[method-assign]

    def on_done(self: Any, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        stamps.setdefault(trial.trial_id, {})["completed"] = time.time()
        probe.cpu_at_done.append(time.process_time())
        probe.time_at_done.append(stamps[trial.trial_id]["completed"])
        probe.max_running = max(probe.max_running,
                                sum(1 for t in trials if t.status == "RUNNING"))
        done_original(self, iteration, trials, trial, **info)

    LiveTrialsCallback.on_trial_complete = on_done  # type: ignore[method-assign]
    # a terminal the live table really draws to, thrown away
    console = Console(file=open(os.devnull, "w"), force_terminal=True, width=120)  # noqa: SIM115
    t0, cpu0, ticks0 = time.perf_counter(), time.process_time(), _cpu_ticks()
    search_experiment(config, space, space_file=out / "space.yaml", replay=table,
                      console=console)
    wall = time.perf_counter() - t0
    machine = _busy(ticks0, _cpu_ticks())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    res_dir = out / "results" / f"{spec['name']}-replay"  # a rehearsal's folder
    rows = list(csv.DictReader((res_dir / "leaderboard.csv").open()))
    epochs = sum(int(r["epochs"] or 0) for r in rows)
    floor = epochs * spec["epoch_s"] / spec["concurrency"]
    n = len(probe.cpu_at_done)
    third = max(1, n // 3)
    cpu = probe.cpu_at_done

    def per_trial(a: int, b: int) -> float:
        return (cpu[b - 1] - cpu[a]) / max(1, b - 1 - a)

    # Steady state: the completions up to the last suggestion. After it a search only drains
    # (no suggestion, no trial start), so a whole-run mean is lower the larger the drain's
    # share: a third of a 100-trial search at 32 at once, 3 % of a 1,000-trial one.
    last_suggested = max((s["suggested"] for s in stamps.values() if "suggested" in s),
                         default=0.0)
    steady = sum(1 for t in probe.time_at_done if t <= last_suggested)

    sugg = probe.times.get("suggest", [])
    db = res_dir / STUDY_FILE
    writes = probe.times.get("searcher_result", []) + probe.times.get("searcher_complete", [])
    fit = probe.stat("fit")["total_s"]
    return {
        **{k: spec[k] for k in ("where", "trials", "concurrency", "scheduler", "algorithm",
                                "epoch_s", "epochs", "label")},
        "rows": len(rows), "status": _count(r["status"] for r in rows),
        "nodes_used": len({r["node_id"] for r in rows if r["node_id"]}),
        "max_running": probe.max_running,
        "wall_s": wall, "fit_s": fit, "floor_s": floor, "trial_epochs": epochs,
        "overhead_pct": 100 * (fit / floor - 1) if floor else None,
        "driver_cpu_s": usage.ru_utime + usage.ru_stime,
        "driver_cpu_run_s": time.process_time() - cpu0,
        "cpu_per_trial_ms": 1e3 * (cpu[-1] - cpu[0]) / max(1, n - 1) if n > 1 else None,
        "cpu_per_trial_first_third_ms": 1e3 * per_trial(0, third) if n > 6 else None,
        "cpu_per_trial_last_third_ms": 1e3 * per_trial(n - third, n) if n > 6 else None,
        "cpu_per_trial_steady_ms": 1e3 * per_trial(0, steady) if steady > 2 else None,
        "steady_trials": steady,
        "suggest_ms_first100": 1e3 * sum(sugg[:100]) / max(1, len(sugg[:100])),
        "suggest_ms_last100": 1e3 * sum(sugg[-100:]) / max(1, len(sugg[-100:])),
        "db_bytes": db.stat().st_size if db.exists() else 0,
        "write_ms": 1e3 * sum(writes) / max(1, len(writes)),
        "snapshot": probe.stat("snapshot"), "live_table": probe.stat("live_table"),
        "leaderboard_s": probe.stat("leaderboard")["total_s"]
        + probe.stat("leaderboard_write")["total_s"],
        "replay_verdict_s": probe.stat("replay_verdict")["total_s"],
        "driver_maxrss_mib": usage.ru_maxrss / 1024,
        "ray_folder_mib": _du(res_dir / "ray") / 2**20,
        "load": os.getloadavg(),
        "machine_cpu": machine,
        "slots": slot_time(res_dir / "ray" / res_dir.name, probe.window("fit"),
                           spec["epoch_s"], spec["concurrency"], stamps),
        "study": study_check(res_dir, rows) if db.exists() else None,
    }


def study_check(res_dir: Path, rows: list[dict[str, str]]) -> dict[str, Any]:
    """Does the Optuna study hold every trial once, in the state its leaderboard row says?
    Repeat runs (``run`` > 0) are Tune's only: the study holds each configuration's first run.
    """
    import optuna

    from raygym.search.study_storage import open_study_storage

    study = optuna.load_study(study_name=res_dir.name,
                              storage=open_study_storage(res_dir / STUDY_FILE))
    first = [r for r in rows if r.get("run", "0") in ("", "0")]
    states = _count(t.state.name for t in study.trials)
    pruned = sum(1 for r in first if r["status"].endswith("-pruned"))
    return {"trials": len(study.trials), "states": states, "ok": (
        len(study.trials) == len(first) == len({t.number for t in study.trials})
        and states.get("PRUNED", 0) == pruned
        and states.get("COMPLETE", 0) == len(first) - pruned)}


def slot_time(exp_dir: Path, fit_window: list[float], epoch_s: float, concurrency: int,
              stamps: dict[str, dict[str, float]]) -> dict[str, float] | None:
    """Where the fit's slot-seconds (fit wall x concurrency) went, from the trials' results.

    ``start_s``: fit start -> the first trial's first epoch begins (trial processes starting);
    ``end_s``: the last report -> the fit's end; inside that span, per trial: ``wait_ms``
    (seconds a trial sat blocked at a report: Tune's function trainables wait for the driver
    to ask for the next result) and ``between_ms`` (slot-seconds with no trial in them:
    suggestion, trial start and stop, actor reuse), and the median of each step of a trial's
    life in the driver's clock: ``queued_ms`` (suggested -> Tune starts it: an actor found or
    made), ``to_first_ms`` (started -> its first epoch begins), ``to_done_ms`` (its last
    report -> Tune calls it complete).
    """
    import statistics

    steps: dict[str, list[float]] = {"queued_ms": [], "to_first_ms": [], "to_done_ms": []}
    spans: list[tuple[float, float]] = []
    waits = 0.0
    for f in exp_dir.glob("*/result.json"):
        walls = [r["replay_wall"] for r in map(json.loads, f.read_text().splitlines())
                 if "replay_wall" in r]
        if walls:
            spans.append((walls[0] - epoch_s, walls[-1]))
            st = stamps.get(f.parent.name, {})
            if "suggested" in st and "started" in st:
                steps["queued_ms"].append(st["started"] - st["suggested"])
            if "started" in st:
                steps["to_first_ms"].append(walls[0] - epoch_s - st["started"])
            if "completed" in st:
                steps["to_done_ms"].append(st["completed"] - walls[-1])
            waits += sum(b - a - epoch_s for a, b in itertools.pairwise(walls))
    (exp_dir.parent / "trial_stamps.json").write_text(json.dumps(
        {"fit": fit_window, "trials": stamps}))  # for a closer look, beside the results
    if not spans or len(fit_window) != 2:
        return None
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    inside = sum(b - a for a, b in spans)
    n = len(spans)
    return {"start_s": first - fit_window[0], "end_s": fit_window[1] - last,
            "span_s": last - first, "wait_ms": 1e3 * waits / n,
            "between_ms": 1e3 * ((last - first) * concurrency - inside) / n,
            **{k: 1e3 * statistics.median(v) if v else float("nan") for k, v in steps.items()}}


def _cpu_ticks() -> list[int] | None:
    """The machine's aggregate CPU ticks (/proc/stat: user, nice, system, idle, iowait, irq,
    softirq, steal), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return None


def _busy(before: list[int] | None, after: list[int] | None) -> dict[str, float] | None:
    """Shares of all cores' time between two readings: ``busy`` (user + system + irq +
    softirq: every process at normal priority, this search's trials and Ray's daemons
    included) and ``nice`` (niced processes, e.g. a background recording that yields)."""
    if before is None or after is None:
        return None
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(d) or 1
    return {"busy": (d[0] + d[2] + d[5] + d[6]) / total, "nice": d[1] / total}


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ----------------------------------------------------------------------------- parent side
def child(spec: dict[str, Any], timeout: float, cluster_dir: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if cluster_dir is not None:  # the cluster's address and its token
        from raygym.cluster import driver_env

        env = driver_env(cluster_dir)
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {**spec, "error": (proc.stderr or proc.stdout)[-2000:]}


def fmt_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['where']} | {r['trials']} | {r['scheduler']} | {r['algorithm']} | " \
               f"error: {r['error'].splitlines()[-1][:80]} |"
    return ("| " + " | ".join([
        r.get("label", ""), r["where"], str(r["trials"]), str(r["concurrency"]), r["scheduler"],
        r["algorithm"], f"{r['fit_s']:.0f} / {r['floor_s']:.0f}", f"{r['overhead_pct']:.0f} %",
        f"{r['cpu_per_trial_ms']:.0f} ({r['cpu_per_trial_first_third_ms']:.0f} -> "
        f"{r['cpu_per_trial_last_third_ms']:.0f}; steady {r['cpu_per_trial_steady_ms']:.0f})",
        f"{r['suggest_ms_first100']:.0f} -> {r['suggest_ms_last100']:.0f}",
        f"{r['db_bytes'] / 2**20:.1f} MiB / {r['write_ms']:.1f}",
        f"{r['snapshot']['n_slow']} x {r['snapshot']['slow_mean_ms']:.0f} "
        f"(max {r['snapshot']['max_ms']:.0f}; {r['snapshot']['total_s']:.1f} s)",
        f"{r['live_table']['total_s']:.1f}", f"{r['driver_maxrss_mib']:.0f}",
        f"{r['leaderboard_s']:.1f} + {r['replay_verdict_s']:.1f}",
        f"{r['rows']}/{r['nodes_used']}n/{r['max_running']}" + _study(r.get("study")),
        (f"{r['machine_cpu']['busy']:.0%} (+{r['machine_cpu']['nice']:.0%} niced)"
         if r.get("machine_cpu") else "n/a"),
        " ".join(f"{x:.1f}" for x in r["load"])]) + " |" + _slots(r.get("slots")))


def _study(s: dict[str, Any] | None) -> str:
    if not s:
        return ""
    return (f"; study {s['trials']} ({s['states'].get('PRUNED', 0)} pruned) "
            f"{'= leaderboard' if s['ok'] else '!= LEADERBOARD'}")


def _slots(s: dict[str, float] | None) -> str:
    if not s:
        return ""
    return (f"\n  slot time: start {s['start_s']:.0f} s, trials' span {s['span_s']:.0f} s, "
            f"end {s['end_s']:.0f} s; per trial {s['wait_ms']:.0f} ms blocked at reports, "
            f"{s['between_ms']:.0f} ms of slot between trials; median suggested -> started "
            f"{s.get('queued_ms', float('nan')):.0f} ms, started -> first epoch "
            f"{s.get('to_first_ms', float('nan')):.0f} ms, last report -> complete "
            f"{s.get('to_done_ms', float('nan')):.0f} ms")


HEADER = ("| run | where | trials | conc | sched | algo | fit / floor s | overhead | "
          "driver CPU ms/trial (1st -> last third; steady) | suggest ms (first 100 -> last 100) | "
          "study size / write ms | snapshots saved n x ms (max; total) | live table s | driver RSS MiB | "
          "leaderboard + verdict s | rows/nodes/max running; study | all cores busy | load 1/5/15 |\n"
          + "|---" * 18 + "|")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--where", choices=["local", "cluster"], default="local")
    ap.add_argument("--trials", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--scheduler", nargs="+", default=["asha"])
    ap.add_argument("--algorithm", nargs="+", default=["optuna"])
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--cpus", type=int, default=64, help="logical CPUs of the local Ray")
    ap.add_argument("--nodes", type=int, default=32, help="worker nodes of the cluster")
    ap.add_argument("--cpus-per-node", type=int, default=1,
                    help="logical CPUs of each worker node (fewer nodes for the same slots)")
    ap.add_argument("--epoch-s", type=float, default=0.5, help="seconds of sleep per epoch")
    ap.add_argument("--epochs", type=int, default=10, help="train.max_epochs")
    ap.add_argument("--label", default="", help="tag for the table (e.g. before / after)")
    ap.add_argument("--json", type=Path, help="append results as JSON lines here")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(json.loads(args.one))), flush=True)
        import ray

        ray.shutdown()  # stops the local Ray this child started (a cluster: disconnects)
        return
    # before the cluster starts: its nodes (and so the trials on them) inherit it
    os.environ["RAYGYM_REPLAY_TIME_SCALE"] = "1"
    cluster = None
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        address = None
        if args.where == "cluster":
            from raygym.cluster import cluster_up

            t0 = time.perf_counter()
            cluster = cluster_up(workers=args.nodes, cpus_per_node=args.cpus_per_node,
                                 head_cpus=0, object_store_memory=80 * 2**20, head_port=_free(),
                                 dashboard_port=_free(), state_dir=work / "cluster",
                                 timeout=max(900, 45 * args.nodes))
            address = cluster["address"]
            print(f"cluster of {args.nodes} x {args.cpus_per_node} CPU + head up in "
                  f"{time.perf_counter() - t0:.0f} s at {address}; its processes hold "
                  f"{_cluster_rss(work) / 2**20:.0f} MiB RSS (idle)", flush=True)
        print(HEADER, flush=True)
        for trials, sched, algo in itertools.product(args.trials, args.scheduler,
                                                     args.algorithm):
            name = f"scale-{args.where}-{trials}-{sched}-{algo}"
            out = work / name
            out.mkdir()
            spec = {"name": name, "out": str(out), "where": args.where, "trials": trials,
                    "concurrency": args.concurrency, "scheduler": sched, "algorithm": algo,
                    "epoch_s": args.epoch_s, "epochs": args.epochs, "cpus": args.cpus,
                    "address": address, "label": args.label}
            r = child(spec, args.timeout, work / "cluster" if cluster is not None else None)
            print(fmt_row(r), flush=True)
            if args.json:
                with args.json.open("a") as fh:
                    fh.write(json.dumps(r) + "\n")
    finally:
        if cluster is not None:
            from raygym.cluster import cluster_down

            cluster_down(state_dir=work / "cluster")


def _cluster_rss(work: Path) -> int:
    """Bytes resident in the cluster's node processes (raylets, agents, GCS), no trials."""
    from raygym.cluster import read_state
    from raygym.cluster.processes import cluster_processes

    total = 0
    for proc in cluster_processes(read_state(work / "cluster") or {}):
        try:
            total += proc.memory_info().rss
        except Exception:  # noqa: BLE001 - a process that just ended
            pass
    return total


def _free() -> int:
    from raygym.cluster import free_port

    return free_port()


if __name__ == "__main__":
    main()
